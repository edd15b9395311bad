;;; ob-gradients.el --- run jupyter-python blocks without emacs-jupyter  -*- lexical-binding: t -*-

;; emacs-jupyter is the usual way to run `jupyter-python' blocks, but it is
;; not packaged for Debian and its :file code needs a newer Emacs.  This
;; file gives org-babel a small executor of its own for that language: each
;; session is one kernel_bridge.py process (beside this file), which runs
;; the project's ipykernel from .venv and answers with the text that goes
;; into the results drawer.  It steps aside when emacs-jupyter is loaded.
;;
;; Interactively: M-x load-file RET tools/ob-gradients.el RET, then C-c C-c.
;; Blocks run one at a time and Emacs waits for each: `:async yes' (there
;; for emacs-jupyter) is accepted and has no effect here.

;;; Code:

;; Org itself is not required here: the batch build starts the kernel
;; first and loads Org while it boots.  Everything Org-related below runs
;; only once Org is there.
(require 'json)

(defvar org-babel-current-src-block-location)
(defvar org-babel-after-execute-hook)
(defvar org-src-lang-modes)
(defvar org-image-actual-width)
(declare-function org-babel-where-is-src-block-head "ob-core")
(declare-function org-babel-get-src-block-info "ob-core")
(declare-function org-babel-where-is-src-block-result "ob-core")
(declare-function org-babel-remove-result "ob-core")
(declare-function org-element-at-point "org-element")
(declare-function org-element-property "org-element")
(declare-function org-current-line "org-macs")

(defconst gradients-tools-directory
  (file-name-directory (or load-file-name buffer-file-name))
  "The folder holding this file and the kernel bridge.")

(defvar gradients-python
  (expand-file-name "../.venv/bin/python" gradients-tools-directory)
  "The Python whose ipykernel runs the blocks: the project's venv.")

(defvar gradients-picture-directory nil
  "When non-nil, pictures are written under this folder instead of beside
the Org file, at the same relative path.  The build uses it so that a
failing block leaves the committed pictures untouched.")

(defvar gradients--sessions nil
  "Alist of (SESSION-NAME . PROCESS), one bridge per org-babel session.")

(defun gradients--filter (process output)
  "Collect OUTPUT of PROCESS; complete lines are queued as replies."
  (let ((pending (concat (process-get process 'pending) output)))
    (while (string-match "\n" pending)
      (let ((line (substring pending 0 (match-beginning 0))))
        (setq pending (substring pending (match-end 0)))
        (process-put process 'replies
                     (append (process-get process 'replies)
                             (list (json-parse-string line :object-type 'alist
                                                      :false-object nil))))))
    (process-put process 'pending pending)))

(defun gradients--next-reply (process)
  "Wait for the next reply of PROCESS and return it."
  (while (and (null (process-get process 'replies)) (process-live-p process))
    (accept-process-output process 1))
  (let ((replies (process-get process 'replies)))
    (unless replies
      (error "The kernel bridge stopped:\n%s"
             (with-current-buffer (process-get process 'stderr-buffer)
               (buffer-substring (max (point-min) (- (point-max) 3000)) (point-max)))))
    (process-put process 'replies (cdr replies))
    (car replies)))

(defun gradients-start-session (name)
  "Start the bridge for session NAME unless it runs; return its process.
It returns at once: the kernel boots while Emacs does other work."
  (let ((process (cdr (assoc name gradients--sessions))))
    (if (process-live-p process)
        process
      (unless (file-executable-p gradients-python)
        (error "No %s: run `make venv' first" gradients-python))
      (let* ((stderr (get-buffer-create (format " *gradients-kernel %s*" name)))
             (process (make-process
                       :name (format "gradients-kernel-%s" name)
                       :command (list gradients-python
                                      (expand-file-name "kernel_bridge.py"
                                                        gradients-tools-directory))
                       :connection-type 'pipe
                       :noquery t
                       :stderr stderr
                       :filter #'gradients--filter)))
        (process-put process 'stderr-buffer (buffer-name stderr))
        (process-put process 'ready nil)
        (setf (alist-get name gradients--sessions nil nil #'equal) process)
        process))))

(defun gradients-stop-sessions (&optional no-wait)
  "Stop every bridge and its kernel; the next block starts a fresh one.
With NO-WAIT, only tell them to: each bridge shuts its kernel down on its
own, so a batch build can exit at once."
  (interactive)
  (dolist (session gradients--sessions)
    (let ((process (cdr session)))
      (when (process-live-p process)
        (process-send-eof process)
        (unless no-wait
          (with-timeout (10 (delete-process process))
            (while (process-live-p process)
              (accept-process-output process 0.1)))))))
  (setq gradients--sessions nil))

(defun gradients--session-process (name)
  "The ready bridge for session NAME."
  (let ((process (gradients-start-session name)))
    (unless (process-get process 'ready)
      (gradients--next-reply process)
      (process-put process 'ready t))
    process))

(defun gradients-block-description ()
  "Where the block at point is, for messages: file, line and name."
  (let* ((head (or org-babel-current-src-block-location
                   (org-babel-where-is-src-block-head)
                   (point)))
         (name (save-excursion
                 (goto-char head)
                 (org-element-property :name (org-element-at-point)))))
    (format "%s:%d: block %s"
            (file-name-nondirectory (or (buffer-file-name) (buffer-name)))
            (org-current-line head)
            (if name (format "`%s'" name) "(unnamed)"))))

(defun gradients-execute (body params)
  "Run BODY on the kernel of the session in PARAMS; return the drawer text.
A picture block writes its :file from the display output."
  (let* ((session (cdr (assq :session params)))
         (session (if (member session '(nil "none")) "default" session))
         (file (cdr (assq :file params)))
         ;; Absolute, so the picture lands beside this Org file whatever
         ;; folder the session's kernel was started from.
         (write-to (and file (expand-file-name
                              file (or gradients-picture-directory default-directory))))
         (process (gradients--session-process session))
         (where (gradients-block-description)))
    (process-send-string
     process
     (concat (json-serialize
              `((code . ,body)
                (file . ,(or file :null))
                (write_to . ,(or write-to :null))))
             "\n"))
    (let ((reply (gradients--next-reply process)))
      (if (alist-get 'ok reply)
          (let ((org (alist-get 'org reply)))
            (if (string-empty-p org) nil org))
        (error "%s raised:\n%s" where (alist-get 'error reply))))))

(defun gradients-drop-empty-result ()
  "Remove the results drawer of a block that printed and returned nothing,
so that definitions carry no empty drawers."
  (let ((info (org-babel-get-src-block-info 'light)))
    (when (and info (equal (car info) "jupyter-python"))
      (let ((result (org-babel-where-is-src-block-result nil info)))
        ;; org-babel-remove-result finds the result from the block at
        ;; point, so only the look at the drawer moves point.
        (when (and result
                   (save-excursion
                     (goto-char result)
                     (forward-line)
                     (looking-at-p "[ \t]*:results:[ \t]*\n[ \t]*:end:[ \t]*$")))
          (org-babel-remove-result info))))))

(defconst gradients-project-directory
  (file-name-directory (directory-file-name gradients-tools-directory)))

(defun gradients-fit-pictures ()
  "Show the notes' inline pictures at most 640 pixels wide.
This lives here, not in .dir-locals.el, because Org 9.5 does not mark
`org-image-actual-width' safe, and Emacs would ask about it on opening."
  (when (and buffer-file-name
             (file-in-directory-p buffer-file-name gradients-project-directory))
    (setq-local org-image-actual-width '(640))))

(defun gradients-install ()
  "Make this file org-babel's `jupyter-python' executor, unless
emacs-jupyter already provides one."
  (with-eval-after-load 'org-src
    (add-to-list 'org-src-lang-modes '("jupyter-python" . python)))
  (add-hook 'org-mode-hook #'gradients-fit-pictures)
  (dolist (buffer (buffer-list))
    (with-current-buffer buffer
      (when (derived-mode-p 'org-mode) (gradients-fit-pictures))))
  (unless (or (featurep 'jupyter) (featurep 'ob-jupyter)
              (and (fboundp 'org-babel-execute:jupyter-python)
                   (not (eq (symbol-function 'org-babel-execute:jupyter-python)
                            'gradients-execute))))
    (defalias 'org-babel-execute:jupyter-python #'gradients-execute)
    (with-eval-after-load 'ob-core
      (add-hook 'org-babel-after-execute-hook #'gradients-drop-empty-result))))

(gradients-install)

(provide 'ob-gradients)
;;; ob-gradients.el ends here
