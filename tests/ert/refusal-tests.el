;;; refusal-tests.el --- what the build refuses, checked in one Emacs  -*- lexical-binding: t -*-

;; emacs -Q --batch -l tests/ert/refusal-tests.el -f ert-run-tests-batch-and-exit
;;
;; Each test writes a README.org of its own into a fresh project folder
;; and runs the build on it in this Emacs (`gradients-build-in-process'):
;; the same checks as `make tangle' or `make run', without an Emacs, Org
;; and a kernel started for each case.  No kernel may start here: the
;; checks refuse every case before a block runs, and a case they let
;; through fails on its first block.  What only the batch build shows
;; (its exit status, no kernel left behind, make after it) is checked once
;; per way it refuses by tests/tooling/test_bad_input.py, test_paths.py
;; and test_safe_build.py.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'subr-x)

(defconst refusal-tests--root
  (expand-file-name "../.." (file-name-directory (or load-file-name buffer-file-name)))
  "The project whose build is tested.")

;; Found on the load path: `load' would read a `$' or `~' in the
;; checkout's path, were it given the file's absolute name.
(let ((load-path (cons (expand-file-name "tools" refusal-tests--root) load-path)))
  (load "build.el" nil t t))

(defconst refusal-tests--header "#+PROPERTY: header-args:jupyter-python :session gradients
#+PROPERTY: header-args:jupyter-python+ :results raw drawer
#+PROPERTY: header-args:jupyter-python+ :tangle gradients.py

* Notes
"
  "The notes' own defaults, as README.org sets them.")

(defconst refusal-tests--draw "from graphviz import Digraph\nd = Digraph()\nd.node('x')\nd"
  "A block that draws a picture, were it run.")

(defun refusal-tests--block (code name &optional args)
  (format "\n#+name: %s\n#+begin_src jupyter-python %s\n%s\n#+end_src\n" name (or args "") code))

(defun refusal-tests--drawing-notes (prefix headers)
  "Notes with one block drawing a picture for each of HEADERS, in order,
named PREFIX-0, PREFIX-1 and so on."
  (apply #'concat refusal-tests--header
         (cl-loop for header in headers for n from 0
                  collect (refusal-tests--block refusal-tests--draw
                                                (format "%s-%d" prefix n) header))))

(defun refusal-tests--line (text line)
  "The number of the first line of TEXT that is LINE exactly."
  (let ((index (cl-position line (split-string text "\n") :test #'equal)))
    (unless index (error "No line %S in the notes" line))
    (1+ index)))

(defun refusal-tests--block-line (text name)
  "The line of block NAME's #+begin_src in TEXT."
  (1+ (refusal-tests--line text (concat "#+name: " name))))

(defvar refusal-tests--project nil
  "The project folder of the running test.")

(defmacro refusal-tests--in-project (&rest body)
  "Run BODY with `refusal-tests--project' a fresh folder laid out as the
project is: its Makefile and .gitignore, and the folders outputs go to
or may not replace.  The folder is removed after."
  (declare (indent 0))
  `(let ((refusal-tests--project
          (file-name-as-directory (make-temp-file "refusal-tests-" t))))
     (unwind-protect
         (progn
           (dolist (folder '("images" "tools" "tests" ".build"))
             (make-directory (expand-file-name folder refusal-tests--project)))
           (dolist (file '("Makefile" ".gitignore"))
             (copy-file (expand-file-name file refusal-tests--root)
                        (expand-file-name file refusal-tests--project)))
           ,@body)
       (delete-directory refusal-tests--project t))))

(defun refusal-tests--state ()
  "Every file and folder of the project, with the bytes of each file."
  (mapcar (lambda (path)
            (cons (file-relative-name path refusal-tests--project)
                  (and (not (file-directory-p path))
                       (with-temp-buffer
                         (set-buffer-multibyte nil)
                         (insert-file-contents-literally path)
                         (buffer-string)))))
          (sort (directory-files-recursively refusal-tests--project "" t) #'string<)))

(defun refusal-tests--refused (text &optional target prepare)
  "Run the build TARGET (tangle, the default, or run) on a README.org of
TEXT (a string, or unibyte bytes written as they are) in the project,
once PREPARE (a function of the file's name) has run; check that it
refused and changed nothing; return its lines naming README.org (or
another Org file of the notes', a setup file), in the order said."
  (let ((file (expand-file-name "README.org" refusal-tests--project)))
    (let ((coding-system-for-write (if (multibyte-string-p text) 'utf-8-unix 'no-conversion)))
      (write-region text nil file nil 'silent))
    (when prepare
      (funcall prepare file))
    (let* ((before (refusal-tests--state))
           (said (cl-letf (((symbol-function 'gradients-start-session)
                            (lambda (name)
                              (error "The checks let the notes through: session %s would start a kernel"
                                     name))))
                   (let ((inhibit-message t))
                     (gradients-build-in-process
                      (intern (format "gradients-build-%s" (or target "tangle"))) file)))))
      (should said)
      (should (string-suffix-p "\nNothing was changed." said))
      (should (equal (refusal-tests--state) before))
      (cl-remove-if-not (lambda (line) (or (string-prefix-p "README.org" line)
                                           (string-match-p "\\`[^ :]+\\.org:[0-9]" line)))
                        (split-string said "\n")))))

(defun refusal-tests--said-in-order (said expected)
  "Whether each line of SAID starts with the line of EXPECTED in its place."
  (and (>= (length said) (length expected))
       (cl-every #'string-prefix-p expected said)))

(defun refusal-tests--said-somewhere (said expected)
  "The first of EXPECTED that no line of SAID starts with, or nil."
  (cl-find-if-not (lambda (start)
                    (cl-some (lambda (line) (string-prefix-p start line)) said))
                  expected))

;;;; The seam itself

(ert-deftest refusal-tests-a-build-in-process-leaves-no-state-behind ()
  "Two refusals in a row say the same, whatever the first left: what a
build found, its hook into file reading, the notes' buffer."
  (refusal-tests--in-project
    (let* ((text (concat refusal-tests--header
                         (refusal-tests--block "x = 1" "one" ":tangle Makefile")))
           (first (refusal-tests--refused text)))
      (should (equal (refusal-tests--refused text) first))
      (should-not (advice-member-p #'gradients-build--note-input 'insert-file-contents))
      (should-not (find-buffer-visiting
                   (expand-file-name "README.org" refusal-tests--project)))
      (should-not gradients-build--scratch)
      (should-not gradients-build--key-of))))

;;;; Text Org would misread, refused before Org reads it

(ert-deftest refusal-tests-bytes-that-are-not-utf-8-are-named ()
  (refusal-tests--in-project
    (let ((text (encode-coding-string
                 (concat refusal-tests--header (refusal-tests--block "x = 1" "fine")
                         "\nCaf\u00e9 au lait.\n")
                 'latin-1)))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: byte #xE9 is not UTF-8; the notes must be saved as UTF-8"
                                   (refusal-tests--line (decode-coding-string text 'latin-1)
                                                        "Caf\u00e9 au lait."))))))))

;; Org would not see the first line's keyword behind a byte order mark,
;; and with CR LF not even #+end_src ends a block.
(ert-deftest refusal-tests-a-byte-order-mark-or-cr-lf-is-named ()
  (refusal-tests--in-project
    (let ((notes (concat refusal-tests--header (refusal-tests--block "x = 1" "fine"))))
      (pcase-dolist (`(,text ,line ,what)
                     `((,(concat "\ufeff" notes) 1 "the file starts with a byte order mark")
                       (,(string-replace "\n" "\r\n" notes) 1
                        "the line ends in CR LF (Windows line ends)")
                       (,(string-replace "x = 1\n" "x = 1\r\n" notes) 9
                        "the line ends in CR LF")
                       (,(string-replace "x = 1\n" "x = 1\rprint(2)\n" notes) 9
                        "a carriage return (^M) inside the line")
                       (,(concat notes "\nNo\0te.\n") 12
                        "a NUL byte (^@), for which git and GitHub take the whole file for binary")))
        (let ((said (refusal-tests--refused text)))
          (should (= (length said) 1))
          (should (string-prefix-p (format "README.org:%d: %s" line what) (car said))))))))

;;;; Notes `make run' would replace against their owner's wish

;; Its install renames a new file over README.org.
(ert-deftest refusal-tests-make-run-refuses-a-link-or-a-read-only-readme ()
  (refusal-tests--in-project
    (let ((text (concat refusal-tests--header (refusal-tests--block "print(1)" "one")))
          (notes (expand-file-name "notes.org" refusal-tests--project)))
      (should (equal (refusal-tests--refused
                      text "run"
                      (lambda (file)
                        (rename-file file notes)
                        (make-symbolic-link "notes.org" file)))
                     (list (format "README.org is a symbolic link, which `make run' would replace with a file; run it where the link points (%s)"
                                   notes))))
      (should (file-symlink-p (expand-file-name "README.org" refusal-tests--project)))
      (delete-file (expand-file-name "README.org" refusal-tests--project))
      (should (equal (refusal-tests--refused
                      text "run" (lambda (file) (set-file-modes file #o444)))
                     '("README.org is read-only; make it writable (chmod u+w README.org) for `make run' to rewrite it")))
      (should (= (file-modes (expand-file-name "README.org" refusal-tests--project)) #o444)))))

;; What a read-only file system or another user's checkout does, which
;; root, who runs the tests, never meets: chmod would not help there.
(ert-deftest refusal-tests-make-run-refuses-a-readme-or-folder-it-cannot-write-here ()
  (refusal-tests--in-project
    (let ((text (concat refusal-tests--header (refusal-tests--block "print(1)" "one"))))
      (pcase-dolist (`(,unwritable ,said)
                     '(("README.org" "README.org cannot be written here (it is on a read-only file system, or another user's)")
                       ("" "README.org cannot be replaced: its folder is not writable")))
        (let* ((unwritable (directory-file-name
                            (expand-file-name unwritable refusal-tests--project)))
               (writable-p (symbol-function 'file-writable-p))
               (refused (cl-letf (((symbol-function 'file-writable-p)
                                   (lambda (file)
                                     (and (not (equal (directory-file-name (expand-file-name file))
                                                      unwritable))
                                          (funcall writable-p file)))))
                          (refusal-tests--refused text "run"))))
          (should (equal (length refused) 1))
          (should (string-prefix-p said (car refused))))))))

;;;; Blocks and drawers Org reads as plain text

;; Found by probing: Org ignores a value it does not know, and the block
;; ran and was written as if it had none (`:results silient', `:eval
;; noo'); Org 9.5 failed on `:tangle-mode o644' with a bare type error,
;; and 1e309, Org's infinity, passed for a time limit.
(ert-deftest refusal-tests-a-header-value-org-does-not-know-is-named ()
  (refusal-tests--in-project
    (let* ((setting "#+PROPERTY: header-args:jupyter-python+ :results rwa drawer")
           (text (concat refusal-tests--header setting "\n"
                         (refusal-tests--block "x = 1" "typo" ":results silient :eval noo")
                         "\n#+name: on-its-own-line\n#+header: :exports bogus\n"
                         "#+begin_src jupyter-python\nx = 2\n#+end_src\n"
                         (refusal-tests--block "x = 3" "mode" ":tangle-mode bogus")
                         (refusal-tests--block "x = 4" "forever" ":timeout 1e309")
                         (refusal-tests--block "x = 8" "forever-too" (concat ":timeout 1" (make-string 400 ?0)))
                         ;; Lisp, Org's to evaluate: not run here, nor checked.
                         (refusal-tests--block "x = 5" "quoted" ":exports 'both :cache `no")
                         ;; Values Org reads that its table lacks.
                         (refusal-tests--block "x = 6" "read-anyway" ":noweb eval :eval query-export")
                         (refusal-tests--block "x = 7" "both-ways" ":results output value")))
           (said (refusal-tests--refused text)))
      (should-not
       (refusal-tests--said-somewhere
        said
        (list (format "README.org:%d: :results rwa is a value Org does not know, and ignores (a typo?)"
                      (refusal-tests--line text setting))
              (format "README.org:%d: :results silient is a value Org does not know"
                      (refusal-tests--block-line text "typo"))
              (format "README.org:%d: :eval noo is a value Org does not know"
                      (refusal-tests--block-line text "typo"))
              (format "README.org:%d: block `mode': :tangle-mode bogus is no file mode Org"
                      (refusal-tests--block-line text "mode"))
              ;; Said without Org's reading of it, 1.0e+INF.
              (format "README.org:%d: block `forever': :timeout is more seconds than any clock counts"
                      (refusal-tests--block-line text "forever"))
              (format "README.org:%d: block `forever-too': :timeout is more seconds than any clock counts"
                      (refusal-tests--block-line text "forever-too"))
              ;; Org would run one of the two, in silence.
              (format "README.org:%d: Forbidden combination in header \":results\": output, value"
                      (refusal-tests--block-line text "both-ways")))))
      (dolist (name '("quoted" "read-anyway"))
        (should-not (cl-some (lambda (line)
                               (string-prefix-p (format "README.org:%d:" (refusal-tests--block-line text name))
                                                line))
                             said)))
      ;; On the block's first line, the #+header line or its #+begin_src,
      ;; as Org's version tells.
      (should (cl-some (lambda (line)
                         (string-match-p (format "\\`README\\.org:\\(%d\\|%d\\|%d\\): :exports bogus is a value Org does not know"
                                                 (1- (refusal-tests--block-line text "on-its-own-line"))
                                                 (refusal-tests--line text "#+header: :exports bogus")
                                                 (1+ (refusal-tests--line text "#+header: :exports bogus")))
                                         line))
                       said))
      ;; Org runs both, though its table of values sets them apart.
      (should-not (cl-some (lambda (line) (string-match-p "Forbidden.*raw\\|:results raw" line)) said)))))

(ert-deftest refusal-tests-a-block-never-closed-is-named ()
  (refusal-tests--in-project
    (let ((text (concat refusal-tests--header (refusal-tests--block "x = 1" "fine")
                        "\n#+begin_src jupyter-python\nx = 2\n")))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: #+begin_src has no #+end_src; Org reads it as plain text, so its code would neither run nor be tangled"
                                   (refusal-tests--line text "#+begin_src jupyter-python"))))))))

;; Not at the end: the next block's #+end_src closes it, and the next
;; block becomes code of the first.  Its result, then under no block, is
;; not said too: the advice for it (remove it, or rename it) was wrong.
(ert-deftest refusal-tests-a-block-closed-by-the-next-ones-end-is-named ()
  (refusal-tests--in-project
    (let ((text (concat refusal-tests--header
                        "\n#+name: open\n#+begin_src jupyter-python\nx = 2\n"
                        "\n#+RESULTS: open\n:results:\n: 2\n:end:\n"
                        (refusal-tests--block "y = 3" "next")
                        "\n#+RESULTS: next\n:results:\n: 3\n:end:\n"
                        ;; Escaped, as Org escapes it: code, not a block.
                        (refusal-tests--block "s = '''\n,#+begin_src python\n'''" "escaped"))))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: block `open': its code holds an unescaped #+begin_src, at line %d: if the block before it lacks its #+end_src, add it (Org reads both blocks as one); if it is code, escape it as Org does, ,#+begin_src"
                                   (refusal-tests--line text "#+begin_src jupyter-python")
                                   (refusal-tests--block-line text "next"))))))))

;; `make run' used to crash on it.
(ert-deftest refusal-tests-a-drawer-never-closed-is-named-by-both-targets ()
  (refusal-tests--in-project
    (let ((text (concat refusal-tests--header (refusal-tests--block "x = 1" "fine")
                        "\n#+RESULTS: fine\n:results:\n: 1\n\n"
                        (refusal-tests--block "y = 2" "next"))))
      (dolist (target '("tangle" "run"))
        (should (equal (refusal-tests--refused text target)
                       (list (format "README.org:%d: drawer :results: has no :end:; Org reads it as plain text"
                                     (refusal-tests--line text ":results:")))))))))

;; Found by probing: text typed after a drawer's :results: made it no
;; drawer, and org-lint named the next block's drawer, which was sound.
(ert-deftest refusal-tests-a-drawer-whose-first-line-was-written-on-is-named-by-its-end ()
  (refusal-tests--in-project
    (let ((text (concat refusal-tests--header (refusal-tests--block "x = 1" "fine")
                        "\n#+RESULTS: fine\n:results: (checking)\n: 1\n:end:\n"
                        (refusal-tests--block "y = 2" "next")
                        "\n#+RESULTS: next\n:results:\n: 2\n:end:\n")))
      (dolist (target '("tangle" "run"))
        (should (equal (refusal-tests--refused text target)
                       (list (format "README.org:%d: this :end: closes no drawer, so Org reads the drawer as plain text: the drawer's first line, %d, holds more than its :NAME: alone"
                                     (refusal-tests--line text ":end:")
                                     (refusal-tests--line text ":results: (checking)")))))))
    ;; The last drawer of the notes, whose :end: Org reads as text; and
    ;; one whose first line is gone.
    (dolist (drawer '(":results: (checking)\n: 1\n:end:\n" ": 1\n:end:\n"))
      (let ((text (concat refusal-tests--header (refusal-tests--block "x = 1" "fine")
                          "\n#+RESULTS: fine\n" drawer)))
        (should (equal (refusal-tests--refused text)
                       (list (if (string-prefix-p ":results:" drawer)
                                 (format "README.org:%d: this :end: closes no drawer, so Org reads the drawer as plain text: the drawer's first line, %d, holds more than its :NAME: alone"
                                         (refusal-tests--line text ":end:")
                                         (refusal-tests--line text ":results: (checking)"))
                               (format "README.org:%d: this :end: closes no drawer, so Org reads the drawer as plain text: begin the drawer with a line holding its :NAME: alone, or remove the :end:"
                                       (refusal-tests--line text ":end:"))))))))))

;;;; What the build would not run or keep current

(ert-deftest refusal-tests-a-picture-an-interactive-run-saved-is-refused-by-both-targets ()
  (refusal-tests--in-project
    (let ((text (concat refusal-tests--header (refusal-tests--block "plt.plot([1, 2])" "loose")
                        "\n#+RESULTS: loose\n:results:\n[[file:.build/pictures/0a1b2c.png]]\n:end:\n")))
      (dolist (target '("tangle" "run"))
        (should (equal (refusal-tests--refused text target)
                       (list (format "README.org:%d: .build/pictures/0a1b2c.png is a picture saved by an interactive run, which GitHub cannot show; give its block a :file under images/"
                                     (refusal-tests--line text "[[file:.build/pictures/0a1b2c.png]]")))))))))

;; The kernel runs what gradients.py holds: nothing the build leaves out
;; (under a COMMENT or archived heading, or of :eval no) may reach a block
;; it runs, nor a block it does not run be tangled.
(ert-deftest refusal-tests-what-a-block-takes-from-one-left-out-is-refused ()
  (refusal-tests--in-project
    (pcase-dolist (`(,left-out ,user ,said)
                   '(("\n* Old :ARCHIVE:\n" ":var h=helper"
                      ":var h=helper names block `helper' (line %d), which the build does not run, as it is under an archived heading")
                     ("\n* Later\n" ":var h=HELPER()"
                      ":var h=HELPER() names block `helper' (line %d), which the build does not run, as it has :eval no")
                     ("\n* COMMENT Draft\n" ":noweb yes"
                      "Cannot resolve <<helper>>: no block the build runs has that name")))
      (let* ((args (if (string-match-p "eval no" said) ":eval no :tangle no" ""))
             (text (concat refusal-tests--header left-out
                           (refusal-tests--block "secret = 1\n41" "helper" args)
                           "\n* Using it\n"
                           (refusal-tests--block (if (string= user ":noweb yes")
                                                     "<<helper>>\nprint(secret)"
                                                   "print(int(h) + secret)")
                                                 "user" user))))
        (let ((lines (refusal-tests--refused text)))
          (should (= (length lines) 1))
          (should (string-prefix-p (format (concat "README.org:%d: block `user': " said)
                                           (refusal-tests--block-line text "user")
                                           (refusal-tests--block-line text "helper"))
                                   (car lines))))))))

(ert-deftest refusal-tests-a-block-of-eval-no-that-is-tangled-is-refused ()
  (refusal-tests--in-project
    (dolist (eval '("no" "never"))
      (let ((text (concat refusal-tests--header
                          (refusal-tests--block "x = 1" "ran")
                          (refusal-tests--block "print('not run')" "not-run"
                                                (concat ":eval " eval)))))
        (should (equal (refusal-tests--refused text)
                       (list (format "README.org:%d: block `not-run': it has :eval %s, yet it is tangled into gradients.py, which would run it: add :tangle no, or let it run"
                                     (refusal-tests--block-line text "not-run") eval))))))))

;; GitHub's renderer hides a COMMENT section only when COMMENT follows the
;; stars or a TODO keyword, and a title follows it.
(ert-deftest refusal-tests-a-comment-heading-github-would-show-is-refused ()
  (refusal-tests--in-project
    (pcase-dolist (`(,heading ,why)
                   '(("* [#A] COMMENT A draft" "COMMENT after a priority cookie")
                     ("* TODO [#B] COMMENT A draft" "COMMENT after a priority cookie")
                     ("* COMMENT" "COMMENT with no title")))
      (let ((text (concat refusal-tests--header (refusal-tests--block "x = 1" "kept")
                          "\n" heading "\n" (refusal-tests--block "y = 2" "draft"))))
        (should (equal (refusal-tests--refused text)
                       (list (format "README.org:%d: this COMMENT heading is left out by Org, blocks and all, but GitHub shows it (%s): put COMMENT before the priority, and a title after it"
                                     (refusal-tests--line text heading) why))))))))

(ert-deftest refusal-tests-a-result-under-a-comment-heading-apart-from-its-block-is-refused ()
  (refusal-tests--in-project
    (let ((text (concat refusal-tests--header (refusal-tests--block "print(1)" "live")
                        "\n* COMMENT Old\n\n#+RESULTS: live\n:results:\n: 1\n:end:\n")))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: block `live': its #+RESULTS (line %d) is under a COMMENT or archived heading, which GitHub hides or Org leaves out, apart from the block: move it after the block"
                                   (refusal-tests--block-line text "live")
                                   (refusal-tests--line text "#+RESULTS: live"))))))))

(ert-deftest refusal-tests-a-picture-an-interactive-run-saved-is-refused-by-any-spelling ()
  (refusal-tests--in-project
    (dolist (spelling '(".build/./pictures/0a.png" "./.build/pictures/0a.png"
                        "PROJECT.build/pictures/0a.png"))
      (let* ((link (replace-regexp-in-string "PROJECT" refusal-tests--project spelling t t))
             (text (concat refusal-tests--header (refusal-tests--block "plt.plot([1, 2])" "loose")
                           "\n#+RESULTS: loose\n:results:\n[[file:" link "]]\n:end:\n")))
        (should (equal (refusal-tests--refused text)
                       (list (format "README.org:%d: %s is a picture saved by an interactive run, which GitHub cannot show; give its block a :file under images/"
                                     (refusal-tests--line text (concat "[[file:" link "]]"))
                                     link))))))))

(ert-deftest refusal-tests-a-call-line-or-an-inline-block-is-refused ()
  (refusal-tests--in-project
    (pcase-dolist (`(,line ,what)
                   '(("#+CALL: fine()" "a #+CALL line is not run by the build")
                     ("Two is src_jupyter-python{1 + 1}."
                      "an inline source block is not run by the build")
                     ;; Found by probing: called a #+CALL line.
                     ("It is call_fine()." "an inline call (call_fine) is not run by the build")
                     ;; Found by probing: Org runs one in a caption too.
                     ("#+caption: Two is src_jupyter-python{1 + 1}."
                      "an inline source block is not run by the build")))
      (let* ((text (concat refusal-tests--header (refusal-tests--block "x = 1" "fine")
                           "\n" line
                           ;; A caption is the next element's.
                           (if (string-prefix-p "#+caption" line)
                               (refusal-tests--block "y = 2" "captioned")
                             "\n")))
             (said (refusal-tests--refused text)))
        (should (= (length said) 1))
        (should (string-prefix-p (format "README.org:%d: %s" (refusal-tests--line text line) what)
                                 (car said)))))))

;; Raw text outside a drawer has no end Org can find: each `make run'
;; would add it again.  A result recorded as code would be run and tangled.
(ert-deftest refusal-tests-a-result-org-cannot-replace-or-would-run-is-refused ()
  (refusal-tests--in-project
    (let* ((text (concat refusal-tests--header
                         (refusal-tests--block "print('one')" "fine")
                         (refusal-tests--block "x = 1" "raw" ":results raw replace")
                         (refusal-tests--block "x = 1" "wrapped" ":results raw replace :wrap example")
                         (refusal-tests--block "x = 1" "code" ":results code")))
           (said (refusal-tests--refused text "run")))
      (should (refusal-tests--said-in-order
               said
               (list (format "README.org:%d: block `raw': :results raw outside a drawer"
                             (refusal-tests--block-line text "raw"))
                     (format "README.org:%d: block `wrapped': :wrap example would record the result in a #+begin_example block"
                             (refusal-tests--block-line text "wrapped"))
                     (format "README.org:%d: block `code': :results code"
                             (refusal-tests--block-line text "code")))))
      (should (= (length said) 3)))))

;; Found by probing: Org records the result otherwise than as the drawer
;; text the block produced (so `make test' fails after every `make run'),
;; or beside the last one (so each `make run' adds it once more).  What
;; writes nothing, and a picture's own link, are kept.
(ert-deftest refusal-tests-a-result-org-would-reshape-or-add-again-is-refused ()
  (refusal-tests--in-project
    (let* ((cases '(("tab" ":results table" ":results table would make Org record the result reshaped")
                    ("vec" ":results value vector" ":results vector would make Org record")
                    ("lst" ":results list" ":results list would make Org record")
                    ("pp" ":results pp" ":results pp would make Org record")
                    ("htm" ":results html" ":results html would make Org record")
                    ("org" ":results org" ":results org would make Org record")
                    ("lnk" ":file images/l.svg :results link" ":results link would make Org record")
                    ("app" ":results append" ":results append would add the result beside the last one")
                    ("pre" ":results prepend drawer" ":results prepend would add")
                    ("ex" ":wrap example" ":wrap example would record the result in a #+begin_example block")
                    ("src" ":wrap src jupyter-python" ":wrap src jupyter-python would record the result in a #+begin_src block")
                    ("bare" ":wrap" ":wrap results would record the result in a #+begin_results block")
                    ("named" ":results file" ":results file without a :file would record a link")
                    ("quiet" ":results table silent" nil)
                    ("gone" ":wrap example :results none" nil)
                    ("drawn" ":file images/d.svg :results graphics file" nil)
                    ("plain" ":results output verbatim scalar replace" nil)))
           (text (apply #'concat refusal-tests--header
                        (mapcar (lambda (case)
                                  (refusal-tests--block refusal-tests--draw (nth 0 case) (nth 1 case)))
                                cases)))
           (said (refusal-tests--refused text "run")))
      (should (refusal-tests--said-in-order
               said
               (cl-loop for (name _ what) in cases
                        when what
                        collect (format "README.org:%d: block `%s': %s"
                                        (refusal-tests--block-line text name) name what))))
      (should (= (length said) (cl-count-if #'caddr cases))))))

;; Found by probing: Org nests no drawer in another, so `make run' left
;; notes the next build refused; on a fresh kernel Org skipped a cached
;; block, so the next `make run' failed in a block after it; and `make
;; run' stopped on :eval query with "End of file during parsing", Org
;; having asked its question of the standard input.
(ert-deftest refusal-tests-a-block-in-a-drawer-cached-or-asking-is-refused ()
  (refusal-tests--in-project
    (let* ((text (concat refusal-tests--header
                         "\n:notes:" (refusal-tests--block "x = 1" "in-drawer") ":end:\n"
                         "\n:NOTES:\nSome text." (refusal-tests--block "x = 1" "deeper")
                         "More text.\n:END:\n"
                         (refusal-tests--block "x = 1" "cached" ":cache yes")
                         (refusal-tests--block "x = 1" "fresh" ":cache no")
                         (refusal-tests--block "x = 1" "asking" ":eval query")
                         (refusal-tests--block "x = 1" "on-export" ":eval query-export")
                         "\n#+begin_quote" (refusal-tests--block "x = 1" "quoted") "#+end_quote\n"
                         "\n- an item\n"
                         (replace-regexp-in-string "^" "  " (refusal-tests--block "x = 1" "listed"))
                         "\n:quiet:" (refusal-tests--block "x = 1" "silent" ":results silent")
                         ":end:\n"))
           (said (refusal-tests--refused text "run")))
      (should (equal said
                     (list (format "README.org:%d: block `in-drawer': is inside the drawer :notes:, where its results drawer would end the outer one, and the next build find both unclosed; move the block out of the drawer"
                                   (refusal-tests--block-line text "in-drawer"))
                           (format "README.org:%d: block `deeper': is inside the drawer :NOTES:, where its results drawer would end the outer one, and the next build find both unclosed; move the block out of the drawer"
                                   (refusal-tests--block-line text "deeper"))
                           (format "README.org:%d: block `cached': :cache yes would make Org skip the block when its code is unchanged, but `make run' runs every block on a fresh kernel, and the blocks after it need what it defines; drop the :cache"
                                   (refusal-tests--block-line text "cached"))
                           (format "README.org:%d: block `asking': :eval query makes Org ask before each run, and a build has no one to ask; use :eval yes, or :eval no to keep the block from running"
                                   (refusal-tests--block-line text "asking"))))))))

;; Found by probing: Org updates one #+RESULTS a block; a second one of
;; its name, or one that follows no block, stayed stale without a word.
(ert-deftest refusal-tests-a-result-org-never-updates-is-refused ()
  (refusal-tests--in-project
    (let* ((text (concat refusal-tests--header
                         (refusal-tests--block "print(1)" "one")
                         "\n#+RESULTS: one\n:results:\n: 1\n:end:\n"
                         "\nText.\n\n#+RESULTS: one\n:results:\n: stale\n:end:\n"
                         "\n#+RESULTS:\n:results:\n: stray\n:end:\n"
                         "\n#+begin_src jupyter-python\nprint(2)\n#+end_src\n"
                         "\n#+RESULTS:\n:results:\n: 2\n:end:\n"
                         "\n#+RESULTS: gone\n:results:\n: 3\n:end:\n"
                         ;; Found by probing: its #+RESULTS line removed,
                         ;; as the advice said, the drawer stayed unchecked.
                         "\nText.\n\n:results:\n: 99.0\n:end:\n"))
           (lines (split-string text "\n"))
           (line-of (lambda (line &optional nth)
                      (1+ (cl-position line lines :test #'equal :from-end nth)))))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: #+RESULTS: one is a second result of block `one', which Org never updates (it writes the one at line %d); remove it"
                                   (funcall line-of "#+RESULTS: one" t)
                                   (funcall line-of "#+RESULTS: one"))
                           (format "README.org:%d: #+RESULTS follows no block that writes it, so Org never updates it; remove it"
                                   (funcall line-of "#+RESULTS:"))
                           (format "README.org:%d: #+RESULTS: gone belongs to no block (was the block renamed?); remove it with its drawer, or name it after the block"
                                   (funcall line-of "#+RESULTS: gone"))
                           (format "README.org:%d: a results drawer under no #+RESULTS line: no block writes it and no check reads it (was its #+RESULTS line removed?); remove it"
                                   (1- (funcall line-of ": 99.0")))))))))

;; A result Org writes nowhere, or makes otherwise than the block did, is
;; one nothing checks: each way of it is refused on its block's line.
;; Found by probing: an archived block, or one of :eval no, kept a link
;; to a picture no build drew; `make test' does not check its result, and
;; GitHub, which shows archived sections, showed the picture broken.
(ert-deftest refusal-tests-a-link-in-the-result-of-a-block-never-run-is-refused ()
  (refusal-tests--in-project
    (let* ((drawer "\n#+RESULTS: %s\n:results:\n[[file:images/%s.png]]\n:end:\n")
           (text (concat refusal-tests--header
                         (refusal-tests--block "x = 1" "runs")
                         (refusal-tests--block "print(2)" "never" ":eval no :tangle no :file images/never.png")
                         (format drawer "never" "never")
                         ;; A picture a block the build runs draws is there.
                         (refusal-tests--block "print(5)" "shares" ":eval no :tangle no")
                         "\n#+RESULTS: shares\n:results:\n[[file:images/drawn.svg]]\n:end:\n"
                         (refusal-tests--block refusal-tests--draw "draws" ":file images/drawn.svg")
                         ;; Lisp Org evaluates as it tangles: no mode to check here.
                         (refusal-tests--block "x = 6" "lisp-mode" ":tangle-mode (identity #o644)")
                         "\n* Kept :ARCHIVE:\n"
                         (refusal-tests--block "print(3)" "archived" ":file images/archived.png")
                         (format drawer "archived" "archived")))
           (said (refusal-tests--refused text)))
      (should-not
       (refusal-tests--said-somewhere
        said
        (list (format "README.org:%d: block `never': its result links images/never.png, which the build does not draw, as it does not run the block (it has :eval no)"
                      (refusal-tests--block-line text "never"))
              (format "README.org:%d: block `archived': its result links images/archived.png, which the build does not draw, as it does not run the block ("
                      (refusal-tests--block-line text "archived")))))
      (should-not (cl-some (lambda (line) (string-match-p "`shares'\\|`lisp-mode'\\|`draws'" line))
                           said)))))

(ert-deftest refusal-tests-a-result-nothing-would-check-is-refused ()
  (refusal-tests--in-project
    (let* ((recorded "\n#+RESULTS: %s\n:results:\n: 20.0\n:end:\n")
           (text (concat refusal-tests--header
                         (refusal-tests--block "x = 20.0" "first")
                         (refusal-tests--block "x" "silenced" ":results silent")
                         (format recorded "silenced")
                         (refusal-tests--block "x" "nothing" ":results none")
                         (format recorded "nothing")
                         (refusal-tests--block "x" "posted" ":post up(x=*this*)")
                         "\n#+name: up\n#+begin_src emacs-lisp :var x=\"\"\nx\n#+end_src\n"
                         ;; A heading's header-args without `+' replaces the
                         ;; notes' :results raw drawer (and their :tangle).
                         "\n* Later\n:PROPERTIES:\n:header-args:jupyter-python: :session gradients\n:END:\n"
                         (refusal-tests--block "x" "undrawn")
                         (refusal-tests--block "x" "output" ":results output"))))
      (should (equal (refusal-tests--refused text)
                     (append
                      (mapcar (lambda (word)
                                (format "README.org:%d: block `%s': its #+RESULTS (line %d) is never updated, as :results %s writes no result, so nothing checks it; remove it, or drop `%s'"
                                        (refusal-tests--block-line text (car word)) (car word)
                                        (refusal-tests--line text (concat "#+RESULTS: " (car word)))
                                        (cdr word) (cdr word)))
                              '(("silenced" . "silent") ("nothing" . "none")))
                      (list (format "README.org:%d: block `posted': :post up(x=*this*) would record what another block makes of the result, which `make tangle' and `make test' never run; drop the :post, and do it in this block's code"
                                    (refusal-tests--block-line text "posted")))
                      (mapcar (lambda (word)
                                ;; The line that dropped the notes' drawer,
                                ;; whether the block shows a :results of
                                ;; its own or not.
                                (format "README.org:%d: block `%s': :results %s without `drawer' makes Org write the block's text, lines already fixed-width, as fixed-width lines of its own (`: : 20.0'); use :results raw drawer, as the notes' #+PROPERTY does (a header-args property without `+' replaces it) (because of the header-args property at README.org:%d)"
                                        (refusal-tests--block-line text (car word)) (car word) (cdr word)
                                        (refusal-tests--line text ":header-args:jupyter-python: :session gradients")))
                              '(("undrawn" . "replace") ("output" . "output")))))))))

;; The kernel runs what gradients.py holds, in one module: the blocks
;; tangled into it share one session, and a block the build does not run
;; goes into no file tangled from those it runs.
(ert-deftest refusal-tests-a-block-apart-from-the-notes-kernel-is-refused ()
  (refusal-tests--in-project
    (let* ((text (concat refusal-tests--header
                         (refusal-tests--block "def f(x):\n    return x" "define")
                         (refusal-tests--block "f = None" "elsewhere" ":session other")
                         (refusal-tests--block "f = None" "sessionless" ":session none")
                         ;; Run on a kernel of its own, and in no file, or
                         ;; in a file of its own.
                         (refusal-tests--block "f = None" "apart" ":session other :tangle no")
                         (refusal-tests--block "g = None" "own-file" ":session other :tangle other.py")
                         (refusal-tests--block "h = None" "own-file-too" ":session other :tangle other.py")
                         "\n#+name: lisp\n#+begin_src emacs-lisp :tangle gradients.py\n(setq f nil)\n#+end_src\n"
                         "\n#+name: plain\n#+begin_src python :tangle gradients.py\nf = None\n#+end_src\n"
                         "\n#+name: shell\n#+begin_src sh :tangle ./gradients.py\necho\n#+end_src\n"
                         ;; A file of its own: nothing the build runs is in it.
                         "\n#+name: own\n#+begin_src emacs-lisp :tangle setup.el\n(setq f nil)\n#+end_src\n")))
      (should (equal (refusal-tests--refused text)
                     (append
                      (mapcar (lambda (case)
                                (format "README.org:%d: block `%s': :session %s is not the session of the blocks tangled with it (gradients, from block `define' at line %d), and their file runs in one module what two kernels ran apart: drop the :session, or add :tangle no"
                                        (refusal-tests--block-line text (car case)) (car case)
                                        (cdr case) (refusal-tests--block-line text "define")))
                              '(("elsewhere" . "other") ("sessionless" . "none")))
                      (mapcar (lambda (case)
                                (format "README.org:%d: block `%s': it is %s, which the build does not run, yet it is tangled into gradients.py with the blocks the build runs, so that file would run code the kernel never ran; tangle it into a file of its own, or add :tangle no"
                                        (refusal-tests--block-line text (car case)) (car case)
                                        (cdr case)))
                              '(("lisp" . "emacs-lisp") ("plain" . "python") ("shell" . "sh")))))))))

;; Org runs a block a :var names whenever it reads the header, tangling
;; included: before the blocks above it have run, and more than once.
(ert-deftest refusal-tests-a-var-naming-a-block-is-refused ()
  (refusal-tests--in-project
    (let* ((text (concat refusal-tests--header
                         (refusal-tests--block "import math" "imports")
                         (refusal-tests--block "math.pi" "value")
                         "\n#+name: lisp-value\n#+begin_src emacs-lisp\n7\n#+end_src\n"
                         (refusal-tests--block "print(v)" "uses-value" ":var v=value")
                         (refusal-tests--block "print(v)" "calls-value" ":var v=VALUE()")
                         (refusal-tests--block "print(v)" "uses-lisp" ":var v=lisp-value")
                         ;; Values that are no block's are read, not run.
                         (refusal-tests--block "print(n, w)" "literal" ":var n=3 w=\"hi\"")))
           (message "README.org:%d: block `%s': :var v=%s names block `%s' (line %d), which Org would run again for its value each time it reads this header, tangling too, out of the notes' order, and write the value into gradients.py as a constant; compute it in this block's code instead"))
      (should (equal (refusal-tests--refused text)
                     (list (format message (refusal-tests--block-line text "uses-value") "uses-value"
                                   "value" "value" (refusal-tests--block-line text "value"))
                           (format message (refusal-tests--block-line text "calls-value") "calls-value"
                                   "VALUE()" "value" (refusal-tests--block-line text "value"))
                           (format message (refusal-tests--block-line text "uses-lisp") "uses-lisp"
                                   "lisp-value" "lisp-value" (1+ (refusal-tests--line text "#+name: lisp-value")))))))))

;; Found by probing: IPython's own syntax in a tangled block ran in the
;; kernel, and `make run' recorded it; gradients.py then failed every
;; `make test' with a SyntaxError.  A block that fails in the kernel too
;; is the run's to name.
(ert-deftest refusal-tests-a-tangled-block-python-cannot-run-is-refused ()
  (refusal-tests--in-project
    (let* ((text (concat refusal-tests--header
                         (refusal-tests--block "x = 1" "plain")
                         (refusal-tests--block "!echo hi\nx = 2" "shell")
                         (refusal-tests--block "x = 1\n%time y = 2" "magic")
                         (refusal-tests--block "import asyncio\nawait asyncio.sleep(0)" "awaits")
                         (refusal-tests--block "x = = 1" "broken")
                         (refusal-tests--block "!echo apart" "apart" ":tangle no")))
           (message "README.org:%d: block `%s': it is tangled into gradients.py, which Python cannot run: %s at README.org:%d (%s); IPython's own syntax (!command, %%magic, top-level await) runs in the kernel alone: call subprocess or the function itself, or add :tangle no"))
      (should (equal (refusal-tests--refused text)
                     (list (format message (refusal-tests--block-line text "shell") "shell"
                                   "invalid syntax" (1+ (refusal-tests--block-line text "shell"))
                                   "!echo hi")
                           (format message (refusal-tests--block-line text "magic") "magic"
                                   "invalid syntax" (+ 2 (refusal-tests--block-line text "magic"))
                                   "%time y = 2")
                           (format message (refusal-tests--block-line text "awaits") "awaits"
                                   "'await' outside function"
                                   (+ 2 (refusal-tests--block-line text "awaits"))
                                   "await asyncio.sleep(0)")))))))

;; Found by probing: a :file given twice drew the last alone, without a
;; word; a no-break space, which looks like a space, made one unknown
;; header argument of a name and its value.
(ert-deftest refusal-tests-a-header-argument-twice-or-joined-by-an-unseen-space-is-said-so ()
  (refusal-tests--in-project
    (let* ((text (concat refusal-tests--header
                         (refusal-tests--block refusal-tests--draw "twice"
                                               ":file images/a.svg :file images/b.svg")
                         (refusal-tests--block refusal-tests--draw "merged"
                                               ":var a=1 :var b=2 :file images/m.svg")
                         (refusal-tests--block refusal-tests--draw "joined"
                                               (string-to-multibyte ":file\u00a0images/j.svg"))
                         "\n#+PROPERTY: header-args:jupyter-python+ :timeout 30 :timeout 60\n")))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: block `twice': :file given twice in its header, and Org keeps the last alone, without a word: give it once"
                                   (refusal-tests--block-line text "twice"))
                           (format "README.org:%d: block `joined': unknown header argument :file\u00a0images/j.svg; Org would ignore it (a typo?; it holds U+00A0 no-break space, which Org does not read as a space)"
                                   (refusal-tests--block-line text "joined"))
                           (format "README.org:%d: :timeout given twice in this line, and Org keeps the last alone, without a word: give it once"
                                   (refusal-tests--line text "#+PROPERTY: header-args:jupyter-python+ :timeout 30 :timeout 60"))))))))

;; Found by probing: blocks fine alone that fail together in their file
;; (a __future__ import after other code, a coding declared), and a file
;; named as a module, which the script and make test would import in
;; place of the library.
(ert-deftest refusal-tests-tangled-blocks-python-cannot-run-together-are-refused ()
  (refusal-tests--in-project
    (let* ((text (concat refusal-tests--header
                         (refusal-tests--block "x = 1" "plain")
                         (refusal-tests--block "from __future__ import annotations\ny = 2" "late")
                         (refusal-tests--block "# coding: latin-1\nprint('é')" "declares"
                                               ":tangle other.py")
                         (refusal-tests--block "import sys" "shadows" ":tangle numpy.py")
                         (refusal-tests--block "import sys" "local" ":tangle conftest.py")))
           (said (refusal-tests--refused text)))
      (should (refusal-tests--said-in-order
               said
               (list (format "README.org:%d: block `late': it is tangled into gradients.py with the blocks before it, and Python cannot run that file: from __future__ imports must occur at the beginning of the file at README.org:%d (from __future__ import annotations)"
                             (refusal-tests--block-line text "late")
                             (1+ (refusal-tests--block-line text "late")))
                     (format "README.org:%d: block `declares': it is tangled into other.py with the blocks before it, and Python cannot run that file: it declares the coding latin-1, where the build writes UTF-8 at README.org:%d (# coding: latin-1)"
                             (refusal-tests--block-line text "declares")
                             (1+ (refusal-tests--block-line text "declares")))
                     (format "README.org:%d: block `shadows': :tangle numpy.py would be imported in place of the module numpy"
                             (refusal-tests--block-line text "shadows"))
                     (format "README.org:%d: block `local': :tangle conftest.py would be imported in place of the module conftest (a name Python or pytest reads on its own) by the blocks' script and by `make test', which run from the notes' folder; name it otherwise"
                             (refusal-tests--block-line text "local"))))))))

;; Found by probing: a header argument given no value made Org fail as it
;; read the blocks, saying only "Wrong type argument", with no line.
(ert-deftest refusal-tests-a-header-argument-given-no-value-is-named-by-its-line ()
  (refusal-tests--in-project
    (pcase-dolist (`(,property ,header ,names ,failing)
                   '((nil ":tangle" ":tangle has")
                     (nil ":results" ":results has")
                     (nil ":var" ":var has")
                     (nil ":tangle :noweb" ":tangle, :noweb have" ":tangle")
                     (":tangle" "" ":tangle has")))
      (let* ((text (concat refusal-tests--header
                           (when property
                             (format "#+PROPERTY: header-args:jupyter-python+ %s\n" property))
                           (refusal-tests--block "x = 1" "first")
                           (refusal-tests--block "y = 2" "bare" header)))
             (where (if property
                        (format "README.org:%d:" (refusal-tests--line
                                                  text (format "#+PROPERTY: header-args:jupyter-python+ %s"
                                                               property)))
                      (format "README.org:%d: block `bare':" (refusal-tests--block-line text "bare")))))
        (should (equal (refusal-tests--refused text)
                       (list (format "%s %s no value, and Org would fail on %s saying only \"Wrong type argument\"; give %s one, or remove %s"
                                     where names
                                     (or failing (if (string-match-p "have" names) "them" "it"))
                                     (if (string-match-p "have" names) "each" "it")
                                     (if (string-match-p "have" names) "them" "it")))))))
    ;; Found by probing: one in a setup file was Org's raw error again.
    (with-temp-file (expand-file-name "setup.org" refusal-tests--project)
      (insert "# settings\n#+PROPERTY: header-args:jupyter-python+ :var\n"))
    (should (equal (refusal-tests--refused
                    (concat "#+SETUPFILE: setup.org\n" refusal-tests--header
                            (refusal-tests--block "x = 1" "first")))
                   (list "setup.org:2: :var has no value, and Org would fail on it saying only \"Wrong type argument\"; give it one, or remove it")))
    ;; Found by probing: Org fails on three alone, and takes the others as
    ;; given nothing (:file-desc, which describes a link by itself, is
    ;; Org's own).
    (let* ((text (concat refusal-tests--header
                         (refusal-tests--block refusal-tests--draw "bare-ones"
                                               ":exports :cache :file images/b.svg")
                         (refusal-tests--block refusal-tests--draw "described"
                                               ":file images/d.svg :file-desc"))))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: block `bare-ones': :exports, :cache have no value, and Org would take them as given nothing; give each one, or remove them"
                                   (refusal-tests--block-line text "bare-ones"))))))))

;; Found by probing: a noweb reference that calls a block, <<name()>>,
;; ran it at each reading of the notes, on a kernel of its own, and
;; tangled its value; so did one to a block of another language, or of
;; another file, and one read only as the block is tangled.
(ert-deftest refusal-tests-a-block-run-for-its-value-is-refused-before-it-runs ()
  (refusal-tests--in-project
    (with-temp-file (expand-file-name "side.org" refusal-tests--project)
      (insert "\n#+name: far\n#+begin_src emacs-lisp\n(with-temp-file \"ran-far\" (insert \"x\")) 5\n#+end_src\n"))
    (let* ((text (concat refusal-tests--header
                         (refusal-tests--block "open('ran', 'w').close()\n7" "value" ":tangle no")
                         "\n#+name: lisp-value\n#+begin_src emacs-lisp\n(with-temp-file \"ran-lisp\" (insert \"x\")) 7\n#+end_src\n"
                         (refusal-tests--block "print(<<value()>>)" "calls-value" ":noweb yes")
                         (refusal-tests--block "print(<<lisp-value()>>)" "calls-lisp" ":noweb yes")
                         (refusal-tests--block "print(<<side.org:far()>>)" "calls-far" ":noweb yes")
                         (refusal-tests--block "z = 1  # <<value()>>" "when-tangled" ":noweb tangle")
                         (refusal-tests--block "print(z)" "var-far" ":var z=side.org:far")
                         ;; Not run: a reference to the block's text.
                         (refusal-tests--block "<<value>>" "includes" ":noweb yes :tangle no")))
           (message "README.org:%d: block `%s': it has Org run block `%s' at %s:%d for its value (a noweb <<name()>>, a :var or org-sbe) whenever Org reads this block, out of the notes' order, and put the value in its code as a constant; compute it in this block's code instead")
           (said (refusal-tests--refused text)))
      (should (equal said
                     (list (format message (refusal-tests--block-line text "calls-value") "calls-value"
                                   "value" "README.org" (refusal-tests--block-line text "value"))
                           (format message (refusal-tests--block-line text "calls-lisp") "calls-lisp"
                                   "lisp-value" "README.org"
                                   (1+ (refusal-tests--line text "#+name: lisp-value")))
                           (format message (refusal-tests--block-line text "calls-far") "calls-far"
                                   "far" "side.org" 3)
                           (format message (refusal-tests--block-line text "when-tangled")
                                   "when-tangled" "value" "README.org"
                                   (refusal-tests--block-line text "value"))
                           (format message (refusal-tests--block-line text "var-far") "var-far"
                                   "far" "side.org" 3))))
      (dolist (ran '("ran" "ran-lisp" "ran-far"))
        (should-not (file-exists-p (expand-file-name ran refusal-tests--project)))))))

;; Found by probing: under :noweb eval, the kernel ran the expanded
;; code and gradients.py got the reference as written, which the build
;; named as "a value Org does not know" (org-lint's table lacks it).
(ert-deftest refusal-tests-a-block-org-would-tangle-otherwise-than-it-runs-is-refused ()
  (refusal-tests--in-project
    ;; Org 9.6 and after: 9.5 knows no strip-tangle.
    (require 'ob-core)
    (let* ((strip (memq 'strip-tangle (car (alist-get 'noweb org-babel-common-header-args-w-values))))
           (text (concat refusal-tests--header
                         (refusal-tests--block "y = 2" "setup" ":tangle no")
                         (refusal-tests--block "<<setup>>\nprint(y)" "on-eval" ":noweb eval")
                         (refusal-tests--block "print(1)\n<<setup>>" "on-tangle" ":noweb tangle")
                         (if strip (refusal-tests--block "<<setup>>" "stripped" ":noweb strip-tangle") "")
                         (refusal-tests--block "x = 1 #(ref:one)" "kept-refs" "-l \"#(ref:%s)\"")
                         (refusal-tests--block "print(z)" "unexpanded" ":var z=5 :no-expand")
                         ;; The same code both ways.
                         (refusal-tests--block "<<setup>>\nprint(y)" "both" ":noweb yes")
                         (refusal-tests--block "x = 1 #(ref:two)" "refs-out" "-r -l \"#(ref:%s)\"")
                         (refusal-tests--block "print(w)" "assigned" ":var w=5")))
           (message "README.org:%d: block `%s': Org would tangle other code than it runs (%s): its line %d runs as `%s', and gradients.py gets `%s'; make the two the same")
           (said (refusal-tests--refused text)))
      (should (equal said
                     (append
                      (list (format message (refusal-tests--block-line text "on-eval") "on-eval"
                                    "under :noweb eval it expands the noweb references as it runs the block, not as it tangles it"
                                    1 "y = 2" "<<setup>>")
                            (format message (refusal-tests--block-line text "on-tangle") "on-tangle"
                                    "under :noweb tangle it expands the noweb references as it tangles the block, not as it runs it"
                                    2 "<<setup>>" "y = 2"))
                      (and strip
                           (list (format message (refusal-tests--block-line text "stripped") "stripped"
                                         "under :noweb strip-tangle it expands the noweb references as it runs the block and takes them out as it tangles it"
                                         1 "y = 2" "")))
                      (list (format message (refusal-tests--block-line text "kept-refs") "kept-refs"
                                    "it takes the code references out as it runs the block, and keeps them as it tangles it without -r"
                                    1 "x = 1" "x = 1 #(ref:one)")
                            (format message (refusal-tests--block-line text "unexpanded") "unexpanded"
                                    "under :no-expand it tangles the block without the assignments of its :var"
                                    1 "z=5" "print(z)"))))))))

;; Notes that tangle nothing would leave the gradients.py of an earlier
;; build in place, which `make test' would then check against nothing.
(ert-deftest refusal-tests-notes-that-tangle-nothing-are-refused ()
  (refusal-tests--in-project
    (dolist (text (list (concat refusal-tests--header
                                (refusal-tests--block "x = 1" "kept" ":tangle no"))
                        (concat (replace-regexp-in-string ":tangle gradients.py" ":tangle no"
                                                          refusal-tests--header)
                                (refusal-tests--block "x = 1" "kept"))
                        ;; The one tangled block is left out, as Org leaves it.
                        (concat refusal-tests--header
                                (refusal-tests--block "y = 1" "kept" ":tangle no")
                                "\n* COMMENT Draft\n" (refusal-tests--block "x = 1" "draft"))
                        ;; What is tangled is no block the build runs.
                        (concat refusal-tests--header
                                (refusal-tests--block "y = 1" "kept" ":tangle no")
                                "\n#+name: script\n#+begin_src sh :tangle run.sh\necho\n#+end_src\n")))
      (should (equal (refusal-tests--refused text)
                     (list "README.org tangles no file, though the build runs its blocks: none of them has a :tangle (the notes' #+PROPERTY gives :tangle gradients.py), so the files tangled before would be left as they are"))))))

;;;; Where a header argument the block does not show comes from

(defconst refusal-tests--bad-timeout "is not a number of seconds, such as :timeout 60"
  "What the build says of a :timeout that is no number.")

(ert-deftest refusal-tests-a-value-from-a-property-line-names-that-line ()
  (refusal-tests--in-project
    (let* ((setting "#+PROPERTY: header-args:jupyter-python+ :timeout soon")
           (text (concat refusal-tests--header setting "\n"
                         (refusal-tests--block "x = 1" "one")
                         (refusal-tests--block "x = 2" "two" ":timeout never")))
           (said (refusal-tests--refused text)))
      (should (equal said
                     (list (format "README.org:%d: block `one': :timeout soon %s (because of the #+PROPERTY at README.org:%d)"
                                   (refusal-tests--block-line text "one") refusal-tests--bad-timeout
                                   (refusal-tests--line text setting))
                           ;; Its own, shown on its line: nothing to add.
                           (format "README.org:%d: block `two': :timeout never %s"
                                   (refusal-tests--block-line text "two")
                                   refusal-tests--bad-timeout)))))))

(ert-deftest refusal-tests-the-origin-among-more-lines-than-are-read-one-by-one ()
  "Past `gradients-build--origin-limit' lines that could be the origin,
the search gave up and named none; it halves them instead, wherever
the line is among them."
  (dolist (place '(0 7 24))
    (refusal-tests--in-project
      (let* ((drawer ":header-args:jupyter-python+: :timeout soon")
             (text (apply #'concat refusal-tests--header
                          (cl-loop for n below 25
                                   collect (if (= n place)
                                               (concat "** Here\n:PROPERTIES:\n" drawer "\n:END:\n"
                                                       (refusal-tests--block "x = 1" "one"))
                                             (format "** Part %d\n:PROPERTIES:\n:header-args:jupyter-python+: :timeout %d\n:END:\n"
                                                     n (+ 60 n)))))))
        (should (> 25 gradients-build--origin-limit))
        (should (equal (refusal-tests--refused text)
                       (list (format "README.org:%d: block `one': :timeout soon %s (because of the header-args property at README.org:%d)"
                                     (refusal-tests--block-line text "one") refusal-tests--bad-timeout
                                     (refusal-tests--line text drawer)))))))))

(ert-deftest refusal-tests-a-value-from-a-setup-file-names-its-line-there ()
  "In UTF-8 or in latin-1: Org reads a setup file in the coding Emacs
finds for it, and read as UTF-8, a latin-1 file's bytes stayed raw, and
Org 9.6 asked which coding to save them in, a question the build could
not answer."
  (dolist (coding '(utf-8-unix latin-1-unix))
    (refusal-tests--in-project
      (let ((coding-system-for-write coding))
        (write-region "#+TITLE: Caf\u00e9\n#+PROPERTY: header-args:jupyter-python+ :timeout soon\n"
                      nil (expand-file-name "setup.org" refusal-tests--project) nil 'silent))
      ;; After the notes' own #+PROPERTY without `+', which would replace it.
      (let* ((text (concat refusal-tests--header "#+SETUPFILE: setup.org\n"
                           (refusal-tests--block "x = 1" "one"))))
        (should (equal (cons coding (refusal-tests--refused text))
                       (list coding
                             (format "README.org:%d: block `one': :timeout soon %s (because of the #+PROPERTY at setup.org:2)"
                                     (refusal-tests--block-line text "one")
                                     refusal-tests--bad-timeout))))))))

(ert-deftest refusal-tests-a-value-from-a-heading-names-that-headings-drawer ()
  "Only the drawer of a heading that holds the block counts, and the
nearest wins over a #+PROPERTY line."
  (refusal-tests--in-project
    (let* ((drawer ":header-args:jupyter-python+: :timeout soon :results table")
           (text (concat refusal-tests--header
                         "#+PROPERTY: header-args:jupyter-python+ :timeout later\n"
                         "** Elsewhere\n:PROPERTIES:\n:header-args:jupyter-python+: :timeout never\n:END:\n"
                         (refusal-tests--block "x = 0" "zero" ":timeout 5")
                         "** Here\n:PROPERTIES:\n" drawer "\n:END:\n"
                         (refusal-tests--block "x = 1" "one")))
           (said (refusal-tests--refused text))
           (origin (format "(because of the header-args property at README.org:%d)"
                           (refusal-tests--line text drawer))))
      (should (= (length said) 2))
      (should (equal (car said)
                     (format "README.org:%d: block `one': :timeout soon %s %s"
                             (refusal-tests--block-line text "one") refusal-tests--bad-timeout
                             origin)))
      (should (string-match-p (concat "\\`README.org:[0-9]+: block `one': :results table .* "
                                      (regexp-quote origin) "\\'")
                              (cadr said))))))

(ert-deftest refusal-tests-a-propertys-language-is-read-in-any-case ()
  "Org reads header-args:JUPYTER-PYTHON as header-args:jupyter-python: its
:timeout is known, and refused for its value, naming the line."
  (refusal-tests--in-project
    (let* ((setting "#+PROPERTY: header-args:JUPYTER-PYTHON+ :timeout soon")
           (text (concat refusal-tests--header setting "\n"
                         (refusal-tests--block "x = 1" "one"))))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: block `one': :timeout soon %s (because of the #+PROPERTY at README.org:%d)"
                                   (refusal-tests--block-line text "one") refusal-tests--bad-timeout
                                   (refusal-tests--line text setting))))))))

(ert-deftest refusal-tests-the-origin-is-what-org-reads ()
  "Members of the family Org's reading decides: a #+PROPERTY in an
example block is no setting; a #+header: line is the block's own; words
of :results come from the setting that adds the refused one; a drawer
before the first heading counts; a #+SETUPFILE naming a folder is
refused on its own line and skipped in the search, and one named in a setup file is read; a Lisp value in a header
is not evaluated to find any of this."
  (refusal-tests--in-project
    (make-directory (expand-file-name "sub" refusal-tests--project))
    (write-region "#+SETUPFILE: inner.org\n" nil
                  (expand-file-name "sub/setup.org" refusal-tests--project) nil 'silent)
    (write-region "#+TITLE: Inner\n#+PROPERTY: header-args:jupyter-python+ :timeout inner\n" nil
                  (expand-file-name "sub/inner.org" refusal-tests--project) nil 'silent)
    (let* ((top ":header-args:jupyter-python+: :timeout top")
           (table "#+PROPERTY: header-args:jupyter-python+ :results table")
           (text (concat ":PROPERTIES:\n" top "\n:END:\n"
                         refusal-tests--header
                         table "\n"
                         "#+SETUPFILE: sub\n"
                         "#+begin_example\n#+PROPERTY: header-args:jupyter-python+ :timeout example\n#+end_example\n"
                         "\n#+header: :timeout own\n#+name: own\n"
                         "#+begin_src jupyter-python :cache (progn (make-directory \"made\" t) \"no\")\n"
                         "x = 1\n#+end_src\n"
                         "** Drawer\n:PROPERTIES:\n:header-args:jupyter-python+: :results drawer\n:END:\n"
                         (refusal-tests--block "x = 2" "merged")))
           (said (refusal-tests--refused text)))
      (should (equal said
                     (cons
                      (format "README.org:%d: #+SETUPFILE sub is a folder, which Org cannot read settings from; name a file"
                              (refusal-tests--line text "#+SETUPFILE: sub"))
                      (cl-loop for (name . timeout) in '(("own" . "own") ("merged" . "top"))
                              for line = (if (equal name "own")
                                             (1+ (refusal-tests--line text "#+name: own"))
                                           (refusal-tests--block-line text name))
                              collect (format "README.org:%d: block `%s': :timeout %s %s%s"
                                              line name timeout refusal-tests--bad-timeout
                                              (if (equal name "own") ""
                                                " (because of the header-args property at README.org:2)"))
                              collect (format "README.org:%d: block `%s': :results table would make Org record the result reshaped, not as the text the block produced, which `make test' compares it with; use :results drawer (because of the #+PROPERTY at README.org:%d)"
                                              line name (refusal-tests--line text table))))))
      ;; A setup file that names another: the line is in that one.
      (let ((text (concat refusal-tests--header "#+SETUPFILE: sub/setup.org\n"
                          (refusal-tests--block "x = 1" "one"))))
        (should (equal (refusal-tests--refused text)
                       (list (format "README.org:%d: block `one': :timeout inner %s (because of the #+PROPERTY at sub/inner.org:2)"
                                     (refusal-tests--block-line text "one")
                                     refusal-tests--bad-timeout))))))))

(ert-deftest refusal-tests-a-setup-file-the-build-cannot-follow-is-named ()
  "One that is not there (Org said it could not read it, and built without
its settings), or a folder (the build failed as its first block ran);
one outside the notes' folder, or at an address, which
the kept run could not be keyed on: it changed, and make had nothing to
do."
  (refusal-tests--in-project
    (let ((outside (make-temp-file "refusal-tests-setup-" nil ".org")))
      (unwind-protect
          (dolist (case `(("missing.org" "#+SETUPFILE names missing.org, which is not there; Org would build without its settings")
                          (,outside ,(format "#+SETUPFILE %s is outside the notes' folder, where the build would not see it change; keep it in the checkout" outside))
                          ("images" "#+SETUPFILE images is a folder, which Org cannot read settings from; name a file")
                          ("../elsewhere.org" "#+SETUPFILE ../elsewhere.org is outside the notes' folder, where the build would not see it change; keep it in the checkout")
                          ("https://example.org/setup.org" "#+SETUPFILE https://example.org/setup.org is outside the notes' folder, where the build would not see it change; keep it in the checkout")))
            (let ((text (concat refusal-tests--header "#+SETUPFILE: " (car case) "
"
                                (refusal-tests--block "x = 1" "one"))))
              (should (member (format "README.org:%d: %s"
                                      (refusal-tests--line text (concat "#+SETUPFILE: " (car case)))
                                      (cadr case))
                              (refusal-tests--refused text)))))
        (delete-file outside)))))

(ert-deftest refusal-tests-the-origin-in-a-drawer-of-several-lines ()
  "A line taken out of a property drawer left a blank line, which ends
the drawer: the drawer's last line was named."
  (refusal-tests--in-project
    (let* ((setting ":header-args:jupyter-python+: :timeout soon")
           (text (concat refusal-tests--header
                         "** Here\n:PROPERTIES:\n" setting
                         "\n:header-args:jupyter-python+: :exports both\n:END:\n"
                         (refusal-tests--block "x = 1" "one"))))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: block `one': :timeout soon %s (because of the header-args property at README.org:%d)"
                                   (refusal-tests--block-line text "one") refusal-tests--bad-timeout
                                   (refusal-tests--line text setting))))))))

(ert-deftest refusal-tests-every-check-of-a-header-names-where-its-value-comes-from ()
  "Each check of a block's header, not :timeout and :results alone: a
value the block does not show is said with the line that set it."
  (refusal-tests--in-project
    (dolist (setting '(":wrap example" ":post up(x=*this*)" ":file images/x.txt"
                       ":tangle /tmp/elsewhere.py" ":dir /tmp" ":cache yes" ":eval query"
                       ":eval no" ":session other"))
      (let* ((line (concat "#+PROPERTY: header-args:jupyter-python+ " setting))
             ;; The first block tangled shows the notes' session as its own.
             (text (concat refusal-tests--header line "\n"
                           (refusal-tests--block "x = 0" "zero" ":session gradients :eval yes")
                           (refusal-tests--block "x = 1" "one")))
             (said (cl-remove-if-not
                    (lambda (refusal) (string-prefix-p
                                       (format "README.org:%d: block `one': "
                                               (refusal-tests--block-line text "one"))
                                       refusal))
                    (refusal-tests--refused text))))
        (should (equal (list setting (length said)) (list setting 1)))
        (should (string-suffix-p (format " (because of the #+PROPERTY at README.org:%d)"
                                         (refusal-tests--line text line))
                                 (car said)))
        (should (string-match-p (regexp-quote (car (split-string setting))) (car said)))))))

(ert-deftest refusal-tests-a-file-every-block-gets-from-a-property-names-it ()
  "The first block draws it; each after it is refused with the line."
  (refusal-tests--in-project
    (let* ((setting "#+PROPERTY: header-args:jupyter-python+ :file images/x.png")
           (text (concat refusal-tests--header setting "\n"
                         (refusal-tests--block refusal-tests--draw "zero")
                         (refusal-tests--block refusal-tests--draw "one"))))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: block `one': :file images/x.png is drawn already by README.org:%d: block `zero'; give each output its own file (because of the #+PROPERTY at README.org:%d)"
                                   (refusal-tests--block-line text "one")
                                   (refusal-tests--block-line text "zero")
                                   (refusal-tests--line text setting))))))))

(ert-deftest refusal-tests-a-session-apart-names-the-line-that-set-it-apart ()
  "The block refused has the notes' session; the first block of its file
has another from its heading's drawer, which is the line to change."
  (refusal-tests--in-project
    (let* ((drawer ":header-args:jupyter-python+: :session other")
           (text (concat refusal-tests--header
                         "** First\n:PROPERTIES:\n" drawer "\n:END:\n"
                         (refusal-tests--block "x = 0" "zero")
                         "** Second\n"
                         (refusal-tests--block "x = 1" "one"))))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: block `one': :session gradients is not the session of the blocks tangled with it (other, from block `zero' at line %d), and their file runs in one module what two kernels ran apart: drop the :session, or add :tangle no (because of the header-args property at README.org:%d)"
                                   (refusal-tests--block-line text "one")
                                   (refusal-tests--block-line text "zero")
                                   (refusal-tests--line text drawer))))))))

(ert-deftest refusal-tests-a-session-compared-is-traced-on-the-side-that-differs ()
  "A refusal comparing two blocks names a line only where it sets one of
them apart: the first block's drawer, though the block refused shows its
session as its own; not the notes' session line, though without it the
block refused would have none, when the first block's own header set it
apart; nor that line when the block refused sets itself apart."
  (refusal-tests--in-project
    (pcase-dolist (`(,first-heading ,first-args ,second-args ,second-session ,first-session ,origin)
                   '((":PROPERTIES:\n:header-args:jupyter-python+: :session other\n:END:\n"
                      "" ":session gradients" "gradients" "other"
                      ":header-args:jupyter-python+: :session other")
                     ("" ":session other" "" "gradients" "other" nil)
                     ("" "" ":session elsewhere" "elsewhere" "gradients" nil)))
      (let* ((text (concat refusal-tests--header
                           "** First\n" first-heading
                           (refusal-tests--block "x = 0" "zero" first-args)
                           "** Second\n"
                           (refusal-tests--block "x = 1" "one" second-args))))
        (should (equal (refusal-tests--refused text)
                       (list (format "README.org:%d: block `one': :session %s is not the session of the blocks tangled with it (%s, from block `zero' at line %d), and their file runs in one module what two kernels ran apart: drop the :session, or add :tangle no%s"
                                     (refusal-tests--block-line text "one") second-session
                                     first-session (refusal-tests--block-line text "zero")
                                     (if origin
                                         (format " (because of the header-args property at README.org:%d)"
                                                 (refusal-tests--line text origin))
                                       "")))))))))

(ert-deftest refusal-tests-each-argument-a-refusal-is-about-is-traced ()
  "A refusal about two arguments, one the block's own, names the line
that gives the other; one its advice names is not traced."
  (refusal-tests--in-project
    (pcase-dolist (`(,setting ,args)
                   '(("#+PROPERTY: header-args:jupyter-python+ :mkdirp no" ":tangle missing/x.py")
                     ("#+PROPERTY: header-args:jupyter-python+ :tangle missing/x.py" ":mkdirp no")))
      (let* ((text (concat refusal-tests--header setting "\n"
                           (refusal-tests--block "x = 1" "one" args))))
        (should (equal (list setting (refusal-tests--refused text))
                       (list setting
                             (list (format "README.org:%d: block `one': :tangle missing/x.py goes in a folder that does not exist, and :mkdirp no forbids making it (because of the #+PROPERTY at README.org:%d)"
                                           (refusal-tests--block-line text "one")
                                           (refusal-tests--line text setting))))))))))

(ert-deftest refusal-tests-a-value-set-twice-names-both-lines ()
  "Taking out either line alone leaves the other's value: both are said."
  (refusal-tests--in-project
    (let* ((setting "#+PROPERTY: header-args:jupyter-python+ :timeout soon")
           (drawer ":header-args:jupyter-python+: :post up(x=*this*)")
           (text (concat refusal-tests--header setting "\n" setting "\n"
                         "** Outer\n:PROPERTIES:\n" drawer "\n:END:\n"
                         "*** Here\n:PROPERTIES:\n" drawer "\n:END:\n"
                         (refusal-tests--block "x = 1" "one")))
           (lines (split-string text "\n"))
           (at (lambda (wanted) (cl-loop for line in lines for n from 1
                                         when (equal line wanted) collect n))))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: block `one': :timeout soon %s (because of the #+PROPERTY lines at README.org:%d and %d)"
                                   (refusal-tests--block-line text "one") refusal-tests--bad-timeout
                                   (car (funcall at setting)) (cadr (funcall at setting)))
                           (format "README.org:%d: block `one': :post up(x=*this*) would record what another block makes of the result, which `make tangle' and `make test' never run; drop the :post, and do it in this block's code (because of the header-args property lines at README.org:%d and %d)"
                                   (refusal-tests--block-line text "one")
                                   (car (funcall at drawer)) (cadr (funcall at drawer)))))))))

(ert-deftest refusal-tests-only-the-lines-that-give-the-value-are-named ()
  "Of several lines that mention an argument, those without which the
block's value would be another: not one that sets another value, one in
another heading's drawer, one in an example block; a setup file read
twice is named once; a value merged into the block's own is traced."
  (refusal-tests--in-project
    (write-region "#+PROPERTY: header-args:jupyter-python+ :cache yes\n" nil
                  (expand-file-name "setup.org" refusal-tests--project) nil 'silent)
    (let ((yes "#+PROPERTY: header-args:jupyter-python+ :cache yes")
          (cache "would make Org skip the block when its code is unchanged"))
      (pcase-dolist (`(,middle ,after ,block-args ,said ,origin . ,offsets)
                     `((,(concat "#+PROPERTY: header-args:jupyter-python+ :cache no\n" yes "\n" yes "\n")
                        "" "" ,cache "the #+PROPERTY lines at README.org:%d and %d" 1 2)
                       (,(concat yes "\n" yes "\n")
                        "\n* Elsewhere\n:PROPERTIES:\n:header-args:jupyter-python+: :cache yes\n:END:\n"
                        "" ,cache "the #+PROPERTY lines at README.org:%d and %d" 0 1)
                       (,(concat yes "\n" yes "\n#+begin_example\n" yes "\n#+end_example\n")
                        "" "" ,cache "the #+PROPERTY lines at README.org:%d and %d" 0 1)
                       (,(concat ":PROPERTIES:\n:header-args:jupyter-python+: :cache yes\n:END:\n"
                                 yes "\n" yes "\n")
                        "" "" ,cache
                        "the header-args property at README.org:%d, and the #+PROPERTY lines at README.org:%d and %d"
                        1 3 4)
                       ("#+SETUPFILE: setup.org\n#+SETUPFILE: setup.org\n"
                        "" "" ,cache "the #+PROPERTY at setup.org:1")
                       ("#+PROPERTY: header-args:jupyter-python+ :results table\n"
                        "" ":results drawer" "reshaped" "the #+PROPERTY at README.org:%d" 0)
                       ("#+PROPERTY: header-args:jupyter-python+ :var y=zero\n"
                        "" ":var z=2" "names block `zero'" "the #+PROPERTY at README.org:%d" 0)))
        (let* ((text (concat refusal-tests--header middle
                             (refusal-tests--block "x = 0" "zero")
                             (refusal-tests--block "x = 1" "one" block-args)
                             after))
               (refused (cl-find-if (lambda (line) (string-match-p "block `one'" line))
                                    (refusal-tests--refused text))))
          (should (string-match-p (regexp-quote said) (or refused "")))
          (should (equal (list middle (and refused (string-match " (because of \\(.*\\))\\'"
                                                                  refused)
                                          (match-string 1 refused)))
                         (list middle (apply #'format origin
                                             (mapcar (lambda (offset)
                                                       (+ offset 1 (refusal-tests--line text "* Notes")))
                                                     offsets))))))))))

;;;; After all the work

(ert-deftest refusal-tests-a-failure-cleaning-up-after-the-work-says-the-work-is-done ()
  "Once every output is installed, a failure removing the scratch folder
\(a file a network disk still holds) was said as a refusal, with \"Only
some outputs were changed\", and then as a Ctrl-C no one pressed."
  (refusal-tests--in-project
    (let ((file (expand-file-name "README.org" refusal-tests--project)))
      (write-region (concat refusal-tests--header
                            (replace-regexp-in-string
                             "jupyter-python" "python"
                             (refusal-tests--block "x = 1" "one" ":tangle gradients.py")))
                    nil file nil 'silent)
      (cl-letf* ((cleanup (symbol-function 'gradients-build--cleanup))
                 ((symbol-function 'gradients-build--cleanup)
                  (lambda (&optional wait)
                    (funcall cleanup wait)
                    (when wait
                      (signal 'file-error (list "Removing directory" "Device or resource busy"
                                                "/somewhere/.build/run-1"))))))
        (let ((said (let ((inhibit-message t))
                      (gradients-build-in-process #'gradients-build-tangle file))))
          (should (equal said "README.org: cleaning up after the build failed, after all its work (every output is in place): Removing directory: Device or resource busy, /somewhere/.build/run-1"))
          (should-not gradients-build--kernel-stopping)
          (should (file-exists-p (expand-file-name "gradients.py" refusal-tests--project))))))))

;;;; Names

(ert-deftest refusal-tests-two-blocks-of-one-name-are-refused-on-both-lines ()
  (refusal-tests--in-project
    (let* ((text (concat refusal-tests--header (refusal-tests--block "1" "dupe")
                         (string-replace "#+name: dupe" "#+NAME: dupe"
                                         (refusal-tests--block "2" "dupe"))))
           (lines (split-string text "\n"))
           (said (refusal-tests--refused text)))
      (should (equal said
                     (mapcar (lambda (line)
                               (format "README.org:%d: the name `dupe' is given to more than one block; Org would give its result, and a :var naming it, to the first only: give each its own"
                                       (1+ (cl-position line lines :test #'string=))))
                             '("#+name: dupe" "#+NAME: dupe")))))))

;;;; Output paths (`gradients-build-output-path' and the claims on them)

(ert-deftest refusal-tests-one-picture-under-several-spellings-is-refused ()
  (refusal-tests--in-project
    (let* ((spellings '("images/x.svg" "./images/x.svg" "images//x.svg"
                        "images/../images/x.svg" "images/./x.svg"))
           (text (refusal-tests--drawing-notes
                  "draws" (mapcar (lambda (name) (concat ":file " name)) spellings))))
      ;; The drawer links a picture by its :file as written.
      (should (equal
               (refusal-tests--refused text)
               (cl-loop for name in (cdr spellings) for n from 1
                        collect (format "README.org:%d: block `draws-%d': :file %s is images/x.svg written another way; write :file images/x.svg, the link the drawer gets"
                                        (refusal-tests--block-line text (format "draws-%d" n))
                                        n name)))))))

;; A value shown as Org may link any file: make run recorded such links,
;; and `make test' refused them, or GitHub showed them broken.
(ert-deftest refusal-tests-a-result-linking-a-file-its-block-does-not-draw-is-refused ()
  (refusal-tests--in-project
    ;; In images/, a result recorded before its :file changed: the
    ;; comparison with what the block makes says so (make run mends it),
    ;; and make run refuses such a link as it produced it
    ;; (test_drawer_text.py).
    (let* ((cases '(("drawn" ":file images/x.svg" "[[file:images/x.svg]]\n[[file:images/old.svg]]"
                     nil)
                    ("away" ":file images/y.svg" "[[file:pictures/y.svg]]"
                     "pictures/y.svg, which is not the picture its :file draws (images/y.svg)")
                    ("outside" "" "See [[file:../outside.png]]"
                     "../outside.png, which no :file of the block draws")
                    ("bare" "" "| [[/etc/hostname]] |"
                     "/etc/hostname, which no :file of the block draws")
                    ("text" "" ": printed [[file:images/nope.png]]" nil)
                    ;; Found by probing: links a regular expression of
                    ;; file: and path links let through.
                    ("typeless" "" "A picture: [[pictures/t.png]]"
                     "pictures/t.png, which no :file of the block draws")
                    ("angled" "" "Another: <file:pictures/a.png>"
                     "pictures/a.png, which no :file of the block draws")
                    ("remote" "" "Remote: [[https://example.com/r.png]]"
                     "https://example.com/r.png, which no :file of the block draws")
                    ("page" "" "A page: [[https://example.com][the site]]" nil)
                    ("described" "" "A page: [[https://example.com][file:pictures/d.png]]"
                     "pictures/d.png, which no :file of the block draws")
                    ("attached" "" "See [[attachment:a.png]]"
                     "attachment:a.png, which no :file of the block draws")
                    ("queried" "" "See [[https://example.com/q.svg?size=2]]"
                     "https://example.com/q.svg?size=2, which no :file of the block draws")
                    ;; Its own picture, spelled another way GitHub shows too.
                    ("own" ":file images/own.svg" "[[file:images/own.svg]]\nSee [[./images/own.svg]]" nil)))
           (text (apply #'concat refusal-tests--header
                        (mapcar (lambda (case)
                                  (concat (refusal-tests--block "1" (nth 0 case) (nth 1 case))
                                          (format "\n#+RESULTS: %s\n:results:\n%s\n:end:\n"
                                                  (nth 0 case) (nth 2 case))))
                                cases))))
      (should (equal (refusal-tests--refused text)
                     (cl-loop for (name _ _ what) in cases when what
                              collect (format "README.org:%d: block `%s': its result links %s; a picture goes into the notes through its block's :file, under images/"
                                              (refusal-tests--block-line text name) name what)))))))

;; Where a drawer's link would lead GitHub and `make test' elsewhere.
(ert-deftest refusal-tests-a-picture-not-directly-in-images-is-refused ()
  (refusal-tests--in-project
    (make-directory (expand-file-name "images/sub" refusal-tests--project))
    (let* ((names (list "images/sub/x.svg" "x.svg" "pictures/x.svg"
                        (expand-file-name "images/y.svg" refusal-tests--project)))
           (text (refusal-tests--drawing-notes
                  "away" (mapcar (lambda (name) (concat ":file " name)) names))))
      (should (equal
               (refusal-tests--refused text)
               (cl-loop for name in names for n from 0
                        collect (format "README.org:%d: block `away-%d': :file %s %s"
                                        (refusal-tests--block-line text (format "away-%d" n))
                                        n name
                                        (if (= n 3)
                                            "is images/y.svg written another way; write :file images/y.svg, the link the drawer gets"
                                          (format "is not in images/, where the notes keep their pictures; write :file images/%s"
                                                  (file-name-nondirectory name))))))))))

;; A symbolic link in images/ to another picture's file, either way round.
(ert-deftest refusal-tests-one-picture-through-a-link-is-named-with-the-link ()
  (refusal-tests--in-project
    (write-region "<svg/>" nil (expand-file-name "images/x.svg" refusal-tests--project) nil 'silent)
    (make-symbolic-link "x.svg" (expand-file-name "images/linked.svg" refusal-tests--project))
    ;; The folder images/ itself a link too, to another of the project.
    (make-symbolic-link "images" (expand-file-name "imgs" refusal-tests--project))
    (pcase-dolist (`(,first ,second ,linked ,target)
                   '(("images/linked.svg" "images/x.svg" 0 "images/x.svg")
                     ("images/x.svg" "images/linked.svg" 1 "images/x.svg")
                     ("images/x.svg" "imgs/y.svg" 1 "images/y.svg")))
      (let* ((text (refusal-tests--drawing-notes "draws" (list (concat ":file " first)
                                                                (concat ":file " second))))
             (name (format "draws-%d" linked)))
        (should (equal (refusal-tests--refused text)
                       (list (format "README.org:%d: block `%s': :file %s leads to %s through a symbolic link, and the drawer would link the link; remove it, or name %s"
                                     (refusal-tests--block-line text name) name
                                     (if (= linked 0) first second) target target))))))))

;; Each would replace a source of the project, or write where no output goes.
(ert-deftest refusal-tests-no-output-replaces-a-source-of-the-project ()
  (refusal-tests--in-project
    (let* ((headers '(":tangle Makefile" ":tangle README.org" ":tangle .git/hooks/post-checkout"
                      ":tangle tools/build.el" ":tangle tests/conftest.py" ":tangle pyproject.toml"
                      ":tangle requirements.lock" ":tangle .gitignore" ":tangle .build/outputs"
                      ":file .ci/x.svg" ":file tools/x.svg"
                      ;; Read in a source's place, by make and by GitHub.
                      ":tangle GNUmakefile" ":tangle makefile" ":tangle README.md"
                      ":tangle README" ":tangle readme.md" ":tangle Readme.txt"))
           (text (refusal-tests--drawing-notes "bad" headers))
           (said (refusal-tests--refused text)))
      (should (refusal-tests--said-in-order
               said
               (cl-loop for header in headers for n from 0
                        collect (format "README.org:%d: block `bad-%d': %s would replace a source of the project"
                                        (refusal-tests--block-line text (format "bad-%d" n))
                                        n header))))
      ;; Found by probing: the file refused was the one suggested.
      (should-not (cl-find-if (lambda (line)
                                (string-match-p "such as \\(pyproject.toml\\|Makefile\\|requirements.lock\\|GNUmakefile\\|makefile\\|README.*\\)\\'" line))
                              said)))))

;; Make reads the list of outputs; recipes hand them to the shell.
(ert-deftest refusal-tests-a-name-make-cannot-hold-is-refused ()
  (refusal-tests--in-project
    (let* ((names '("images/a:b.svg" "images/a#b.svg" "images/a%b.svg" "images/a$b.svg"
                    "images/a;b.svg" "images/a*b.svg" "images/a=b.svg"))
           (text (refusal-tests--drawing-notes
                  "odd" (mapcar (lambda (name) (concat ":file " name)) names))))
      (should (refusal-tests--said-in-order
               (refusal-tests--refused text)
               (cl-loop for name in names for n from 0
                        collect (format "README.org:%d: block `odd-%d': :file %s has %S, which make or the shell cannot hold in a file name"
                                        (refusal-tests--block-line text (format "odd-%d" n))
                                        n name (substring name 8 9))))))))

(ert-deftest refusal-tests-a-link-leading-outside-is-refused-and-nothing-is-written-there ()
  (refusal-tests--in-project
    (let ((outside (make-temp-file "refusal-tests-outside-" t))
          (images (expand-file-name "images" refusal-tests--project)))
      (unwind-protect
          (progn
            (rename-file images (concat images "-real"))
            (make-symbolic-link outside images)
            (let ((text (concat refusal-tests--header
                                (refusal-tests--block refusal-tests--draw "linked"
                                                      ":file images/x.svg"))))
              (should (refusal-tests--said-in-order
                       (refusal-tests--refused text)
                       (list (format "README.org:%d: block `linked': :file images/x.svg leads outside the project, to %s, through a symbolic link; remove the link, or choose another name"
                                     (refusal-tests--block-line text "linked")
                                     (abbreviate-file-name
                                      (expand-file-name "x.svg" (file-truename outside))))))))
            (should-not (directory-files outside nil directory-files-no-dot-files-regexp)))
        (delete-directory outside t)))))

;; Org makes a block's :output-dir as it reads its header.
(ert-deftest refusal-tests-a-refused-output-dir-is-not-made ()
  (refusal-tests--in-project
    (let* ((elsewhere (make-temp-file "refusal-tests-od-" t))
           (deep (expand-file-name "x/deep" elsewhere)))
      (unwind-protect
          (let ((text (concat refusal-tests--header
                              (refusal-tests--block refusal-tests--draw "elsewhere"
                                                    (concat ":file x.svg :output-dir " deep)))))
            (should (refusal-tests--said-in-order
                     (refusal-tests--refused text)
                     (list (format "README.org:%d: block `elsewhere': :file "
                                   (refusal-tests--block-line text "elsewhere")))))
            (should-not (file-exists-p (file-name-directory deep))))
        (delete-directory elsewhere t)))))

;; Found by probing: without :mkdirp, the build made the folder that
;; Org's own tangling (C-c C-v t) failed for want of.
(ert-deftest refusal-tests-a-missing-folder-org-would-not-make-is-named ()
  (refusal-tests--in-project
    (let ((text (concat refusal-tests--header
                        (refusal-tests--block "x = 1" "nowhere" ":tangle missing/x.py :mkdirp no")
                        (refusal-tests--block "x = 2" "not-asked" ":tangle missing/deeper/y.py")
                        ;; Made, as Org makes it.
                        (refusal-tests--block "x = 3" "asked" ":tangle made/z.py :mkdirp yes"))))
      (should (equal (refusal-tests--refused text)
                     (list (format "README.org:%d: block `nowhere': :tangle missing/x.py goes in a folder that does not exist, and :mkdirp no forbids making it"
                                   (refusal-tests--block-line text "nowhere"))
                           (format "README.org:%d: block `not-asked': :tangle missing/deeper/y.py goes in a folder that does not exist, which Org makes only under :mkdirp yes; add it, or make the folder"
                                   (refusal-tests--block-line text "not-asked"))))))))

;; Found by probing: a rule of the user's own (a global excludes file)
;; and a rule of the project that a tracked file matches each made the
;; build refuse an output as "ignored by git".
(ert-deftest refusal-tests-only-the-projects-rules-ignore-an-output ()
  (refusal-tests--in-project
    (let* ((default-directory refusal-tests--project)
           (excludes (expand-file-name "my-ignores" refusal-tests--project))
           (config (expand-file-name "my-gitconfig" refusal-tests--project))
           (process-environment (cons (concat "GIT_CONFIG_GLOBAL=" config) process-environment))
           (text (concat refusal-tests--header
                         (refusal-tests--block "1" "mine" ":tangle mine.py")
                         (refusal-tests--block "1" "tracked" ":tangle gradients.ipynb")
                         (refusal-tests--block "1" "new" ":tangle draft.py~")
                         (refusal-tests--block "1" "Dup")
                         (refusal-tests--block "1" "dup"))))
      (write-region "*.py\n" nil excludes nil 'silent)
      (write-region (format "[core]\n\texcludesFile = %s\n" excludes) nil config nil 'silent)
      (write-region "" nil "gradients.ipynb" nil 'silent)
      (should (eql 0 (call-process "git" nil nil nil "init" "-q")))
      (should (eql 0 (call-process "git" nil nil nil "add" "-f" "gradients.ipynb")))
      ;; Another repository, which the caller's GIT_DIR names, ignores
      ;; every file the notes make.
      (should (eql 0 (call-process "git" nil nil nil "init" "-q" "other")))
      (write-region "*\n" nil "other/.git/info/exclude" nil 'silent)
      (let* ((process-environment
              (append (list (concat "GIT_DIR=" (expand-file-name "other/.git"))
                            (concat "GIT_WORK_TREE=" refusal-tests--project))
                      process-environment))
             (said (refusal-tests--refused text)))
        (should (cl-some (lambda (line) (string-match-p "differs only in case" line)) said))
        (should (equal (cl-remove-if-not (lambda (line) (string-match-p "ignored by git" line))
                                         said)
                       (list (format "README.org:%d: block `new': :tangle draft.py~ is ignored by git (.gitignore), so it would never be committed; choose another name"
                                     (refusal-tests--block-line text "new")))))))))

;; Found by probing: more members of the same families, one build for all.
(ert-deftest refusal-tests-more-outputs-and-names-that-would-go-wrong-are-refused ()
  (refusal-tests--in-project
    (let ((default-directory refusal-tests--project))
      (should (eql 0 (call-process "git" nil nil nil "init" "-q"))))
    (let* ((cases '(("Dup" "" "its name differs only in case from another block's")
                    ("dup" "" "its name differs only in case from another block's")
                    ("pic" ":file images/x.png" nil)
                    ("tan" ":tangle images/x.png" ":tangle images/x.png names a picture, which would hold the block's code")
                    ;; Found by probing: said to replace a source.
                    ("hid" ":file images/.h.svg" ":file images/.h.svg is hidden (.h.svg starts with a dot), as the project's own files are; choose a name without a leading dot, such as images/h.svg")
                    ("hid-top" ":tangle .h.py" ":tangle .h.py is hidden (.h.py starts with a dot)")
                    ("empty" ":tangle \"\"" ":tangle is given an empty name")
                    ("in-sub" ":dir sub" ":dir sub is not followed by the kernel")
                    ("target" ":tangle tangle" ":tangle tangle would replace a source of the project")
                    ("ignored" ":tangle gradients.ipynb"
                     ":tangle gradients.ipynb is ignored by git")
                    ("folder" ":tangle out/" ":tangle out/ is a folder")
                    ("shouting" ":tangle GRADIENTS.py"
                     ":tangle GRADIENTS.py and gradients.py, tangled by")))
           (text (concat (apply #'concat refusal-tests--header
                                (mapcar (lambda (case)
                                          (refusal-tests--block "1" (nth 0 case) (nth 1 case)))
                                        cases))
                         "\n#+RESULTS: renamed\n:results:\n: 1\n:end:\n"))
           (said (refusal-tests--refused text)))
      (should-not
       (refusal-tests--said-somewhere
        said
        (cons (format "README.org:%d: #+RESULTS: renamed belongs to no block"
                      (refusal-tests--line text "#+RESULTS: renamed"))
              (cl-loop for (name _ what) in cases
                       when what
                       collect (format "README.org:%d: block `%s': %s"
                                       (refusal-tests--block-line text name) name what)))))
      (should (= (length said) 12)))))

;;; refusal-tests.el ends here
