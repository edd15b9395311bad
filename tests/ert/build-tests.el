;;; build-tests.el --- ERT tests of parts of the build, without a kernel  -*- lexical-binding: t -*-

;; emacs -Q --batch -l tests/ert/build-tests.el -f ert-run-tests-batch-and-exit

;;; Code:

(require 'ert)
(require 'cl-lib)

;; Found on the load path: `load' would read a `$' or `~' in the
;; checkout's path, were it given the file's absolute name.
(let ((load-path (cons (expand-file-name "../../tools" (file-name-directory (or load-file-name buffer-file-name)))
                       load-path)))
  (load "build.el" nil t t))

(defmacro build-tests--in-project (&rest body)
  "Run BODY in a fresh project folder holding README.org, visited."
  (declare (indent 0))
  `(let* ((project (file-name-as-directory (make-temp-file "build-tests-" t)))
          (gradients-build--project project)
          (gradients-build--org-name "README.org"))
     (unwind-protect
         (progn
           (make-directory (expand-file-name "images" project))
           (make-directory (expand-file-name "tools" project))
           (with-temp-file (expand-file-name "README.org" project) (insert "* Notes\n"))
           (with-current-buffer (find-file-noselect (expand-file-name "README.org" project))
             (unwind-protect (progn ,@body)
               (kill-buffer))))
       (delete-directory project t))))

;; Resolved as a :tangle, which any spelling inside the project may name;
;; a :file is a drawer's link too, and has one (refusal-tests.el).
(defun build-tests--path (name &optional key)
  (gradients-build-output-path name (or key :tangle) "README.org:1: block `x'"))

(defun build-tests--refusal (name &optional key)
  (condition-case err (progn (build-tests--path name key) nil)
    (error (error-message-string err))))

(ert-deftest build-tests-make-reads-an-input-of-any-name-as-that-file ()
  "Each name, written as inputs.mk writes it, is the file make looks at:
up to date once the target is newer, out of date once the input is, and
a name gone makes the target out of date, never make fail."
  (let ((folder (file-name-as-directory (make-temp-file "build-tests-make-" t)))
        (names '("p%x.txt" "d$x.txt" "a b.txt" "h#x.txt" "c:x.txt" "b\\x.txt" "plain.txt")))
    (unwind-protect
        (let ((default-directory folder))
          (dolist (name names) (write-region "" nil name))
          (with-temp-file "Makefile"
            (insert "out: " (mapconcat #'gradients-build--make-quoted names " ") "\n\ttouch out\n")
            (dolist (name names) (insert (gradients-build--make-quoted name t) ":\n")))
          (dolist (name names) (set-file-times name (time-subtract nil 100)))
          (write-region "" nil "out")
          (should (eql 0 (call-process "make" nil nil nil "-q" "out")))
          (dolist (name names)
            ;; Well after: a time of now may be the tick out was written in.
            (set-file-times name (time-add nil 100))
            (should (equal (list name 1) (list name (call-process "make" nil nil nil "-q" "out"))))
            (set-file-times name (time-subtract nil 100)))
          (delete-file "p%x.txt")
          (should (eql 1 (call-process "make" nil nil nil "-q" "out"))))
      (delete-directory folder t))))

(ert-deftest build-tests-one-file-has-one-name-however-it-is-spelt ()
  (build-tests--in-project
    (dolist (spelling (list "images/x.png" "./images/x.png" "images//x.png"
                            "images/../images/x.png" "images/./x.png"
                            (expand-file-name "images/x.png" project)))
      (should (equal (build-tests--path spelling) "images/x.png")))))

;; A kernel started early imports from the notes' folder while the build
;; checks the blocks' outputs, and reading the folder changes its access
;; time: each look at the folder may find other attributes.
(ert-deftest build-tests-a-folder-read-meanwhile-holds-its-outputs ()
  (build-tests--in-project
    (let ((looks 0))
      (cl-letf* ((file-attributes-then (symbol-function 'file-attributes))
                 ((symbol-function 'file-attributes)
                  (lambda (file &rest rest)
                    (let ((attributes (apply file-attributes-then file rest)))
                      (if (and attributes (file-directory-p file))
                          (append (seq-take attributes 4)
                                  (list (time-add (nth 4 attributes) (cl-incf looks)))
                                  (nthcdr 5 attributes))
                        attributes)))))
        (should (equal (build-tests--path "gradients.py") "gradients.py"))
        (should (equal (build-tests--path "images/x.png") "images/x.png"))))))

(ert-deftest build-tests-a-link-is-followed-to-where-it-leads ()
  (build-tests--in-project
    (let ((outside (make-temp-file "outside-" t)))
      (unwind-protect
          (progn
            (make-symbolic-link outside (expand-file-name "pictures" project))
            (make-symbolic-link (expand-file-name "images" project)
                                (expand-file-name "figures" project))
            (should (string-match-p "leads outside the project, to .*through a symbolic link; remove the link"
                                    (build-tests--refusal "pictures/x.png")))
            (should (equal (build-tests--path "figures/x.png") "images/x.png")))
        (delete-directory outside t)))))

;; Found by probing: a picture linked to README.org was told to be named
;; as it already was, "such as images/plot.png".
(ert-deftest build-tests-a-link-to-a-source-is-said-to-be-one ()
  (build-tests--in-project
    (make-symbolic-link "../README.org" (expand-file-name "images/plot.png" project))
    (should (string-match-p ":file images/plot\\.png leads to a source of the project (README\\.org) through a symbolic link; remove the link"
                            (build-tests--refusal "images/plot.png" :file)))))

(ert-deftest build-tests-no-output-is-a-source-or-outside ()
  (build-tests--in-project
    (dolist (name '("README.org" "./README.org" "Makefile" "pyproject.toml"
                    "requirements.lock" "tools/build.el" "tests/x.py" "tools"
                    ".git/config" ".gitignore" ".build/outputs" ".ci/run"))
      (should (string-match-p "would replace a source of the project\\|is a folder"
                              (or (build-tests--refusal name) "accepted"))))
    ;; Found by probing: said to replace a source, which it is not.
    (should (string-match-p "is hidden (.hidden.png starts with a dot)"
                            (or (build-tests--refusal "images/.hidden.png") "accepted")))
    (dolist (name '("/tmp/x.png" "../x.png" "images/../../x.png" "~/x.png"))
      (should (string-match-p "is outside the project"
                              (or (build-tests--refusal name) "accepted"))))))

(ert-deftest build-tests-names-make-cannot-hold-are-refused ()
  (build-tests--in-project
    (dolist (name '("images/a b.png" "images/a:b.png" "images/a#b.png" "images/a%b.png"
                    "images/a$b.png" "images/a;b.png" "images/a*b.png" "images/a?b.png"
                    "images/a=b.png" "images/a\\b.png" "images/a'b.png" "images/a\"b.png"
                    "images/a\tb.png" "images/a|b.png" "images/a(b).png"))
      (should (string-match-p "make or the shell cannot hold"
                              (or (build-tests--refusal name) "accepted"))))
    (dolist (name '("images/a-b_c.d+e.png" "images/été.png"))
      (should (equal (build-tests--path name) name)))))

(ert-deftest build-tests-names-one-disk-would-merge-share-a-key ()
  "Case and Unicode composition are folded, as macOS and Windows fold
them; names that differ otherwise, in ASCII or not, stay apart."
  (let ((composed "images/\u00e9t\u00e9.png")      ; é as one character
        (decomposed "images/e\u0301te\u0301.png")  ; e and a combining accent
        (key #'gradients-build--same-file-key))
    (should (equal (funcall key composed) (funcall key decomposed)))
    (should (equal (funcall key "images/\u00c9T\u00c9.png") (funcall key composed)))
    (should (equal (funcall key "GRADIENTS.py") (funcall key "gradients.py")))
    (should-not (equal (funcall key "images/ete.png") (funcall key composed)))
    (should-not (equal (funcall key "images/a.png") (funcall key "images/b.png")))))

;;;; Installing the outputs, whatever the user's umask

(defmacro build-tests--in-scratch-project (&rest body)
  "Run BODY with `project' a fresh folder and the build's scratch folder
made in it, as a build has them when it installs its outputs."
  (declare (indent 0))
  `(let* ((project (file-name-as-directory (make-temp-file "build-tests-" t)))
          (gradients-build--project project)
          (gradients-build--written nil)
          (inhibit-message t))
     (unwind-protect
         (progn (gradients-build--make-scratch project) ,@body)
       (setq gradients-build--scratch nil)
       (delete-directory project t))))

(defun build-tests--write (file text)
  (make-directory (file-name-directory file) t)
  (with-temp-file file (insert text)))

;; A user's umask of 077 makes every new file 600; the outputs the build
;; replaces must stay readable by whoever could read them before, and an
;; executable stays executable, even for its group.
(ert-deftest build-tests-a-replaced-output-keeps-its-permissions-under-any-umask ()
  (build-tests--in-scratch-project
    (let ((from (expand-file-name "produced/" project))
          (modes '(("gradients.py" . #o755) ("images/plot.png" . #o644)
                   ("images/graph.svg" . #o640) ("README.org" . #o664))))
      (dolist (each modes)
        (build-tests--write (expand-file-name (car each) project) "old\n")
        (set-file-modes (expand-file-name (car each) project) (cdr each))
        (build-tests--write (expand-file-name (car each) from) "new\n"))
      (with-file-modes #o700
        (gradients-build--install from (mapcar #'car modes)))
      (dolist (each modes)
        (let ((file (expand-file-name (car each) project)))
          (should (equal (gradients-build--file-bytes file) "new\n"))
          (should (equal (format "%s %o" (car each) (file-modes file))
                         (format "%s %o" (car each) (cdr each)))))))))

(ert-deftest build-tests-a-new-output-gets-the-umasks-permissions ()
  (build-tests--in-scratch-project
    (let ((from (expand-file-name "produced/" project)))
      (build-tests--write (expand-file-name "images/new.png" from) "new\n")
      (with-file-modes #o700
        (gradients-build--install from '("images/new.png")))
      (should (= (file-modes (expand-file-name "images/new.png" project)) #o600)))))

;; Org tangles a file with a :shebang executable.  The build gives that
;; to whoever may read the file, kept from the file it replaces or given
;; by the umask; a gradients.py that lost its bit to a copy (or a
;; checkout with core.fileMode false) gets it back, even when its bytes
;; are the same, and a refused install changes no permission either.
(ert-deftest build-tests-an-executable-output-runs-for-whoever-may-read-it ()
  (build-tests--in-scratch-project
    (let ((from (expand-file-name "produced/" project))
          (cases '(("copied.py" #o644 #o755 "new\n") ("private.py" #o600 #o700 "new\n")
                   ("same.py" #o640 #o750 "old\n") ("group.py" nil #o770 "new\n"))))
      (pcase-dolist (`(,name ,before ,_ ,bytes) cases)
        (when before
          (build-tests--write (expand-file-name name project) "old\n")
          (set-file-modes (expand-file-name name project) before))
        (build-tests--write (expand-file-name name from) bytes)
        (set-file-modes (expand-file-name name from) #o755))
      (with-file-modes #o770
        (gradients-build--install from (mapcar #'car cases)))
      (pcase-dolist (`(,name ,_ ,after) cases)
        (should (equal (format "%s %o" name (file-modes (expand-file-name name project)))
                       (format "%s %o" name after)))))))

(ert-deftest build-tests-a-refused-install-gives-no-execute-bit ()
  (build-tests--in-scratch-project
    (let ((from (expand-file-name "produced/" project))
          (same (expand-file-name "same.py" project)))
      (dolist (file (list same (expand-file-name "same.py" from)))
        (build-tests--write file "old\n"))
      (set-file-modes same #o644)
      (set-file-modes (expand-file-name "same.py" from) #o755)
      (build-tests--write (expand-file-name "images/x.png" from) "new\n")
      (build-tests--write (expand-file-name "images" project) "a file, not a folder\n")
      (should-error (gradients-build--install from '("same.py" "images/x.png")))
      (should (= (file-modes same) #o644))
      (should-not gradients-build--written))))

;; What the build keeps in .build/ follows the umask as make's own files
;; there do: in a checkout a group shares, another member's make reads it.
;; Emacs made the scratch folder (which becomes .build/produced/) and the
;; lists of digests and outputs private whatever the umask.
(ert-deftest build-tests-the-builds-own-files-follow-the-umask ()
  (with-file-modes #o775
    (build-tests--in-scratch-project
      (build-tests--write (expand-file-name "gradients.py" project) "x = 1\n")
      (make-directory (expand-file-name ".build/produced" project) t)
      (gradients-build--write-digests (expand-file-name ".build/produced/inputs.sha256" project)
                                      '("gradients.py"))
      (gradients-build--write-outputs-list '("gradients.py"))
      (should (equal (mapcar (lambda (file)
                               (format "%s %o" file (file-modes (expand-file-name file project))))
                             (list (file-relative-name gradients-build--scratch project)
                                   ".build/outputs" ".build/outputs.sha256"
                                   ".build/outputs.inputs.sha256"))
                     (list (format "%s %o" (file-relative-name gradients-build--scratch project)
                                   #o775)
                           ".build/outputs 664" ".build/outputs.sha256 664"
                           ".build/outputs.inputs.sha256 664"))))))

;;; build-tests.el ends here
