;;; load-build.el --- load the batch build, or say in one line why not  -*- lexical-binding: t -*-

;; What make loads, from tools/ on the load path, before it calls the
;; build (see build.el).  A library the build loads may fail: one on
;; EMACSLOADPATH that is not Emacs's own (a json.el of something else), a
;; file cut short.  Emacs would print a page of backtrace ending in its
;; own startup; this says what failed, and the EMACSLOADPATH that put its
;; folders first, as the build says of an Org that did not load.

;;; Code:

;; Any signal, not only an error: a library may signal `quit', or a
;; condition of its own that is none.  An EMACSLOADPATH without an empty
;; entry (no `:' at its end) leaves Emacs's own folders out altogether.
;; Found beside this file, whether or not its folder is on the load path
;; (`emacs -l tools/load-build.el' alone failed, and said nothing): on the
;; path for the load alone, as make puts it, for an absolute name would
;; have a `$' or `~' in the checkout's path read as `load' reads them.
(condition-case failure
    (let ((load-path (cons (file-name-directory (or load-file-name buffer-file-name))
                           load-path)))
      (load "build.el" nil t t))
  (t
   (let ((setting (getenv "EMACSLOADPATH")))
     (message "the Lisp of the build did not load: %s%s\nNothing was changed."
              (error-message-string failure)
              (cond ((member setting '(nil "")) "")
                    ((member "" (split-string setting path-separator))
                     (format " (EMACSLOADPATH=%s puts its folders before those of Emacs)" setting))
                    (t (format " (EMACSLOADPATH=%s leaves the folders of Emacs out: end it with %s to keep them after its own)"
                               setting path-separator)))))
   ;; The note make wrote "started" into before the build, which it
   ;; does not read after a failure (as `gradients-build--drop-note').
   (let ((note (getenv "GRADIENTS_BUILD_FINISHED")))
     (when (and note (not (equal note "")))
       (ignore-errors (delete-file note))))
   ;; An interactive Emacs would close the screen, and its message with it.
   (if noninteractive (kill-emacs 255) (signal (car failure) (cdr failure)))))

;;; load-build.el ends here
