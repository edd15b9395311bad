;;; checkout-paths-tests.el --- the build in folders whose names Emacs reads  -*- lexical-binding: t -*-

;; emacs -Q --batch -l tests/ert/checkout-paths-tests.el -f ert-run-tests-batch-and-exit
;;
;; Emacs reads `$NAME', `${NAME}', `$$', `~' and `~user' in file names it
;; substitutes (every `load' does), quotes the folder it starts in when
;; the name looks remote (/a:b/...), and `file-expand-wildcards' reads
;; `*' and `[' anywhere in a path.  Each family is checked here with
;; several of its members, in folders under a fresh temporary one, Lisp
;; alone; tests/tooling/test_checkout_paths.py runs one real `make
;; tangle' in a checkout whose path holds them all.

;;; Code:

(require 'ert)
(require 'cl-lib)

(defconst checkout-paths-tests--root
  (expand-file-name "../.." (file-name-directory (or load-file-name buffer-file-name)))
  "The project whose build is tested.")

(defconst checkout-paths-tests--scratch
  (file-name-as-directory (make-temp-file "checkout-paths-tests-" t))
  "Where every test makes its folders; removed when Emacs exits.")

(add-hook 'kill-emacs-hook
          (lambda () (delete-directory checkout-paths-tests--scratch t)))

(defconst checkout-paths-tests--substituted
  (list "a$HOME" "b${HOME}" "c$$d" "~" (concat "~" (user-login-name)))
  "Folder names `substitute-in-file-name' changes, in a path: a variable,
a braced variable, a doubled dollar, a home folder and a user's.")

(defconst checkout-paths-tests--literal
  '("a b" "q'r" "d\"q" "b\\s" "café" "p%q" "c:d" "s;t" "-lead" "x~y")
  "Folder names Emacs takes as they are, in the middle of a path.")

(defun checkout-paths-tests--folder (&rest names)
  "A fresh folder under the scratch one, down the folders NAMES."
  (let ((folder (file-name-as-directory
                 (make-temp-file (expand-file-name "case-" checkout-paths-tests--scratch) t))))
    (dolist (name names)
      (setq folder (file-name-as-directory (concat folder name))))
    (make-directory folder t)
    folder))

(defun checkout-paths-tests--library (folder prefix)
  "Write PREFIX-first.el into FOLDER, which loads PREFIX-second.el from
its own folder by its absolute name, as Org loads its autoloads; return
the symbol the second sets to the folder it was loaded from."
  (let ((mark (intern (concat prefix "-loaded-from"))))
    (with-temp-file (expand-file-name (concat prefix "-second.el") folder)
      (prin1 `(setq ,mark (file-name-directory load-file-name)) (current-buffer)))
    (with-temp-file (expand-file-name (concat prefix "-first.el") folder)
      (prin1 `(load (concat (file-name-directory load-file-name) ,(concat prefix "-second"))
                    nil t)
             (current-buffer)))
    (set mark nil)
    mark))

;; A folder of the load path whose name Emacs substitutes, made before
;; build.el is loaded (as EMACSLOADPATH is read before anything is).
(defconst checkout-paths-tests--load-path-folder
  (checkout-paths-tests--folder "org $HOME" "lisp"))
(defconst checkout-paths-tests--load-path-mark
  (checkout-paths-tests--library checkout-paths-tests--load-path-folder "on-load-path"))
(push checkout-paths-tests--load-path-folder load-path)

;; Found on the load path: `load' would read a `$' or `~' in the
;; checkout's path, were it given the file's absolute name.
(let ((load-path (cons (expand-file-name "tools" checkout-paths-tests--root) load-path)))
  (load "build.el" nil t t))

(ert-deftest checkout-paths-load-in-folders-emacs-would-substitute ()
  "A file under a folder taken as spelled loads, and so does what it
loads by its own absolute name."
  (let ((file-name-handler-alist file-name-handler-alist))
    (dolist (name checkout-paths-tests--substituted)
      (let* ((folder (checkout-paths-tests--folder name "checkout"))
             (mark (checkout-paths-tests--library folder "substituted")))
        (gradients-build-take-as-spelled folder)
        (load (expand-file-name "substituted-first" folder) nil t)
        (should (equal (list name (symbol-value mark)) (list name folder)))))))

(ert-deftest checkout-paths-a-folder-of-the-load-path-is-taken-as-spelled ()
  (load "on-load-path-first" nil t)
  (should (equal (symbol-value checkout-paths-tests--load-path-mark)
                 checkout-paths-tests--load-path-folder)))

(ert-deftest checkout-paths-other-folders-get-no-handler ()
  "Folders Emacs reads as they are spelled change nothing: no handler
stands between Emacs and their files."
  (let ((file-name-handler-alist file-name-handler-alist))
    (dolist (name checkout-paths-tests--literal)
      (let ((folder (checkout-paths-tests--folder name "checkout"))
            (before file-name-handler-alist))
        (gradients-build-take-as-spelled folder)
        (should (equal (list name file-name-handler-alist) (list name before)))
        (should (equal (substitute-in-file-name folder) folder))))))

(defun checkout-paths-tests--notes (folder)
  "Notes in FOLDER with one block, tangled by Org with no kernel; their file."
  (let ((file (expand-file-name "README.org" folder)))
    (with-temp-file file
      (insert "* Notes\n\n#+begin_src python :tangle gradients.py\nprint('tangled')\n#+end_src\n"))
    (make-directory (expand-file-name "images" folder))
    file))

(ert-deftest checkout-paths-notes-named-with-emacs-quote-are-built-under-their-plain-name ()
  "Emacs quotes the folder it starts in when it looks remote (/a:b/):
the build takes the plain name of the notes, so what it writes and says
names the files as they are."
  (let* ((folder (checkout-paths-tests--folder "quoted"))
         (notes (checkout-paths-tests--notes folder)))
    (should-not (gradients-build-in-process #'gradients-build-tangle (file-name-quote notes)))
    (should (equal (with-temp-buffer
                     (insert-file-contents (expand-file-name "gradients.py" folder))
                     (buffer-string))
                   "print('tangled')\n"))
    (should (equal (with-temp-buffer
                     (insert-file-contents (expand-file-name ".build/outputs" folder))
                     (buffer-string))
                   "gradients.py\n"))))

(ert-deftest checkout-paths-notes-a-file-name-handler-claims-are-refused-at-once ()
  "A path that a handler (Tramp, for /method:host:) would take over stops
the build before anything is written, with one line naming it."
  (let* ((folder (checkout-paths-tests--folder "remote"))
         (notes (checkout-paths-tests--notes folder))
         (file-name-handler-alist
          (cons (cons (concat "\\`" (regexp-quote folder)) #'checkout-paths-tests--claim)
                file-name-handler-alist))
         (said (gradients-build-in-process #'gradients-build-tangle notes)))
    (should (equal (car (split-string said "\n"))
                   (format "README.org: Emacs takes the path %s for a remote file name (Tramp's /method:host: syntax), and cannot build there; move the checkout to a path whose first folder has no `:'"
                           folder)))
    (should-not (file-exists-p (expand-file-name ".build" folder)))
    (should-not (file-exists-p (expand-file-name "gradients.py" folder)))))

(defun checkout-paths-tests--claim (operation &rest arguments)
  "A file name handler that claims its names, and does what Emacs would."
  (let ((inhibit-file-name-handlers
         (cons #'checkout-paths-tests--claim
               (and (eq inhibit-file-name-operation operation) inhibit-file-name-handlers)))
        (inhibit-file-name-operation operation))
    (apply operation arguments)))

(ert-deftest checkout-paths-wildcards-in-the-path-are-not-patterns ()
  "The scratch folders a killed build left are found in the notes' own
.build/, whatever `*' or `[' the path to it holds: another checkout's are
not touched, and the notes' own are removed."
  (let* ((parent (checkout-paths-tests--folder))
         ;; No process has a number this high (pid_max is at most 2^22).
         (abandoned ".build/run-99999999-abcdef/"))
    (dolist (pair '(("st*r" . "stXr") ("br[a]" . "bra") ("q?x" . "qax")))
      (let ((project (file-name-as-directory (expand-file-name (car pair) parent)))
            (other (file-name-as-directory (expand-file-name (cdr pair) parent))))
        (make-directory (expand-file-name abandoned project) t)
        (make-directory (expand-file-name abandoned other) t)
        (gradients-build--remove-abandoned-scratch project)
        (should (equal (list (car pair)
                             (file-exists-p (expand-file-name abandoned project))
                             (file-exists-p (expand-file-name abandoned other)))
                       (list (car pair) nil t)))))))

;;; checkout-paths-tests.el ends here
