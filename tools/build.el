;;; build.el --- the batch build behind `make tangle' and `make run'  -*- lexical-binding: t -*-

;; emacs -Q --batch -l tools/build.el -f gradients-build-tangle README.org
;; emacs -Q --batch -l tools/build.el -f gradients-build-run README.org
;;
;; Both work in a scratch folder first and touch the real files only once
;; every block has run: a block that raises leaves gradients.py, images/ and
;; README.org exactly as they were.  A file whose new bytes equal the old
;; ones is not rewritten, so its timestamp keeps meaning "content changed".

;;; Code:

(defconst gradients-build-directory
  (file-name-directory (or load-file-name buffer-file-name)))

;; Opening an Org file loads every link module in `org-modules' (Gnus,
;; Rmail, EWW...) and version control looks for git: together most of the
;; start-up time of a batch run, and none of it is needed here.
(setq org-modules nil
      vc-handled-backends nil)

(load (expand-file-name "ob-gradients" gradients-build-directory) nil t)

;; The builds that run blocks start their kernel before Org loads: it boots
;; while Emacs loads Org, opens the file and tangles.
(when (or (member "gradients-build-tangle" command-line-args-left)
          (member "gradients-build-run" command-line-args-left))
  (gradients-start-session "gradients"))

(require 'org)
(require 'ob-tangle)

(setq org-confirm-babel-evaluate nil     ; batch: nobody to ask
      make-backup-files nil
      ;; Tangling visits python-mode, which would guess and complain.
      python-indent-guess-indent-offset nil)

(defun gradients-build--org-file ()
  (let ((file (pop command-line-args-left)))
    (unless (and file (file-readable-p file))
      (error "Usage: emacs --batch -l tools/build.el -f FUNCTION README.org"))
    (expand-file-name file)))

(defun gradients-build--scratch ()
  "A fresh folder under .build/ for this run's outputs."
  (make-directory ".build" t)
  (file-name-as-directory (make-temp-file (expand-file-name ".build/run-") t)))

(defun gradients-build--same-bytes-p (a b)
  (and (file-exists-p b)
       (string= (with-temp-buffer
                  (set-buffer-multibyte nil)
                  (insert-file-contents-literally a)
                  (buffer-string))
                (with-temp-buffer
                  (set-buffer-multibyte nil)
                  (insert-file-contents-literally b)
                  (buffer-string)))))

(defun gradients-build--install (scratch)
  "Move every file under SCRATCH to the same place in the project, unless
it is already there byte for byte.  rename-file is atomic on one disk."
  (dolist (new (directory-files-recursively scratch ""))
    (let ((target (expand-file-name (file-relative-name new scratch))))
      (if (gradients-build--same-bytes-p new target)
          (message "unchanged %s" (file-relative-name target))
        (make-directory (file-name-directory target) t)
        (rename-file new target t)
        (message "wrote %s" (file-relative-name target)))))
  (delete-directory scratch t))

(defun gradients-build--tangle (scratch)
  "Tangle the current buffer with its files landing under SCRATCH."
  (let ((default-directory scratch))
    (org-babel-tangle)))

(defun gradients-build--jupyter-blocks ()
  "Positions of the `jupyter-python' blocks to evaluate, in order."
  (let (positions)
    (org-babel-map-src-blocks nil
      (when (and (string= lang "jupyter-python")
                 (org-babel-check-evaluate (org-babel-get-src-block-info 'light)))
        (push (copy-marker beg-block) positions)))
    (nreverse positions)))

(defun gradients-build--run-pictures ()
  "Run every block of the current buffer, only writing the pictures."
  (dolist (position (gradients-build--jupyter-blocks))
    (goto-char position)
    (let* ((info (org-babel-get-src-block-info))
           (params (org-babel-process-params (nth 2 info)))
           (org-babel-current-src-block-location position))
      (gradients-execute (org-babel--expand-body info) params))))

(defun gradients-build--run-results ()
  "Run every block of the current buffer through org-babel, which writes
the results drawers."
  (dolist (position (gradients-build--jupyter-blocks))
    (goto-char position)
    (org-babel-execute-src-block)))

(defmacro gradients-build--main (&rest body)
  "Run BODY in the buffer of the Org file named on the command line; exit 1
on error.  BODY sees `org-file' and `scratch', the folder its outputs go to."
  `(condition-case err
       (let* ((org-file (gradients-build--org-file))
              (default-directory (file-name-directory org-file))
              (scratch (gradients-build--scratch))
              (gradients-picture-directory scratch))
         (with-current-buffer (find-file-noselect org-file)
           (condition-case err
               (progn ,@body)
             (error (delete-directory scratch t)
                    (signal (car err) (cdr err)))))
         (gradients-stop-sessions 'no-wait))
     (error
      (message "%s" (error-message-string err))
      (message "Nothing was changed.")
      (gradients-stop-sessions 'no-wait)
      (kill-emacs 1))))

(defun gradients-build-tangle ()
  "Tangle gradients.py and draw every picture."
  (gradients-build--main
   (gradients-build--tangle scratch)
   (gradients-build--run-pictures)
   (gradients-build--install scratch)))

(defun gradients-build-run ()
  "Restart and run all: every results drawer and picture, from a fresh kernel."
  (gradients-build--main
   (gradients-build--run-results)
   (let ((readme (expand-file-name (file-name-nondirectory org-file) scratch)))
     (write-region nil nil readme nil 'silent))
   (gradients-build--install scratch)))

;; For the tests: emacs --batch -l tools/build.el -f gradients-build-tangle-into
;; README.org DIR tangles into DIR and touches nothing else.
(defun gradients-build-tangle-into ()
  "Tangle the Org file named on the command line into the folder after it."
  (let* ((org-file (gradients-build--org-file))
         (target (file-name-as-directory (expand-file-name (pop command-line-args-left)))))
    (make-directory target t)
    (with-current-buffer (find-file-noselect org-file)
      (gradients-build--tangle target))))

;;; build.el ends here
