;;; load-build.el --- load the batch build, or say in one line why not  -*- lexical-binding: t -*-

;; What make loads, from tools/ on the load path, before it calls the
;; build (see build.el).  A library the build loads may fail: one on
;; EMACSLOADPATH that is not Emacs's own (a json.el of something else), a
;; file cut short.  Emacs would print a page of backtrace ending in its
;; own startup; this says what failed, and the EMACSLOADPATH that put its
;; folders first, as the build says of an Org that did not load.

;;; Code:

(condition-case failure
    (load "build.el" nil t t)
  (error
   (let ((setting (getenv "EMACSLOADPATH")))
     (message "the Lisp of the build did not load: %s%s\nNothing was changed."
              (error-message-string failure)
              (if (member setting '(nil ""))
                  ""
                (format " (EMACSLOADPATH=%s puts its folders before those of Emacs)" setting))))
   (kill-emacs 255)))

;;; load-build.el ends here
