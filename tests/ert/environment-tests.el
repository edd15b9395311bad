;;; environment-tests.el --- the build under the environment a user may have  -*- lexical-binding: t -*-

;; emacs -Q --batch -l tests/ert/environment-tests.el -f ert-run-tests-batch-and-exit

;;; Code:

(require 'ert)
(require 'cl-lib)

;; Found on the load path: `load' would read a `$' or `~' in the
;; checkout's path, were it given the file's absolute name.
(let ((load-path (cons (expand-file-name "../../tools" (file-name-directory (or load-file-name buffer-file-name)))
                       load-path)))
  (load "build.el" nil t t))

(defmacro environment-tests--in-project (&rest body)
  "Run BODY with `project' a fresh folder and the build's scratch folder
made in it, as a build has them when it installs its outputs."
  (declare (indent 0))
  `(let* ((project (file-name-as-directory (make-temp-file "environment-tests-" t)))
          (gradients-build--project project)
          (gradients-build--written nil)
          (inhibit-message t))
     (unwind-protect
         (progn (gradients-build--make-scratch project) ,@body)
       (setq gradients-build--scratch nil)
       (delete-directory project t))))

(defun environment-tests--write (file text)
  (make-directory (file-name-directory file) t)
  (with-temp-file file (insert text)))

;; A user's umask of 077 makes every new file 600; the outputs the build
;; replaces must stay readable by whoever could read them before, and an
;; executable stays executable, even for its group.
(ert-deftest environment-tests-a-replaced-output-keeps-its-permissions-under-any-umask ()
  (environment-tests--in-project
    (let ((from (expand-file-name "produced/" project))
          (modes '(("gradients.py" . #o755) ("images/plot.png" . #o644)
                   ("images/graph.svg" . #o640) ("README.org" . #o664))))
      (dolist (each modes)
        (environment-tests--write (expand-file-name (car each) project) "old\n")
        (set-file-modes (expand-file-name (car each) project) (cdr each))
        (environment-tests--write (expand-file-name (car each) from) "new\n"))
      (with-file-modes #o700
        (gradients-build--install from (mapcar #'car modes)))
      (dolist (each modes)
        (let ((file (expand-file-name (car each) project)))
          (should (equal (gradients-build--file-bytes file) "new\n"))
          (should (equal (format "%s %o" (car each) (file-modes file))
                         (format "%s %o" (car each) (cdr each)))))))))

(ert-deftest environment-tests-a-new-output-gets-the-umasks-permissions ()
  (environment-tests--in-project
    (let ((from (expand-file-name "produced/" project)))
      (environment-tests--write (expand-file-name "images/new.png" from) "new\n")
      (with-file-modes #o700
        (gradients-build--install from '("images/new.png")))
      (should (= (file-modes (expand-file-name "images/new.png" project)) #o600)))))

;;; environment-tests.el ends here
