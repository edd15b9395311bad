;;; gradients-editing.el --- Emacs set up for editing the notes  -*- lexical-binding: t -*-

;; What makes README.org pleasant to edit, beyond .dir-locals.el: blocks
;; edited in python-mode, pictures fitted to the window and redrawn when
;; their block runs again.  Only buffers of this project are touched.

;;; Code:

(require 'cl-lib)

(defvar org-src-lang-modes)
(defvar org-image-actual-width)
(defvar org-inline-image-overlays)
(defvar python-indent-guess-indent-offset)
(defvar gradients--placeholder-inserted)
(declare-function gradients-file-inside-p "gradients-kernel")
(declare-function clear-image-cache "image.c")
(defvar gradients-project-directory)
(defvar org-src--beg-marker)
(declare-function org-edit-src-save "org-src")
(declare-function org-babel-execute-src-block "ob-core")
(declare-function org-babel-get-src-block-info "ob-core")
(declare-function org-babel-where-is-src-block-result "ob-core")
(declare-function org-babel-result-end "ob-core")
(declare-function org-display-inline-images "org")
(declare-function org-remove-inline-images "org")
(declare-function python-mode "python")

(defun gradients-python-mode ()
  "python-mode for the notes' blocks, without guessing the indentation:
Org fontifies and edits blocks in buffers that have no file, so no
directory setting reaches them, and the guess would say it failed.
In a block's edit buffer (C-c '), C-c C-c runs the block."
  (let ((python-indent-guess-indent-offset nil))
    (python-mode))
  (gradients-edit-block-mode 1))

(defun gradients-run-edited-block ()
  "Put the code of this edit buffer (C-c ') back into its block and run
the block, as C-c C-c on it in the notes does.  python-mode's C-c C-c
would send the code to a Python shell of its own, not to the kernel."
  (interactive)
  (unless (and (bound-and-true-p org-src-mode) (markerp org-src--beg-marker)
               (marker-buffer org-src--beg-marker))
    (user-error "Not in the edit buffer of a block of the notes (C-c ' opens one)"))
  ;; Org's own write-back, which also saves the notes' file: C-c C-c on
  ;; the block in the notes saves nothing, nor does this.
  (cl-letf (((symbol-function 'save-buffer) #'ignore))
    (org-edit-src-save))
  (let ((block org-src--beg-marker))
    (with-current-buffer (marker-buffer block)
      (save-excursion
        (goto-char block)
        (org-babel-execute-src-block)))))

(defvar gradients-edit-block-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "C-c C-c") #'gradients-run-edited-block)
    map)
  "Keys of a block's edit buffer: C-c C-c runs the block.")

(define-minor-mode gradients-edit-block-mode
  "In the edit buffer of a block of the notes, C-c C-c runs the block."
  :lighter nil)

(defun gradients--notes-buffer-p ()
  "Whether the current buffer visits a file of this project."
  (and buffer-file-name
       (gradients-file-inside-p buffer-file-name gradients-project-directory)))

(defun gradients-fit-pictures ()
  "Show the notes' inline pictures at most 640 pixels wide.
This lives here, not in .dir-locals.el, because Org 9.5 does not mark
`org-image-actual-width' safe, and Emacs would ask about it on opening."
  (when (gradients--notes-buffer-p)
    (setq-local org-image-actual-width '(640))
    ;; Emacs 28 scales pictures up with a large default font, which Org
    ;; 9.6 and later turn off: the same width on every Org.
    (setq-local image-scaling-factor 1)
    ;; `#+STARTUP: inlineimages' showed them before this hook could set
    ;; the width.  No picture is decoded before the next redisplay, so
    ;; showing them again costs next to nothing.
    (when (bound-and-true-p org-inline-image-overlays)
      (org-remove-inline-images)
      (org-display-inline-images))))

(defun gradients-show-result-pictures ()
  "Show the pictures in the results of the block at point, afresh.
Run after each block, including when an asynchronous result arrives.
A block rewrites its picture under the same file name, and Emacs keeps
decoded images keyed by file name: without dropping that file from the
image cache the old picture would stay on screen.  Only this block's
results are redrawn, and only in buffers of the notes: the user's other
Org files keep whatever they show."
  (when (and (display-graphic-p) (gradients--notes-buffer-p)
             (not gradients--placeholder-inserted))
    (save-excursion
      (let* ((info (org-babel-get-src-block-info 'light))
             (result (and info (org-babel-where-is-src-block-result nil info))))
        (when result
          (goto-char result)
          (let ((end (copy-marker (org-babel-result-end))))
            (dolist (overlay (overlays-in result end))
              (when (memq overlay org-inline-image-overlays)
                (setq org-inline-image-overlays (delq overlay org-inline-image-overlays))
                (delete-overlay overlay)))
            ;; A text result has no picture, and Org 9.6 and later clear
            ;; the whole image cache of the frame on every refresh.
            (when (re-search-forward "\\[\\[" end t)
              ;; Org 9.5 removes every picture of the buffer unless asked
              ;; to refresh; with REFRESH, all releases leave the rest be.
              (org-display-inline-images nil t result end)
              (dolist (overlay (overlays-in result end))
                (when (memq overlay org-inline-image-overlays)
                  (let ((file (plist-get (cdr (overlay-get overlay 'display)) :file)))
                    (when file (clear-image-cache file))))))
            (set-marker end nil)))))))

(defun gradients-editing-install ()
  "Set Emacs up for the notes: in every Org buffer of this project now
open, and in those opened later."
  (with-eval-after-load 'org-src
    (add-to-list 'org-src-lang-modes '("jupyter-python" . gradients-python)))
  (add-hook 'org-mode-hook #'gradients-fit-pictures)
  (with-eval-after-load 'ob-core
    (add-hook 'org-babel-after-execute-hook #'gradients-show-result-pictures))
  (dolist (buffer (buffer-list))
    (with-current-buffer buffer
      (when (derived-mode-p 'org-mode) (gradients-fit-pictures)))))

(provide 'gradients-editing)
;;; gradients-editing.el ends here
