;;; build.el --- the batch build behind make tangle, make test and make run  -*- lexical-binding: t -*-

;; emacs -Q --batch -l tools/build.el -f gradients-build-produce README.org
;;     (make test) produce everything the notes make into .build/produced/:
;;     the tangled files, the pictures, and blocks.json, what Org read of
;;     each block and what the kernel made of it.  The committed outputs
;;     are not touched.
;; emacs -Q --batch -l tools/build.el -f gradients-build-tangle README.org
;;     (make tangle) the same, then copy every output that changed into
;;     the project.
;; emacs -Q --batch -l tools/build.el -f gradients-build-run README.org
;;     (make run) restart and run all, rewriting the results in README.org.
;;
;; Org visits the notes where they are, so that their folder is the one
;; Lisp header values, #+SETUPFILE and relative paths see, as when the
;; author runs a block.  Only the outputs are redirected: every output
;; path goes through `gradients-build-output-path' once, and is written
;; into a scratch folder under .build/; only once everything succeeded is
;; anything moved into place, by renames, so no file is ever half
;; written, and Ctrl-C during the moves completes them.
;;
;; The kernel run is what costs: its results and pictures are kept in
;; .build/produced/ under a key of everything that can change them (the
;; code and header arguments of every block in order, what is tangled,
;; the lock, the build's own tools, Emacs and Org, the files the blocks
;; read).  When only prose
;; changed, the key is the same and no kernel starts.

;;; Code:

(require 'cl-lib)

(defconst gradients-build-directory
  (file-name-directory (or load-file-name buffer-file-name)))

;; A garbage collection scans the whole of Emacs, about 30 ms for the
;; native-compiled Emacs 28 of Debian, and with the default threshold
;; (800 kB) loading Org alone collects fifteen times: more than half of
;; a build that runs no kernel.  A build lives for seconds and allocates
;; some tens of megabytes, so it collects at most once or twice.
(setq gc-cons-threshold (* 64 1024 1024))

;; The caller's locale picks Emacs's language environment, and with it
;; the case table: under a Turkish one (tr_TR, installed or not) `upcase'
;; makes "i" a dotted capital I, and Org, which compares keywords such as
;; #+begin_src in capitals, finds no block that ends.  The build reads
;; the notes as UTF-8, as in any other locale.
(set-language-environment "UTF-8")

;; A reference Org cannot resolve in the notes (a :var or noweb name of
;; no block) it looks up among the IDs of the user's other Org files,
;; listed under ~/.emacs.d/: the build would read files that are no input
;; of its own, nor any of the project's.
(defvar org-id-track-globally)
(defvar org-id-locations-file)
(setq org-id-track-globally nil
      org-id-locations-file null-device)

;; Opening an Org file loads every link module in `org-modules' (Gnus,
;; Rmail, EWW...), org-lint's export library loads every back-end in
;; `org-export-backends' (ODT brings the whole of nXML), and version
;; control looks for git: together most of the start-up time of a batch
;; run, and none of it is needed here, where nothing is exported.
(defvar org-modules)
(defvar org-export-backends)
(setq org-modules nil
      org-export-backends nil
      vc-handled-backends nil
      ;; The notes are visited where they are: no lock file beside them.
      create-lockfiles nil
      make-backup-files nil
      ;; Org visits the notes again as it tangles; a file whose time
      ;; changed meanwhile (touched, saved the same by an editor) made
      ;; Emacs ask whether to read it again, and the question failed
      ;; the build.  The buffer is kept, and its bytes compared with the
      ;; file's once the blocks have run
      ;; (`gradients-build--check-unchanged'): an edit is said so.
      query-about-changed-file nil)

;;;; File names taken as they are spelled

;; Emacs reads `$NAME', `${NAME}', `$$', a `~' or a second `/' after a
;; slash in any file name that goes through `substitute-in-file-name', as
;; every `load' does (ours of ob-gradients.el, Org's of its autoloads):
;; in a checkout or a folder of Emacs's load path whose own path holds one
;; of those, Emacs would read another file, or none.  A file name handler
;; for each such folder keeps the names under it as they are spelled;
;; elsewhere no handler is added, so nothing else changes.

(defun gradients-build--name-as-spelled (_operation name &rest _)
  "File name handler for `substitute-in-file-name' alone: NAME as it is."
  name)

;; Only for that operation: Emacs takes a file with a handler for any
;; other for a remote one (it cannot load compiled Lisp from it).
(put 'gradients-build--name-as-spelled 'operations '(substitute-in-file-name))

(defun gradients-build-take-as-spelled (folder)
  "Make Emacs take the names of FOLDER and of every file under it as
they are spelled, if it would read them otherwise."
  (let ((folder (file-name-as-directory (expand-file-name folder))))
    (unless (or (equal (let ((file-name-handler-alist nil))
                         (substitute-in-file-name folder))
                       folder)
                (string-prefix-p "/:" folder))
      (add-to-list 'file-name-handler-alist
                   (cons (concat "\\`" (regexp-quote folder))
                         #'gradients-build--name-as-spelled)))))

;; The checkout (the folder above tools/), and where Emacs finds Lisp
;; (EMACSLOADPATH may name an Org in the checkout's .build/), before
;; anything is loaded from them.
(dolist (folder (cons (expand-file-name ".." gradients-build-directory) load-path))
  (when (stringp folder)
    (gradients-build-take-as-spelled folder)))

;; Compiling needs the executor's definitions too: which of the
;; variables bound below are special, which functions exist.
(eval-and-compile
  (load (expand-file-name "ob-gradients" (file-name-directory (or (macroexp-file-name)
                                                                  buffer-file-name)))
        nil t))
;; Org is loaded by the build itself (`gradients-build--load-org'), after
;; this file: variables of its that are bound below must be known as
;; special here, or compiling would bind them lexically.
(defvar org-babel-current-src-block-location)
(defvar org-babel-noweb-error-all-langs)
(defvar org-babel-tangle-lang-exts)
(defvar org-element-all-elements)
(defvar org-confirm-babel-evaluate)
(defvar python-indent-guess-indent-offset)
(defvar org-element-use-cache)
(defvar org-src-lang-modes)
(defvar gradients-build-programs)
(declare-function org-babel-execute-src-block "ob-core")
(declare-function org-babel-tangle "ob-tangle")
(declare-function org-lint "org-lint")
(declare-function org-lint-checker-name "org-lint")
(declare-function org-element-lineage "org-element")
(declare-function org-strip-quotes "org-macs")
(declare-function org-url-p "org-macs")
(declare-function org-babel-process-params "ob-core")
(declare-function org-babel--expand-body "ob-core")
(declare-function org-babel-noweb-p "ob-core")
(declare-function org-babel-tangle-single-block "ob-tangle")
(declare-function org-remove-indentation "org-macs")
(declare-function org-trim "org-macs")
(declare-function org-babel-expand-body:generic "ob-core")
(declare-function gradients-variable-assignments "ob-gradients")
(declare-function org-babel-expand-noweb-references "ob-core")
(declare-function org-element-parse-buffer "org-element")
(declare-function org-element-map "org-element")
(declare-function org-back-to-heading "org")
(declare-function org-end-of-subtree "org")
(declare-function org-in-archived-heading-p "org")
(declare-function org-in-commented-heading-p "org")
(declare-function ucs-normalize-NFC-string "ucs-normalize")
(declare-function org-babel-parse-header-arguments "ob-core")
(declare-function org-babel-get-src-block-info "ob-core")
(declare-function org-babel-where-is-src-block-result "ob-core")
(declare-function org-element-type "org-element")
(declare-function org-element-property "org-element")
(declare-function org-element-at-point "org-element")

(defmacro gradients-build--as-a-build (&rest body)
  "Run BODY with the executor behaving as a build needs: every block
waited for, within its time limit, tracebacks in the log, no pictures
saved for blocks without :file, what the notes could not keep refused,
progress said every ten seconds and nothing else said."
  `(let ((gradients-default-timeout gradients-batch-timeout)
         ;; Messages keep `quotes' as typed: logs are plain text.
         (text-quoting-style 'grave)
         (gradients-allow-async nil)
         (gradients-save-loose-pictures nil)
         (gradients-results-for-the-notes t)
         (gradients-tracebacks-in-errors t)
         (gradients-progress-interval 10)
         (gradients-refuse-runs-for-value t)
         (gradients-chatty nil))
     ,@body))

(defconst gradients-build-produced-folder ".build/produced"
  "Where the last build put everything it produced, for `make test'.")

(defconst gradients-build-produced-file-for-make ".build/produced/blocks.json"
  "The file make knows the produced folder by.")

(defconst gradients-build-outputs-file ".build/outputs"
  "What the last successful `make tangle' installed, one path a line.
The Makefile reads it: the build, not a second parser, says what the
outputs are.")

(defconst gradients-build-outputs-digests ".build/outputs.sha256"
  "The digests of what the last `make tangle' installed (and `make run'
drew again), as sha256sum writes them: the Makefile checks them, and the
next `make tangle' removes only what still holds them.  An output no
block makes any more, kept because the notes still link it, stays listed
until a build removes it.")

(defconst gradients-build-outputs-inputs ".build/outputs.inputs.sha256"
  "The digests of the inputs (the notes, what they read, the build's
tools) that the outputs the last `make tangle' installed were built
from: `make tangle' checks its own, since the build of `make test'
rewrites those of .build/produced/, and an edit put back with an older
time was then built for `make test' alone, `make tangle' finding
nothing to do.")

(defconst gradients-build-protected
  '("Makefile" "pyproject.toml" "requirements.lock" "tools" "tests")
  "Sources of the project, relative to the notes' folder, that no output
may replace or lie under.  So are the Org file being built and anything
whose path has a part starting with a dot (.git, .build, .venv...), and
the files read in a source's place (`gradients-build-read-first').")

(defconst gradients-build-read-first
  "\\`\\(?:GNUmakefile\\|makefile\\|[Rr][Ee][Aa][Dd][Mm][Ee]\\(?:\\..*\\)?\\)\\'"
  "Names in the notes' folder that a tool reads before one of its sources:
make reads GNUmakefile or makefile before the Makefile (a tangled one
left every make target unknown), and GitHub shows another README in
the notes' place, whatever the case of its name.")

(defconst gradients-build-hidden-sources
  '(".git" ".github" ".ci" ".build" ".venv" ".gitignore" ".gitattributes" ".dir-locals.el")
  "Hidden files and folders of the project's, there or not yet: an
output in place of one would replace a source.")

(defconst gradients-build-other-tools
  '("kernel_bridge.py" "kernel_supervisor.py" "pictures.json")
  "The files of tools/ that make the build besides the Lisp Emacs loads:
the kernel's bridge, what it imports and what it reads.")

(defun gradients-build-tools ()
  "The files of tools/ that make the build: a change to one runs every
block again, and make builds again (through .build/produced/inputs.mk).
The Lisp is what Emacs loaded from tools/, as `load-history' says, so
that a file ob-gradients.el comes to load is never left out."
  (let ((tools (copy-sequence gradients-build-other-tools)))
    (dolist (entry load-history)
      (let ((file (car entry)))
        (when (and (stringp file)
                   (equal (file-name-directory file) gradients-build-directory))
          (cl-pushnew (file-name-nondirectory file) tools :test #'equal))))
    (sort tools #'string<)))

(defvar gradients-build--scratch nil
  "The scratch folder of the running build, removed however the build ends.")

(defvar gradients-build--project nil
  "The folder of the Org file being built: where the outputs go.")

(defvar gradients-build--moves nil
  "The moves still to make once the install has begun: (FROM . TO) pairs.")

(defvar gradients-build--org-name nil
  "The Org file's name, for messages about the text being checked.")

;;;; Reading the Org file

;; These checks need no Org, so they run before it loads and before the
;; kernel starts: bad input fails at once.

(defun gradients-build--org-file ()
  "The Org file named on the command line, as an absolute name without
Emacs's /: quoting.  Emacs quotes the folder it starts in when the
folder's name looks like a remote one (/a:b/...): Org and the kernel's
process would take the quoted name for another file.  Plain, the name is
the file it says, unless a file name handler (Tramp's) claims it: then
the build stops at once."
  (let ((file (pop command-line-args-left)))
    (unless (and file (file-readable-p file))
      (error "Usage: emacs --batch -l tools/build.el -f FUNCTION README.org"))
    (let ((file (file-name-unquote (expand-file-name file))))
      (when (find-file-name-handler file 'file-exists-p)
        (error "%s: Emacs takes the path %s for a remote file name (Tramp's /method:host: syntax), and cannot build there; move the checkout to a path whose first folder has no `:'"
               (file-name-nondirectory file) (file-name-directory file)))
      file)))

(defun gradients-build--fail-at (line format-string &rest args)
  (error "%s:%d: %s" gradients-build--org-name line (apply #'format format-string args)))

(defun gradients-build--check-utf-8 ()
  "Fail on the first byte of the buffer that did not decode as UTF-8."
  (save-excursion
    (goto-char (point-min))
    ;; Undecodable bytes become the raw-byte characters #x3FFF80-#x3FFFFF.
    (when (re-search-forward gradients-raw-byte-regexp nil t)
      (gradients-build--fail-at
       (line-number-at-pos) "byte #x%X is not UTF-8; the notes must be saved as UTF-8"
       (- (char-before) #x3fff00)))))

(defun gradients-build--check-line-ends ()
  "Fail on a byte order mark or a CR LF line end: Org would not see the
first line's keyword behind the mark, and would take each CR for part of
its line, so that not even #+end_src ends a block."
  (save-excursion
    (goto-char (point-min))
    (when (eq (char-after) #xFEFF)
      (gradients-build--fail-at
       1 "the file starts with a byte order mark, which hides this line from Org; save it as UTF-8 without one"))
    (when (search-forward "\r\n" nil t)
      (gradients-build--fail-at
       (line-number-at-pos (match-beginning 0))
       "the line ends in CR LF (Windows line ends), which Org reads as part of the line; save the notes with LF line ends"))
    ;; Emacs shows each as ^M or ^@ in the line; Python, which runs a
    ;; block's code, takes a CR for a line end, so that a block runs
    ;; other code than it shows; and a NUL makes git and GitHub take the
    ;; whole file for binary, shown and diffed as no text.
    (goto-char (point-min))
    (when (re-search-forward "[\r\0]" nil t)
      (gradients-build--fail-at
       (line-number-at-pos (match-beginning 0))
       (if (eq (char-before) ?\r)
           "a carriage return (^M) inside the line, which Python reads as a line end; remove it"
         "a NUL byte (^@), for which git and GitHub take the whole file for binary; remove it")))))

(defun gradients-build--file-bytes (file)
  (with-temp-buffer
    (set-buffer-multibyte nil)
    (insert-file-contents-literally file)
    (buffer-string)))

(defun gradients-build--read-and-check (file)
  "FILE's bytes, once the text they hold passed the checks that need no Org."
  (let ((bytes (gradients-build--file-bytes file))
        (gradients-build--org-name (file-name-nondirectory file)))
    (with-temp-buffer
      (insert (decode-coding-string bytes 'utf-8-unix))
      (gradients-build--check-utf-8)
      (gradients-build--check-line-ends))
    bytes))

(defun gradients-build--check-rewritable (org-file)
  "Fail unless ORG-FILE is a file its owner may write: the install renames
the new copy over it, which would turn a link into a file and overwrite
a file made read-only, as no editor would."
  (let ((name (file-name-nondirectory org-file)))
    (when (file-symlink-p org-file)
      (error "%s is a symbolic link, which `make run' would replace with a file; run it where the link points (%s)"
             name (file-truename org-file)))
    (when (zerop (logand (file-modes org-file) #o200))
      (error "%s is read-only; make it writable (chmod u+w %s) for `make run' to rewrite it"
             name name))
    ;; Writable by its modes, yet not here: chmod would not help.
    (unless (file-writable-p org-file)
      (error "%s cannot be written here (it is on a read-only file system, or another user's), and `make run' rewrites it"
             name))
    ;; Found now, not once every block has run.
    (unless (file-writable-p (file-name-directory org-file))
      (error "%s cannot be replaced: its folder is not writable (a read-only file system, or another user's), and `make run' puts the new text in place by a rename"
             name))))

;;;; What was produced last time

(defun gradients-build--produced-file (project &optional name)
  (expand-file-name (or name "blocks.json")
                    (expand-file-name gradients-build-produced-folder project)))

(defun gradients-build--read-json (file &optional made)
  "FILE's JSON as alists, or nil when it is missing or unreadable.
MADE, the file is one this build made earlier in its run: gone, it was
removed from under the build, which says so."
  (condition-case err
      (with-temp-buffer
        (insert-file-contents file)
        (json-parse-buffer :object-type 'alist :array-type 'list
                           :null-object nil :false-object nil))
    (file-missing
     (when made
       (error "%s: %s, which the build made, went while it ran (rm -rf .build, git clean -fdX?); run it again"
              gradients-build--org-name (file-relative-name file gradients-build--project)))
     nil)
    (error (if made (signal (car err) (cdr err)) nil))))

(defun gradients-build--code-hint (text)
  "A digest of the lines of TEXT that can change what blocks produce:
source blocks, and the keywords and properties that give them headers.
Read without Org, before it loads, only to guess whether a kernel will
be needed, so that it can boot meanwhile; the real key comes later."
  (with-temp-buffer
    (insert text)
    (goto-char (point-min))
    (let ((case-fold-search t) (inside nil) (kept nil))
      (while (not (eobp))
        (let ((line (buffer-substring-no-properties (point) (line-end-position))))
          (cond (inside
                 (push line kept)
                 (when (string-match-p "\\`[ \t]*#\\+end_src" line) (setq inside nil)))
                ((string-match-p "\\`[ \t]*#\\+begin_src" line)
                 (setq inside t) (push line kept))
                ((string-match-p (concat "\\`[ \t]*\\(#\\+\\(property\\|headers?\\|name\\|setupfile"
                                         "\\|include\\|call\\):\\|:header-args\\)")
                                 line)
                 (push line kept))))
        (forward-line))
      (secure-hash 'sha256 (mapconcat #'identity (nreverse kept) "\n")))))

;;;; What the notes read besides themselves

(defvar gradients-build--inputs nil
  "The project's files Emacs read while reading the notes (a #+SETUPFILE,
.dir-locals.el, a file a Lisp header value reads): what the results
depend on besides the notes.")

(defun gradients-build--note-input (file &rest _)
  "Before `insert-file-contents': note FILE if it is one of the project's."
  (let ((file (expand-file-name file)))
    (when (and gradients-build--project
               (gradients-file-inside-p file gradients-build--project)
               ;; Org's own scratch files, when TMPDIR lies in the notes' folder.
               (not (and (gradients-file-inside-p temporary-file-directory
                                                  gradients-build--project)
                         (gradients-file-inside-p file temporary-file-directory))))
      (let ((relative (file-relative-name file gradients-build--project)))
        ;; The build's own files are make's prerequisites already, and
        ;; what lies under a dot folder (.git, .build, .venv) is no input
        ;; of the notes; their .dir-locals.el is: Emacs applies its safe
        ;; settings to the notes as it visits them.
        (unless (or (member relative (list gradients-build--org-name "Makefile"
                                           "requirements.lock"))
                    (and (cl-some (lambda (part) (string-prefix-p "." part))
                                  (split-string relative "/"))
                         (not (string-match-p "\\`\\.dir-locals\\(-2\\)?\\.el\\'" relative)))
                    (string-prefix-p "tools/" relative))
          (cl-pushnew relative gradients-build--inputs :test #'equal))))))

(defun gradients-build--make-quoted (file &optional target)
  "FILE as make reads it in a rule, as a TARGET when non-nil, else as a
prerequisite.  A % makes a target a pattern, unless quoted, and is a
letter in a prerequisite, where a backslash before it stays: the two
spellings differ, and with the target's in both, every later make
looked for a file of the wrong name.  A $ is make's own, doubled.  A
backslash is a letter too, but before one of these."
  (replace-regexp-in-string
   "\\$" "$$" (replace-regexp-in-string (if target "\\([ #:%]\\)" "\\([ #:]\\)")
                                       "\\\\\\1" file)
   t t))

(defun gradients-build--make-temp (prefix &optional folder)
  "`make-temp-file' of PREFIX (a FOLDER when non-nil), with the permissions
the umask gives a new file, as make's own files in .build/ have: Emacs
makes them private whatever the umask, so that in a checkout a group
shares (umask 002) the next make of another member could not read
.build/produced/ or the digests, and would build every time."
  (let ((made (make-temp-file prefix folder)))
    (set-file-modes made (logand (if folder #o777 #o666) (default-file-modes)))
    made))

(defun gradients-build--write-digests (file relatives)
  "Write FILE (through a temporary file renamed into place) in the format
sha256sum --check reads: the digest of each file RELATIVES names, relative
to the notes' folder, where make runs it.  Make goes by times, which a
file put back with its old one (cp -p, rsync -a, tar, git stash on
some systems) does not change: the Makefile checks these digests too."
  (gradients-build--write-digest-lines
   file (mapcar (lambda (relative)
                  (cons relative (secure-hash 'sha256 (gradients-build--file-bytes
                                                       (expand-file-name relative gradients-build--project)))))
                relatives)))

(defun gradients-build--write-digest-lines (file digests)
  "Write FILE, through a temporary file renamed into place, as sha256sum
lists DIGESTS, an alist of a path relative to the notes' folder and its
digest."
  (let ((temporary (gradients-build--make-temp (concat file "-")))
        (coding-system-for-write 'utf-8-unix))
    (with-temp-file temporary
      (pcase-dolist (`(,relative . ,digest) digests)
        ;; sha256sum's own escape, for a name with a backslash or newline.
        (if (string-match-p "[\\\n]" relative)
            (insert "\\" digest "  "
                    (replace-regexp-in-string
                     "\n" "\\n" (replace-regexp-in-string "\\\\" "\\\\" relative t t) t t)
                    "\n")
          (insert digest "  " relative "\n"))))
    (rename-file temporary file t)))

(defun gradients-build--write-inputs (org-file)
  "Write inputs.mk into the scratch folder: make's prerequisites of the
build besides ORG-FILE (the build's tools, and what the notes read), with
an empty rule for each so that a file that goes away makes the build run
again rather than make fail; and inputs.sha256, the digests of all of
them and of ORG-FILE, which make checks as well."
  (let* ((coding-system-for-write 'utf-8-unix)
         (inputs (append (mapcar (lambda (tool) (concat "tools/" tool))
                                 (gradients-build-tools))
                         (sort (cl-remove-if-not
                                (lambda (input)
                                  (file-exists-p
                                   (expand-file-name input gradients-build--project)))
                                gradients-build--inputs)
                               #'string<)))
         (quoted (mapcar #'gradients-build--make-quoted inputs)))
    (with-temp-file (expand-file-name "inputs.mk" gradients-build--scratch)
      (insert "# Written by tools/build.el: what the last build read besides the notes.\n")
      (insert (format "%s %s: %s\n" gradients-build-produced-file-for-make
                      gradients-build-outputs-file (mapconcat #'identity quoted " ")))
      (dolist (input inputs) (insert (gradients-build--make-quoted input t) ":\n")))
    ;; The tools are the checkout's, which notes built from elsewhere (the
    ;; ERT tests' own) do not have beside them.
    (gradients-build--write-digests
     (expand-file-name "inputs.sha256" gradients-build--scratch)
     (cl-remove-if-not
      (lambda (input) (file-exists-p (expand-file-name input gradients-build--project)))
      (cons (file-relative-name org-file gradients-build--project) inputs)))))

;; Emacs and Org are inputs too, but not files a digest suits: tens of
;; megabytes, which make would read at every run.  They change by being
;; replaced or rewritten (a package upgrade, a `git pull' of an Org on
;; EMACSLOADPATH, a library added to a folder of the load path): a file's
;; device, inode, size and change time say so, and a folder's, which
;; changes as a file comes or goes.  The change time, unlike the
;; modification time, is the system's own: a file put back with an older
;; time (cp -p, tar) gets a new one.  The Makefile runs the same `stat' on
;; the same list.
(defconst gradients-build-emacs-stat-arguments '("-L" "-c" "%d %i %s %.9Z" "--")
  "How `stat' describes each of Emacs's files, here and in the Makefile.")

(defun gradients-build--emacs-files ()
  "Emacs's own files this build ran on: its program and dump, every Lisp
file it loaded but the build's own (Org's, wherever it lies, .build/
included), and every folder of its load path, where a library added
would be loaded in place of the one loaded now; and the files of the
programs the kernel ran with (`gradients-build-programs')."
  (let ((files (list (expand-file-name invocation-name invocation-directory))))
    (when (fboundp 'pdumper-stats)
      (push (alist-get 'dump-file-name (pdumper-stats)) files))
    (dolist (entry load-history)
      (push (car entry) files))
    ;; Replaced in place (an upgrade), they run the blocks again too.
    (setq files (append files (gradients-build--program-files) load-path))
    (sort (delete-dups
           (cl-remove-if-not
            (lambda (file)
              (and (stringp file)
                   (file-name-absolute-p file)
                   ;; One a line, for xargs.
                   (not (string-match-p "\n" file))
                   (file-exists-p file)
                   ;; Those go by their digests, with the notes' inputs:
                   ;; put back as they were, they build nothing again.
                   ;; Loaded from the folder build.el was loaded from, by
                   ;; that name: no link to resolve, which for some 200
                   ;; files would cost a build 40 ms.
                   (not (string-prefix-p gradients-build-directory
                                         (file-name-as-directory file)))))
            (mapcar (lambda (file) (and (stringp file) (directory-file-name file))) files)))
          #'string<)))

(defun gradients-build--write-emacs-files ()
  "Write emacs-files into the scratch folder, the list of
`gradients-build--emacs-files', and emacs-files.stat, what `stat' says of
them now, which the Makefile compares with what it says then."
  (let ((files (gradients-build--emacs-files))
        (list (expand-file-name "emacs-files" gradients-build--scratch)))
    ;; Their names as Emacs gives them to `stat' here, for xargs's.
    (let ((coding-system-for-write
           (or file-name-coding-system default-file-name-coding-system 'utf-8-unix)))
      (with-temp-file list
        (dolist (file files) (insert file "\n"))))
    ;; A file gone meanwhile is one line short: make then builds again.
    (let ((coding-system-for-write 'utf-8-unix))
      (with-temp-file (concat list ".stat")
        (apply #'call-process "stat" nil '(t nil) nil
               (append gradients-build-emacs-stat-arguments files))))
    (gradients-build--write-programs-found)))

(defun gradients-build--write-programs-found ()
  "Write programs into the scratch folder: each program of
`gradients-build-programs' looked up on the PATH, and the file found,
links followed, a line each.  The Makefile looks each up again: another
one first on the PATH now (or none) is another program, which the files
it stats, the ones found then, cannot tell."
  (let ((coding-system-for-write
         (or file-name-coding-system default-file-name-coding-system 'utf-8-unix)))
    (with-temp-file (expand-file-name "programs" gradients-build--scratch)
      (dolist (program gradients-build-programs)
        (when (stringp program)
          (insert program " " (or (gradients-build--program-file program) "") "\n"))))))

;;;; Scratch folders

(defun gradients-build--remove-abandoned-scratch (project)
  "Remove the scratch folders of builds that no longer run: one killed
with SIGKILL ran no hook to remove its own.  Each is named after its
Emacs's process id.  Only the names in .build/ are matched, not the
path to it: a `*' or `[' in the checkout's path would be a wildcard,
matching another checkout's folders, or none."
  (dolist (folder (directory-files (expand-file-name ".build" project) t
                                   "\\`run-[0-9]+-"))
    (when (and (string-match "/run-\\([0-9]+\\)-[^/]*\\'" folder)
               (not (process-attributes (string-to-number (match-string 1 folder)))))
      (delete-directory folder t))))

(defun gradients-build--make-scratch (project)
  (make-directory (expand-file-name ".build" project) t)
  (gradients-build--remove-abandoned-scratch project)
  (setq gradients-build--scratch
        (file-name-as-directory
         (gradients-build--make-temp
          (expand-file-name (format ".build/run-%d-" (emacs-pid)) project) t))))

;;;; Output paths

(defconst gradients-build--picture-path-regexp "\\`images/[^/]+\\'"
  "A picture's path as a drawer links it: a file directly in images/.")

(defun gradients-build--saved-picture-p (path)
  "Whether PATH, as a link in the notes names it, leads to a picture an
interactive run saved (`gradients-loose-picture-folder'), however spelled."
  (string-prefix-p (file-name-as-directory gradients-loose-picture-folder)
                   (file-relative-name (expand-file-name path gradients-build--project)
                                       gradients-build--project)))

(defun gradients-build-output-path (name key where)
  "The file an output NAME (given by header KEY of the block WHERE
names) denotes, relative to the notes' folder; an error naming WHERE if
it may not be an output.  This is the one place output paths are
resolved and judged: relative names against the notes' folder, as Org
resolves them when run from there, and symbolic links followed, so two
spellings of one file are one output, and a link cannot lead outside."
  (let* ((project (file-truename gradients-build--project))
         (absolute (expand-file-name name gradients-build--project))
         (real (file-truename absolute))
         (relative (file-relative-name real project))
         (complain (lambda (why &rest args)
                     (error "%s: %s %s %s" where key name (apply #'format why args))))
         ;; A name to suggest instead: a picture's in images/, a tangled
         ;; file's in the notes' folder, neither hidden.
         (suggested (concat (if (eq key :file) "images/" "")
                            (replace-regexp-in-string "\\`\\.+" "" (file-name-nondirectory
                                                                  (directory-file-name name))))))
    (when (string-empty-p (string-trim name))
      (error "%s: %s is given an empty name; name a file" where key))
    (unless (gradients-file-inside-p real project)
      (if (or (equal real (directory-file-name absolute))
              ;; As spelled, links not followed.
              (not (string-prefix-p (file-name-as-directory
                                     (expand-file-name gradients-build--project))
                                    absolute)))
          (funcall complain "is outside the project%s; use a path under the notes' folder, such as %s"
                   (if (equal real (directory-file-name absolute)) ""
                     (format " (it leads to %s)" (abbreviate-file-name real)))
                   suggested)
        ;; Spelled inside, led outside by a link on the way: the same
        ;; spelling would not do.
        (funcall complain "leads outside the project, to %s, through a symbolic link; remove the link, or choose another name"
                 (abbreviate-file-name real))))
    (when (or (file-directory-p real) (string-suffix-p "/" name))
      (funcall complain "is a folder; name a file in it"))
    ;; Only found at the install otherwise, once every block has run.
    (let ((in-the-way (car (gradients-build--file-in-the-way real))))
      (when in-the-way
        (funcall complain "goes in %s, which is a file, not a folder"
                 (file-relative-name in-the-way project))))
    (let* ((parts (split-string relative "/"))
           (hidden (cl-position-if (lambda (part) (string-prefix-p "." part)) parts)))
      ;; A hidden name of its own (images/.p.svg, .notes.py): not a
      ;; source, as one of the project's hidden files and folders is
      ;; (.git, .build, .venv, .gitignore), yet no file GitHub lists.
      (when (and hidden
                 (or (> hidden 0)
                     (not (or (member (car parts) gradients-build-hidden-sources)
                              (file-exists-p (expand-file-name (car parts) project))))))
        (funcall complain "is hidden (%s starts with a dot), as the project's own files are; choose a name without a leading dot, such as %s"
                 (nth hidden parts)
                 (string-join (mapcar (lambda (part) (replace-regexp-in-string "\\`\\.+" "" part))
                                      parts)
                              "/")))
      (when (or (equal real (file-truename (buffer-file-name)))
                (member (car parts) gradients-build-protected)
                hidden
                (and (null (cdr parts))
                     (or (member (car parts) (gradients-build--make-targets))
                         (let ((case-fold-search nil))
                           (string-match-p gradients-build-read-first (car parts))))))
        (if (not (equal relative (file-relative-name absolute gradients-build--project)))
            ;; The name is fine; a link on the way leads to a source.
            (funcall complain "leads to a source of the project (%s) through a symbolic link; remove the link"
                     relative)
          (funcall complain "would replace a source of the project (%s); outputs go to files of their own%s"
                   relative
                   ;; The suggestion, made from the name, may be the same
                   ;; source (pyproject.toml): then none.
                   (if (or (member suggested (list relative name))
                           (member suggested gradients-build-protected)
                           (string-match-p gradients-build-read-first suggested))
                       ""
                     (format ", such as %s" suggested)))))
      (when (gradients-build--ignored-by-git-p relative)
        (funcall complain "is ignored by git (.gitignore), so it would never be committed; choose another name"))
      (let ((long (cl-find-if (lambda (part) (> (string-bytes part) 200)) parts)))
        (when long
          (funcall complain "has a part of %d bytes, longer than a file name may be"
                   (string-bytes long))))
      ;; Make reads the list of outputs, and recipes hand them to the shell.
      (let ((bad (cl-find-if (lambda (part)
                               (string-match "[^[:alnum:]_.+-]" part))
                             parts)))
        (when bad
          (string-match "[^[:alnum:]_.+-]" bad)
          (funcall complain "has %s, which make or the shell cannot hold in a file name; use letters, digits, -, _, . and + only"
                   (if (string-match-p "[[:space:]]" (match-string 0 bad)) "a space"
                     (format "%S" (match-string 0 bad)))))))
    ;; A picture is linked from its drawer by its :file as written, and
    ;; GitHub and `make test' read that link: only one spelling of it
    ;; names the file the build writes, directly in images/.
    (when (eq key :file)
      (let ((as-spelled (file-relative-name absolute gradients-build--project))
            (in-images (string-match-p gradients-build--picture-path-regexp relative)))
        (cond ((not (equal relative as-spelled))
               (funcall complain "leads to %s through a symbolic link, and the drawer would link the link; remove it%s"
                        relative (if in-images (format ", or name %s" relative) "")))
              ((not (equal name relative))
               (funcall complain "is %s written another way; write :file %s, the link the drawer gets"
                        relative relative))
              ((not in-images)
               (funcall complain "is not in images/, where the notes keep their pictures; write :file %s"
                        suggested)))))
    relative))

(defvar gradients-build--answers (make-hash-table :test #'equal)
  "What this build found out about the project's files, by question and
folder: every block names its :tangle and :file, often the same one, and
each question asks git or reads the Makefile.")

(defmacro gradients-build--once (question &rest body)
  "BODY's value, computed once per QUESTION (a list) and project folder."
  (declare (indent 1))
  `(let ((key (cons gradients-build--project ,question)))
     (pcase (gethash key gradients-build--answers 'unknown)
       ('unknown (puthash key (progn ,@body) gradients-build--answers))
       (answer answer))))

(defun gradients-build--make-targets ()
  "The names the Makefile gives its own targets (make help, make tangle...):
a file of that name would be taken for the target."
  (gradients-build--once '(make-targets)
    (let ((makefile (expand-file-name "Makefile" gradients-build--project)))
      (when (file-readable-p makefile)
        (with-temp-buffer
          (insert-file-contents makefile)
          (let (targets)
            (while (re-search-forward "^\\.PHONY:\\(.*\\)$" nil t)
              (setq targets (append (split-string (match-string 1)) targets)))
            targets))))))

(defun gradients-build--ignored-by-git-p (relative)
  "Whether the project's git ignore rules make git ignore the output
RELATIVE (when the notes are in a checkout).  Not the user's own
(core.excludesFile), which would refuse on one machine what another
builds; and not a file git tracks, which no rule ignores.  Nor does
the caller's GIT_DIR, GIT_WORK_TREE or any GIT_ setting lead git to
another repository than the notes'."
  (gradients-build--once (list 'ignored-by-git relative)
    (and (file-exists-p (expand-file-name ".git" gradients-build--project))
         (executable-find "git")
         (let ((default-directory gradients-build--project)
               (process-environment
                (cl-remove-if (lambda (setting) (string-prefix-p "GIT_" setting))
                              process-environment)))
           (eql 0 (call-process "git" nil nil nil "-c" "core.excludesFile=/dev/null"
                                "check-ignore" "-q" relative))))))

(defun gradients-build--same-file-key (relative)
  "What two output paths share when they would be one file on some disk:
case and Unicode composition aside (macOS and Windows)."
  (downcase (if (string-match-p "[^[:ascii:]]" relative)
                ;; Loaded only then: its tables take a tenth of a second.
                (progn (require 'ucs-normalize)
                       (ucs-normalize-NFC-string relative))
              relative)))

(defun gradients-build--scratch-path (relative)
  "Where in the scratch folder the output RELATIVE is written."
  (let ((file (expand-file-name relative gradients-build--scratch)))
    (make-directory (file-name-directory file) t)
    file))

(defun gradients-build--tangle-into-scratch (groups)
  "Around Org's collection of blocks to tangle: each file name of GROUPS,
an alist of (FILE . BLOCKS), becomes its place in the scratch folder,
and groups that name one file under two spellings become one."
  (let (merged)
    (dolist (group groups)
      (when (car group)
        (let* ((relative (gradients-build-output-path
                          (car group) :tangle
                          (format "%s: a block tangled" gradients-build--org-name)))
               (target (gradients-build--scratch-path relative))
               (known (assoc target merged)))
          (if known
              (setcdr known (append (cdr known) (cdr group)))
            (push (cons target (cdr group)) merged)))))
    (nreverse merged)))

;;;; Reading the blocks, once

(defmacro gradients-build--creating-no-folders (&rest body)
  "Run BODY with `make-directory' doing nothing: Org makes a block's
:output-dir as it reads its header, and nothing may be made before the
checks passed."
  `(cl-letf (((symbol-function 'make-directory) #'ignore))
     ,@body))

(defun gradients-build--recorded (info position)
  "The results recorded for the block at POSITION with INFO: (TEXT FIRST
LAST), its drawer's text and the lines of #+RESULTS and of its end.
The text is as the block produces it (`gradients-results-unindented')."
  (save-excursion
    (goto-char position)
    (let ((result (org-babel-where-is-src-block-result nil info)))
      (when result
        (goto-char result)
        (let* ((indentation (current-indentation))
               (element (org-element-at-point))
               (end (save-excursion
                      (goto-char (org-element-property :end element))
                      (skip-chars-backward " \t\n")
                      (point)))
               (begin (org-element-property :contents-begin element))
               (contents-end (org-element-property :contents-end element))
               (text (cond ((and (eq (org-element-type element) 'drawer) begin)
                            (buffer-substring-no-properties begin contents-end))
                           ((eq (org-element-type element) 'drawer) "")
                           (t (buffer-substring-no-properties
                               (org-element-property :post-affiliated element) end)))))
          (list (string-remove-suffix
                 "\n" (gradients-results-unindented text indentation))
                (line-number-at-pos result)
                (line-number-at-pos end)))))))

(defun gradients-build--left-out-at (position)
  "Why what is at POSITION is left out of the notes, as Org's tangling
leaves it out (its own tests), or nil: in no tangled file, nor on GitHub
under a COMMENT."
  (save-excursion
    (goto-char position)
    (cond ((org-in-commented-heading-p) "it is under a COMMENT heading")
          ((org-in-archived-heading-p) "it is under an archived heading"))))

(defun gradients-build--where (org-name line block-name)
  "How messages name the block BLOCK-NAME (nil for one without a name) at
LINE of the Org file ORG-NAME."
  (format "%s:%d: block %s" org-name line
          (if block-name (format "`%s'" block-name) "(unnamed)")))

(defun gradients-build--read-blocks ()
  "Every source block of the buffer, read once from one parse by Org, as
plists in document order.  Everything later (checks, runs, blocks.json)
works from these."
  (let ((name (file-name-nondirectory (buffer-file-name)))
        blocks)
    (gradients-build--creating-no-folders
     (org-element-map (let ((tree (org-element-parse-buffer 'element)))
                        (gradients-build--refuse-headers-without-value name tree)
                        tree)
         'src-block
       (lambda (element)
         (let* ((position (org-element-property :post-affiliated element))
                (info (org-babel-get-src-block-info 'light element))
                (block-name (nth 4 info))
                (line (line-number-at-pos position))
                (where (gradients-build--where name line block-name))
                (recorded (gradients-build--recorded info position))
                (left-out (gradients-build--left-out-at position)))
           (push (list :element element :info info :language (car info)
                       :name block-name :line line :where where :left-out left-out
                       :marker (copy-marker position)
                       :first-line (line-number-at-pos (org-element-property :begin element))
                       :last-line (save-excursion
                                    (goto-char (org-element-property :end element))
                                    (skip-chars-backward " \t\n")
                                    (line-number-at-pos))
                       :recorded (car recorded) :results-lines (cdr recorded))
                 blocks)))))
    (nreverse blocks)))

(defun gradients-build--release-markers (blocks)
  "Point the markers of BLOCKS nowhere, so that edits no longer move them."
  (dolist (block blocks)
    (set-marker (plist-get block :marker) nil)))

(defun gradients-build--code (block)
  "The code BLOCK runs: its body with noweb references expanded (where
its :noweb says so) and code references removed, as Org runs it; once."
  (or (plist-get block :code)
      (let ((code (with-current-buffer (marker-buffer (plist-get block :marker))
                    (save-excursion
                      (goto-char (plist-get block :marker))
                      (org-babel--expand-body (plist-get block :info))))))
        (plist-put block :code code)
        code)))

(defun gradients-build--not-run (block)
  "Why the build does not run BLOCK, a `jupyter-python' block, or nil
when it does.  Its :eval says so (as Org's `org-babel-check-evaluate'
reads it outside an export), or it is left out of the notes as Org's
tangling leaves it out: the kernel then runs what gradients.py holds."
  (let ((eval (cdr (assq :eval (nth 2 (plist-get block :info))))))
    (cond ((member eval '("no" "never")) (format "it has :eval %s" eval))
          (t (plist-get block :left-out)))))

(defun gradients-build--runs-p (block)
  "Whether the build runs BLOCK (see `gradients-build--not-run')."
  (and (equal (plist-get block :language) "jupyter-python")
       (not (gradients-build--not-run block))))

(defun gradients-build--records-p (block)
  "Whether the build runs BLOCK and Org writes its result into the notes:
not under :results none or silent.  `make test' compares the result
recorded with the one produced for these blocks alone."
  (and (gradients-build--runs-p block)
       (let ((words (split-string (or (cdr (assq :results (nth 2 (plist-get block :info))))
                                      ""))))
         (not (or (member "none" words) (member "silent" words))))))

(defun gradients-build--tangled-p (block)
  "Whether BLOCK's :tangle names a file (one left out is tangled nowhere)."
  (not (member (cdr (assq :tangle (nth 2 (plist-get block :info)))) '(nil "no"))))

(defun gradients-build--params (block)
  "BLOCK's header arguments, processed as for running it (Lisp values
evaluated, :var resolved), once."
  (or (plist-get block :params)
      (let ((params (save-excursion
                      (goto-char (plist-get block :marker))
                      (let ((org-babel-current-src-block-location (plist-get block :marker)))
                        (condition-case failure
                            (gradients-build--creating-no-folders
                             (org-babel-process-params (nth 2 (plist-get block :info))))
                          ;; Org's own words ("Reference `x' not found in this
                          ;; buffer") name no block.
                          (error (error "%s: %s" (plist-get block :where)
                                        (error-message-string failure))))))))
        (plist-put block :params params)
        params)))

;;;; Checking the blocks

(defvar gradients-build--problems nil
  "What the header checks found so far: (LINE . MESSAGE) pairs.")

(defmacro gradients-build--noting-problem (line &rest body)
  "Run BODY; if it fails, note its message at LINE, and go on."
  (declare (indent 1))
  `(condition-case err
       (progn ,@body)
     (error (push (cons ,line (error-message-string err)) gradients-build--problems))))

(defconst gradients-build--header-args-regexp
  (concat "^[ \t]*\\(?:#\\+PROPERTY:[ \t]+header-args\\(?::\\(?1:\\S-+?\\)\\)?\\(?4:\\+\\)?"
          "\\|\\(?2::\\)header-args\\(?::\\(?1:\\S-+?\\)\\)?\\(?4:\\+\\)?:\\)"
          "\\(?:[ \t]+\\(?3:.*?\\)\\)?[ \t]*$")
  "A header-args property, matched with `case-fold-search' on, as Org
reads it: a #+PROPERTY line, or a property drawer's line (group 2
matched); its language in group 1, its arguments in group 3, and in
group 4 the `+' that adds them to those before.")

(defun gradients-build--check-header-properties ()
  "Note each unknown name in a header-args property, and each value Org
does not know, naming its line.  The values as `org-lint' checks a
block's own, on a block that gives the same arguments: it checks no
property."
  (require 'org-lint)
  (pcase-dolist (`(,line ,language ,arguments) (gradients-build--header-properties))
    (dolist (name (gradients-unknown-header-names arguments language))
      (gradients-build--noting-problem line
        (error "%s:%d: unknown header argument %s; Org would ignore it (a typo?)"
               gradients-build--org-name line name)))
    (let ((twice (gradients-header-names-given-twice arguments)))
      (when twice
        (gradients-build--noting-problem line
          (error "%s:%d: %s" gradients-build--org-name line
                 (gradients-header-twice-message twice "this line")))))
    (dolist (report (with-temp-buffer
                      (insert (format "#+begin_src %s %s\n#+end_src\n"
                                      ;; Every language's: Org's own values.
                                      (or language "any-language") arguments))
                      (delay-mode-hooks (org-mode))
                      (gradients-build--org-lint '(wrong-header-value))))
      (setf (aref (cadr report) 0) (number-to-string line))
      (gradients-build--report-of-org-lint report))))

(defun gradients-build--header-properties ()
  "Each header-args property of the buffer's own lines, as (LINE LANGUAGE
ARGUMENTS): LANGUAGE downcased (Org reads a property's name in any
case), nil for every language's; ARGUMENTS \"\" for none."
  (save-excursion
    (goto-char (point-min))
    (let ((case-fold-search t)
          properties)
      (while (re-search-forward gradients-build--header-args-regexp nil t)
        (push (list (line-number-at-pos) (and (match-string 1) (downcase (match-string 1)))
                    (or (match-string 3) ""))
              properties))
      (nreverse properties))))

(defun gradients-build--refuse-headers-without-value (name tree)
  "Fail on the first header argument given no value, in a header-args
property of the notes NAME, of a setup file they name, or in a block's
own header (TREE, the notes parsed to their elements): Org, reading the
blocks, fails on it saying only \"Wrong type argument\"."
  (pcase-dolist (`(,line ,language ,arguments) (gradients-build--header-properties))
    (let ((bare (gradients-header-names-without-value arguments language)))
      (when bare
        (error "%s:%d: %s" name line (gradients-header-without-value-message bare)))))
  ;; Those of setup files, which only their own lines can name.
  (org-element-map tree 'keyword
    (lambda (keyword)
      (when (equal (org-element-property :key keyword) "SETUPFILE")
        (pcase-dolist (`(,text ,file . ,line)
                       (gradients-build--setup-file-properties
                        (expand-file-name (org-strip-quotes (org-element-property :value keyword)))
                        0))
          (let* ((case-fold-search t)
                 (language (and (string-match gradients-build--header-args-regexp text)
                                (match-string 1 text)))
                 (bare (gradients-header-names-without-value
                        (nth 2 (gradients-build--header-setting text))
                        (and language (downcase language)))))
            (when bare
              (error "%s:%d: %s" (file-relative-name file gradients-build--project) line
                     (gradients-header-without-value-message bare))))))))
  (org-element-map tree 'src-block
    (lambda (element)
      (let ((bare (gradients-header-names-without-value
                   (mapconcat #'identity
                              (delq nil (cons (org-element-property :parameters element)
                                              (org-element-property :header element)))
                              " ")
                   (org-element-property :language element))))
        (when bare
          (error "%s: %s"
                 (gradients-build--where
                  name (line-number-at-pos (org-element-property :post-affiliated element))
                  (org-element-property :name element))
                 (gradients-header-without-value-message bare)))))))

(defun gradients-build--header-setting (text)
  "For TEXT, one line, a header-args property (see
`gradients-build--header-args-regexp'): (DRAWER-P PLUS-P ARGUMENTS),
ARGUMENTS \"\" for none; else nil."
  (let ((case-fold-search t))
    (when (string-match gradients-build--header-args-regexp text)
      (list (and (match-beginning 2) t) (and (match-beginning 4) t)
            (or (match-string 3 text) "")))))

(defun gradients-build--setup-file-properties (file depth)
  "The #+PROPERTY lines Org reads from the setup FILE, those of the setup
files it names in turn (relative to it) in their place, as (TEXT FILE .
LINE); nil for a FILE Org cannot read (a folder, none).  Found by Org's
parser, so that one inside an example block is none, as for Org."
  (when (and (< depth 5) (file-regular-p file) (file-readable-p file))
    (with-temp-buffer
      ;; As Org reads it (`org-file-contents'), its coding found by Emacs:
      ;; bytes of latin-1 forced into UTF-8 stayed raw, and Org 9.6, to
      ;; hash the buffer, asked which coding to save them in.
      (insert-file-contents file)
      (setq default-directory (file-name-directory file))
      (delay-mode-hooks (org-mode))
      (let (lines)
        (org-element-map (org-element-parse-buffer) 'keyword
          (lambda (keyword)
            (let ((key (org-element-property :key keyword))
                  (value (org-element-property :value keyword)))
              (cond ((equal key "PROPERTY")
                     (push (cons (concat "#+PROPERTY: " value)
                                 (cons file (line-number-at-pos
                                             (org-element-property :begin keyword))))
                           lines))
                    ((equal key "SETUPFILE")
                     (dolist (line (gradients-build--setup-file-properties
                                    (expand-file-name (org-strip-quotes value)
                                                      (file-name-directory file))
                                    (1+ depth)))
                       (push line lines)))))))
        (nreverse lines)))))

(defun gradients-build--notes-lines ()
  "This buffer's lines as (TEXT FILE . LINE), each #+SETUPFILE replaced by
the #+PROPERTY lines Org reads from it, where it stands."
  (let ((file (buffer-file-name)) lines)
    (save-excursion
      (goto-char (point-min))
      (while (not (eobp))
        (let* ((text (buffer-substring-no-properties (line-beginning-position)
                                                     (line-end-position)))
               (element (and (string-match-p "\\`[ \t]*#\\+SETUPFILE:" text)
                             (org-element-at-point))))
          (if (and (eq (org-element-type element) 'keyword)
                   (equal (org-element-property :key element) "SETUPFILE"))
              (dolist (line (gradients-build--setup-file-properties
                             (expand-file-name (org-strip-quotes
                                                (org-element-property :value element)))
                             1))
                (push line lines))
            (push (cons text (cons file (line-number-at-pos))) lines)))
        (forward-line 1)))
    (nreverse lines)))

(defvar gradients-build--origin-readings nil
  "The notes read again without some of their lines, for the origin
search: a hash table from the lines' indexes (a list, nil for none) to an
alist of (LINE . INFO) for each source block, LINE its #+begin_src in the
notes.  One reading serves every block refused in a build.")

(defconst gradients-build--origin-limit 20
  "The most lines the origin search reads the notes again without, one
by one; past it, they are halved (`gradients-build--one-by-halving').")

(defun gradients-build--one-by-halving (moves lines)
  "One of LINES (indexes) without which alone MOVES, a function of the
indexes left out, is true: MOVES of all of them, then of either half of
those left, until one is left.  Nil when MOVES of all is false, or of
neither half: no one line alone.  A reading for each line would take
minutes of notes with hundreds of property lines; this takes a few."
  (when (funcall moves lines)
    (while (cdr lines)
      (let ((first (cl-subseq lines 0 (/ (length lines) 2)))
            (rest (nthcdr (/ (length lines) 2) lines)))
        (setq lines (cond ((funcall moves first) first)
                          ((funcall moves rest) rest)))))
    (car lines)))

(defun gradients-build--origin-reading (lines skipped project)
  "The blocks' information as Org reads LINES (a vector of (TEXT FILE .
LINE)) without those at the indexes SKIPPED, in folder PROJECT; kept in
`gradients-build--origin-readings'."
  (let ((readings (or gradients-build--origin-readings
                      (setq gradients-build--origin-readings (make-hash-table :test #'equal)))))
    (or (gethash skipped readings)
        (puthash skipped
                 (with-temp-buffer
                   (let ((default-directory project) places)
                     (dotimes (n (length lines))
                       (let ((line (aref lines n)))
                         (if (memq n skipped)
                             ;; In a property drawer a blank line would end
                             ;; the drawer: a property of no meaning instead.
                             (insert (if (car (gradients-build--header-setting (car line)))
                                         ":GRADIENTS-NONE: t"
                                       ""))
                           (insert (car line)))
                         (insert "\n")
                         (push (cdr line) places)))
                     (setq places (vconcat (nreverse places)))
                     (delay-mode-hooks (org-mode))
                     (org-element-map (org-element-parse-buffer 'element) 'src-block
                       (lambda (element)
                         (goto-char (org-element-property :post-affiliated element))
                         (cons (aref places (1- (line-number-at-pos)))
                               (org-babel-get-src-block-info 'light element))))))
                 readings))))

;; Where a value a block does not show comes from is asked of Org itself:
;; the notes are read again without each line that could have set it, and
;; the block's refusal taken again as Org merges its header there.  An
;; error about a value the block does not show would otherwise send its
;; reader to the block, which has nothing to change.  On the refusal's
;; path only.

(defun gradients-build--lines-named (lines indexes project)
  "INDEXES of LINES (see `gradients-build--origin-reading') said as the
lines they are, in their order, each once, those of one file and kind
together: \"the #+PROPERTY at README.org:4\", \"the #+PROPERTY lines at
README.org:4, 5 and 6\"."
  (let (groups)
    (dolist (n (sort (copy-sequence indexes) #'<))
      (pcase-let* ((`(,text ,file . ,line) (aref lines n))
                   (kind (if (car (gradients-build--header-setting text))
                             "header-args property"
                           "#+PROPERTY"))
                   (where (cons kind (file-relative-name file project)))
                   (group (assoc where groups)))
        (if group
            (unless (memq line (cdr group)) (nconc group (list line)))
          (push (list where line) groups))))
    (mapconcat (lambda (group)
                 (pcase-let ((`((,kind . ,file) . ,numbers) group))
                   (if (cdr numbers)
                       (format "the %s lines at %s:%s and %d" kind file
                               (mapconcat #'number-to-string (butlast numbers) ", ")
                               (car (last numbers)))
                     (format "the %s at %s:%d" kind file (car numbers)))))
               (nreverse groups)
               ;; "lines at README.org:4 and 5, and the property at ...":
               ;; the groups apart from the numbers of one of them.
               (if (cl-some #'cddr groups) ", and " " and "))))

(defconst gradients-build--merged-keys '(:results :exports :var)
  "The header arguments whose value Org merges from every level (words of
:results and :exports, each :var), where a block's own sets only part:
for the others, a block's own value is wholly its own, and no other
line is its origin.")

(defun gradients-build--header-origin (block key check said &optional partner)
  "The lines of the notes or of a setup file without which the refusal
SAID of CHECK (a function of a block, which signals it) would not be said
of BLOCK at all: \"because of the #+PROPERTY at FILE:LINE\", or \"the
header-args property at FILE:LINE\", one that sets KEY or one without
`+' that dropped the notes' own.  When no one line alone is, the fewest
of the lines that give KEY the value the block has that together are
\(two lines giving the same value).  Without such a line the block is
refused no more, or its value of KEY is another (a heading's :timeout
over the file's).  Nil when there are none (the block's own header,
unless Org merges KEY, `gradients-build--merged-keys'; Org's defaults),
or when it cannot tell.  SAID is what CHECK said of
BLOCK as the build read it.  With PARTNER, the block CHECK compares BLOCK
with (the first of its file), the difference between the two is refused:
a line is its origin only if the refusal goes without it; where BLOCK's
value is its own, only a heading's drawer that sets PARTNER apart (one
whose section does not hold BLOCK) is, and a line both share is not."
  (condition-case nil
      (gradients-build--creating-no-folders
       (let ((own (and (not (memq key gradients-build--merged-keys))
                       (let ((element (plist-get block :element)))
                         (cl-some (lambda (header)
                                    (assq key (org-babel-parse-header-arguments header t)))
                                  (delq nil (cons (org-element-property :parameters element)
                                                  (org-element-property :header element))))))))
       (unless (and own (not partner))
         (let* ((lines (vconcat (gradients-build--notes-lines)))
                (target (cons (buffer-file-name) (plist-get block :line)))
                (project default-directory)
                (name (concat (regexp-quote (symbol-name key)) "\\_>"))
                (value (cdr (assq key (nth 2 (plist-get block :info)))))
                setters candidates)
           ;; Those that set KEY (to the block's value: the setters), or
           ;; drop what came before.
           (cl-loop for n from (1- (length lines)) downto 0
                    for (_drawer plus arguments) = (gradients-build--header-setting
                                                    (car (aref lines n)))
                    for sets = (and arguments (let ((case-fold-search t))
                                                (string-match-p name arguments)))
                    when (and sets (equal (cdr (assq key (ignore-errors
                                                           (org-babel-parse-header-arguments
                                                            arguments t))))
                                          value))
                    do (push n setters)
                    when (and arguments (or sets (not plus))
                              (or (not own)
                                  (gradients-build--drawer-apart-p (aref lines n) block)))
                    do (push n candidates))
           (setq candidates (nreverse candidates))
           (cl-flet ((moved (skipped)
                            ;; Whether, read without the lines SKIPPED, the block
                            ;; is refused no more, or refused for another value of
                            ;; KEY (not for the same value, of which a line
                            ;; without it took only a word Org merges, :results
                            ;; drawer beside the refused table).
                            (let* ((reading (gradients-build--origin-reading lines skipped project))
                                   (info (cdr (assoc target reading))))
                              (and info
                                   (let ((now (condition-case err
                                                  (progn (funcall check
                                                                  (plist-put
                                                                   (plist-put (copy-sequence block)
                                                                              :info info)
                                                                   :reading reading))
                                                         nil)
                                                (error (error-message-string err)))))
                                     (or (null now)
                                         (and (not partner)
                                              (not (equal now said))
                                              (not (equal (cdr (assq key (nth 2 info))) value)))))))))
             (unless (moved nil)
               (let ((alone (if (<= (length candidates) gradients-build--origin-limit)
                                (cl-loop for n in candidates
                                         when (moved (list n)) return n)
                              (gradients-build--one-by-halving #'moved candidates))))
                 (cond
                  (alone (concat "because of "
                                 (gradients-build--lines-named lines (list alone) project)))
                  ((and (cdr setters) (<= (length setters) gradients-build--origin-limit)
                        (moved setters))
                   ;; The fewest: each kept only if without it (and those
                   ;; kept so far) taken out the refusal still moves.
                   (let ((needed setters))
                     (dolist (n setters)
                       (when (moved (remq n needed))
                         (setq needed (remq n needed))))
                     (concat "because of "
                             (gradients-build--lines-named lines needed project))))))))))))
    (error nil)))

(defun gradients-build--drawer-apart-p (line block)
  "Whether LINE, (TEXT FILE . LINE) of `gradients-build--notes-lines', is
in the property drawer of a heading of the notes whose section does not
hold BLOCK: what it sets, BLOCK does not share."
  (pcase-let ((`(,text ,file . ,number) line))
    (and (car (gradients-build--header-setting text))
         (equal file (buffer-file-name))
         (save-excursion
           (goto-char (point-min))
           (forward-line (1- number))
           (and (ignore-errors (org-back-to-heading t) t)
                (let ((start (point))
                      (end (save-excursion (org-end-of-subtree t t) (point)))
                      (place (marker-position (plist-get block :marker))))
                  (not (and (<= start place) (< place end)))))))))

(defun gradients-build--as-read (block reading)
  "BLOCK with its information as in READING, the notes read again without
some lines (`gradients-build--origin-reading'), when it is there: a check
that compares a block with another (the first of its file) sees both as
read without those lines."
  (let ((info (and reading
                   (cdr (assoc (cons (buffer-file-name) (plist-get block :line)) reading)))))
    (if info (plist-put (copy-sequence block) :info info) block)))

(defun gradients-build--keys-refused (said block)
  "The header arguments of BLOCK that the refusal SAID names as what is
wrong, in its order: any of them may be where it comes from (the block's
own :tangle beside the :mkdirp no a property gives it).  Not one its
advice names, after its first \": \" (\"add :tangle no\"): that is what to
change, not why."
  (let* ((params (nth 2 (plist-get block :info)))
         (prefix (concat (plist-get block :where) ": "))
         (said (if (string-prefix-p prefix said) (substring said (length prefix)) said))
         (said (if (string-match ": " said) (substring said 0 (match-beginning 0)) said))
         (start 0) found)
    (while (string-match "\\(?:\\`\\|[ (]\\)\\(:[a-z][a-z0-9-]*\\)\\_>" said start)
      (let ((key (intern (match-string 1 said))))
        (when (and (assq key params) (not (memq key found)))
          (push key found)))
      (setq start (match-end 1)))
    (nreverse found)))

(defun gradients-build--naming-header-origin (block key check &optional partner)
  "Call CHECK, a function of a block, on BLOCK.  A refusal that names the
header argument KEY (when nil, each it names in turn,
`gradients-build--keys-refused') is said with the lines it comes from
other than BLOCK's own header (`gradients-build--header-origin'), or,
for a CHECK that compares BLOCK with PARTNER, of either's.  Every check
of one block's header goes through here."
  (condition-case err
      (funcall check block)
    (error
     (let* ((said (error-message-string err))
            (keys (if key
                      (and (string-match-p (concat (regexp-quote (symbol-name key)) "\\_>") said)
                           (list key))
                    (gradients-build--keys-refused said block)))
            (origin (cl-some (lambda (key)
                               (gradients-build--header-origin block key check said partner))
                             keys)))
       (if origin
           (error "%s (%s)" said origin)
         (signal (car err) (cdr err)))))))

(defconst gradients-build--picture-extensions
  (mapcar (lambda (type) (symbol-name (car type)))
          (json-read-file (expand-file-name "pictures.json" gradients-build-directory)))
  "What a :file may end in: the pictures the kernel bridge can write, as
tools/pictures.json lists them for both.")

(defun gradients-build--check-picture (block)
  "Fail on a :file the bridge cannot draw.  Return BLOCK's picture as an
output path, or nil."
  (let* ((where (plist-get block :where))
         (file (cdr (assq :file (nth 2 (plist-get block :info))))))
    (when (stringp file)
      (when (string-empty-p (string-trim file))
        (error "%s: :file is given an empty name; name a picture under images/" where))
      (unless (member (downcase (or (file-name-extension file) ""))
                      gradients-build--picture-extensions)
        (error "%s: :file %s is not a picture the build can draw; end it in .%s"
               where file (mapconcat #'identity gradients-build--picture-extensions " or .")))
      (gradients-build-output-path file :file where))))

(defun gradients-build--claim-output (claimed block key relative)
  "Note in CLAIMED, a hash table of the outputs of the blocks before
BLOCK by `gradients-build--same-file-key', that BLOCK's header KEY
(:tangle or :file) writes the output RELATIVE.  Fail when one of them
writes that file already, or one some disks would take for it: a second
picture would silently replace the first, a picture and a tangled file
would overwrite each other.  Only blocks that tangle into one file, under
one spelling, share it."
  (let* ((same (gradients-build--same-file-key relative))
         (name (cdr (assq key (nth 2 (plist-get block :info)))))
         (where (plist-get block :where))
         (earlier (gethash same claimed)))
    (pcase earlier
      ('nil (puthash same (list relative key block) claimed))
      (`(,_ :file ,first)
       (let ((spelled (cdr (assq :file (nth 2 (plist-get first :info)))))
             (as-spelled (lambda (file)
                           (file-relative-name (expand-file-name file gradients-build--project)
                                               gradients-build--project))))
         ;; One of the two a symbolic link to the other's file.
         (error "%s: %s %s is drawn already by %s%s; give each output its own file"
                where key name (plist-get first :where)
                (cond ((not (equal (funcall as-spelled spelled) relative))
                       (format " (its :file %s leads to %s)" spelled relative))
                      ((not (equal (funcall as-spelled name) relative))
                       (format " (%s leads to %s)" name relative))
                      (t "")))))
      (`(,other :tangle ,first)
       (cond ((eq key :file)
              (error "%s: :file %s is tangled already by %s; give each output its own file"
                     where name (plist-get first :where)))
             ((not (equal other relative))
              (error "%s: :tangle %s and %s, tangled by %s, differ only by case or accents, which some disks do not tell apart"
                     where name other (plist-get first :where))))))))

(defun gradients-build--check-how-it-runs (block)
  "Fail on a header that asks a block the build runs to run otherwise
than the build runs every block.  :dir: its kernel works in the notes'
folder, where every relative path leads, whatever a block asks.  :cache
yes: Org would skip the block on a fresh kernel whenever its code is
unchanged, and the blocks after it miss what it defines.  :eval query:
Org would ask before running it, and a batch build has no one to ask."
  (let ((params (nth 2 (plist-get block :info))))
    (when (gradients-build--runs-p block)
      (when (cdr (assq :dir params))
        (error "%s: :dir %s is not followed by the kernel, which runs every block in the notes' folder; use paths relative to it"
               (plist-get block :where) (cdr (assq :dir params))))
      (when (equal (cdr (assq :eval params)) "query")
        (error "%s: :eval query makes Org ask before each run, and a build has no one to ask; use :eval yes, or :eval no to keep the block from running"
               (plist-get block :where)))
      (when (equal (cdr (assq :cache params)) "yes")
        (error "%s: :cache yes would make Org skip the block when its code is unchanged, but `make run' runs every block on a fresh kernel, and the blocks after it need what it defines; drop the :cache"
               (plist-get block :where))))))

(defun gradients-build--check-as-tangled (block run-files)
  "Fail on a block that gradients.py would run and the build would not:
one whose :eval keeps it from running, tangled all the same; or a block
of another language tangled (its :tangle-file, found by the checks) into
one of RUN-FILES, the files the blocks the build runs are tangled into
\(by `gradients-build--same-file-key').
The kernel runs what gradients.py holds, so `make test' compares the two."
  (let ((params (nth 2 (plist-get block :info))))
    (unless (or (plist-get block :left-out) (gradients-build--runs-p block)
                (member (cdr (assq :tangle params)) '(nil "no")))
      (if (equal (plist-get block :language) "jupyter-python")
          (error "%s: %s, yet it is tangled into %s, which would run it: add :tangle no, or let it run"
                 (plist-get block :where) (gradients-build--not-run block)
                 (cdr (assq :tangle params)))
        (let ((file (plist-get block :tangle-file)))
          (when (and file (member (gradients-build--same-file-key file) run-files))
            (error "%s: it is %s, which the build does not run, yet it is tangled into %s with the blocks the build runs, so that file would run code the kernel never ran; tangle it into a file of its own, or add :tangle no"
                   (plist-get block :where) (plist-get block :language) file)))))))

(defun gradients-build--check-session (block first)
  "Fail on BLOCK, a block the build runs and tangles, when its :session
is not that of FIRST, the first such block tangled into the same file: a
tangled file runs in one module what Org would run on two kernels apart."
  (let ((session (cdr (assq :session (nth 2 (plist-get block :info)))))
        (notes (cdr (assq :session (nth 2 (plist-get first :info))))))
    (unless (equal session notes)
      (error "%s: :session %s is not the session of the blocks tangled with it (%s, from block %s at line %d), and their file runs in one module what two kernels ran apart: drop the :session, or add :tangle no"
             (plist-get block :where) session notes
             (if (plist-get first :name) (format "`%s'" (plist-get first :name)) "(unnamed)")
             (plist-get first :line)))))

(defun gradients-build--check-tangle-mode (block)
  "Fail on BLOCK's :tangle-mode when the Org that runs reads no file mode
in it: Org 9.5 takes a number (`(identity #o644)'), and failed on
`o644', the spelling of 9.6 and after, with a bare type error as it
tangled."
  (let ((mode (cdr (assq :tangle-mode (nth 2 (plist-get block :info))))))
    ;; Lisp, such as (identity #o644), is Org's to evaluate as it tangles.
    (when (and mode
               (not (gradients-build--lisp-value-p mode))
               (not (integerp (if (fboundp 'org-babel-interpret-file-mode)
                                  (ignore-errors (org-babel-interpret-file-mode mode))
                                mode))))
      (error "%s: :tangle-mode %s is no file mode Org %s reads%s"
             (plist-get block :where) mode (org-version)
             (if (fboundp 'org-babel-interpret-file-mode) ""
               ", which takes a number, such as (identity #o644)")))))

(defun gradients-build--check-one-block (block)
  "Fail on BLOCK when a line of its code opens a source block unescaped:
a block whose #+end_src is missing runs on to the next block's, which
Org then reads as code of the first.  Org escapes such a line of code
with a comma, and GitHub's renderer would take an unescaped one for a
block of its own."
  (save-excursion
    ;; From the line after its #+begin_src to its #+end_src.
    (goto-char (plist-get block :marker))
    (forward-line 1)
    (let ((case-fold-search t)
          (end (org-element-property :end (plist-get block :element))))
      (when (re-search-forward "^[ \t]*#\\+begin_src\\b" end t)
        (error "%s: its code holds an unescaped #+begin_src, at line %d: if the block before it lacks its #+end_src, add it (Org reads both blocks as one); if it is code, escape it as Org does, ,#+begin_src"
               (plist-get block :where) (line-number-at-pos))))))

(defun gradients-build--swallowed-names (blocks)
  "The names, in lower case, on unescaped #+name lines in the code of
those BLOCKS whose code holds an unescaped #+begin_src: of blocks one
of them swallowed, its #+end_src missing.  That
one is said (`gradients-build--check-one-block'); the #+RESULTS lines of
the blocks it swallowed follow from it, and are not said too."
  (let ((names (make-hash-table :test #'equal))
        (case-fold-search t))
    (save-excursion
      (dolist (block blocks)
        (goto-char (plist-get block :marker))
        (forward-line 1)
        (let ((end (org-element-property :end (plist-get block :element))))
          (when (save-excursion (re-search-forward "^[ \t]*#\\+begin_src\\b" end t))
            (while (re-search-forward "^[ \t]*#\\+name:[ \t]*\\(.*?\\)[ \t]*$" end t)
              (puthash (downcase (match-string 1)) t names))))))
    names))

(defun gradients-build--named-block (name blocks)
  "The block of BLOCKS named NAME, in any case, as Org finds it; or nil."
  (cl-find-if (lambda (block)
                (let ((own (plist-get block :name)))
                  (and own (string= (downcase own) (downcase name)))))
              blocks))

(defun gradients-build--check-what-it-uses (block blocks)
  "Fail on what BLOCK, a block the build runs, takes from blocks the build
does not run.  A :var naming one makes Org run it there, though
gradients.py holds none of it; a noweb reference to one under a COMMENT
heading, or to no block at all, is left out by Org as nothing, in the
run and in gradients.py alike."
  (when (gradients-build--runs-p block)
    (dolist (pair (nth 2 (plist-get block :info)))
      (when (and (eq (car pair) :var) (stringp (cdr pair))
                 (string-match "\\`[ \t]*\\([^= \t]+\\)[ \t]*=[ \t]*\\([^\"'(0-9 \t.-][^([ \t]*\\)"
                               (cdr pair)))
        (let* ((variable (match-string 1 (cdr pair)))
               (name (match-string 2 (cdr pair)))
               (written (string-trim (substring (cdr pair) (match-beginning 2))))
               (named (gradients-build--named-block name blocks)))
          (cond
           ((null named))
           ((and (equal (plist-get named :language) "jupyter-python")
                 (not (gradients-build--runs-p named)))
            (error "%s: :var %s=%s names block `%s' (line %d), which the build does not run, as %s; Org would run it for the :var all the same, though gradients.py holds none of it"
                   (plist-get block :where) variable written (plist-get named :name)
                   (plist-get named :line) (gradients-build--not-run named)))
           (t
            (error "%s: :var %s=%s names block `%s' (line %d), which Org would run again for its value each time it reads this header, tangling too, out of the notes' order, and write the value into gradients.py as a constant; compute it in this block's code instead"
                   (plist-get block :where) variable written (plist-get named :name)
                   (plist-get named :line)))))))
    ;; Org says of a reference it cannot resolve only if asked to.  As
    ;; tangled too: under :noweb tangle, the run reads none.
    (let ((org-babel-noweb-error-all-langs t))
      (condition-case failure
          (progn
            (gradients-build--code block)
            ;; Its :var values, read as Org reads them as the block runs:
            ;; one Org would run a block for (in another file, in another
            ;; language) is refused there.
            (when (assq :var (nth 2 (plist-get block :info)))
              (save-excursion
                (goto-char (plist-get block :marker))
                (org-babel-process-params (copy-tree (nth 2 (plist-get block :info))))))
            (when (org-babel-noweb-p (nth 2 (plist-get block :info)) :tangle)
              (save-excursion
                (goto-char (plist-get block :marker))
                (org-babel-expand-noweb-references (plist-get block :info)))))
        (error
         (let ((said (error-message-string failure)))
           (error (if (string-prefix-p gradients-run-for-value-refused said)
                      "%s: %s"
                    "%s: %s: no block the build runs has that name (one under a COMMENT heading is left out); Org would put nothing in its place")
                  (plist-get block :where)
                  (replace-regexp-in-string " (see .*)\\'" "" said))))))
    (when (gradients-build--tangled-p block)
      (gradients-build--check-tangled-as-run block))))

(defun gradients-build--check-tangled-as-run (block)
  "Fail on BLOCK, which the build runs and tangles, when Org would tangle
other code than it runs: the kernel's results and pictures would then
come from code gradients.py does not hold, and `make test' import code
no block ran.  Org reads a block for each on its own terms: its noweb
references under :noweb eval, tangle or strip-tangle, its code
references without -r, its :var under :no-expand.  The code compared is
what each gets from Org itself, with the :var assignments both add."
  (let* ((info (plist-get block :info))
         (params (nth 2 info))
         (comparable (lambda (code) (org-trim (org-remove-indentation code))))
         (run (funcall comparable
                       (org-babel-expand-body:generic
                        (gradients-build--code block) (gradients-build--params block)
                        (gradients-variable-assignments (gradients-build--params block)))))
         (tangled (funcall comparable
                           (save-excursion
                             (goto-char (plist-get block :marker))
                             ;; The block's spec: its code is the sixth.
                             (nth 5 (gradients-build--creating-no-folders
                                     (org-babel-tangle-single-block 1)))))))
    (unless (equal run tangled)
      (let* ((run-lines (split-string run "\n"))
             (tangled-lines (split-string tangled "\n"))
             (at (or (cl-mismatch run-lines tangled-lines :test #'equal) 0))
             (noweb (cdr (assq :noweb params)))
             (shown (lambda (line) (if line (format "`%s'" (truncate-string-to-width line 60 nil nil "...")) "nothing"))))
        (error "%s: Org would tangle other code than it runs%s: its line %d runs as %s, and %s gets %s; make the two the same"
               (plist-get block :where)
               (cond ((equal noweb "strip-tangle")
                      " (under :noweb strip-tangle it expands the noweb references as it runs the block and takes them out as it tangles it)")
                     ((and (org-babel-noweb-p params :eval) (not (org-babel-noweb-p params :tangle)))
                      (format " (under :noweb %s it expands the noweb references as it runs the block, not as it tangles it)" noweb))
                     ((and (org-babel-noweb-p params :tangle) (not (org-babel-noweb-p params :eval)))
                      (format " (under :noweb %s it expands the noweb references as it tangles the block, not as it runs it)" noweb))
                     ((assq :no-expand params)
                      " (under :no-expand it tangles the block without the assignments of its :var)")
                     ((and (nth 6 info) (not (string-match-p "-r" (or (nth 3 info) ""))))
                      " (it takes the code references out as it runs the block, and keeps them as it tangles it without -r)")
                     (t ""))
               (1+ at) (funcall shown (nth at run-lines))
               (plist-get block :tangle-file) (funcall shown (nth at tangled-lines)))))))

(defun gradients-build--check-results (block)
  "Fail on every way Org would record BLOCK's result otherwise than as the
drawer text it produced, in a drawer it replaces whole on the next run
\(`gradients-result-recorded-otherwise'): `make test' compares the two,
and would fail after every `make run'; or each `make run' would add the
result once more; or the next build would run what it recorded.  And on
a block inside a drawer, where its results drawer would end the outer."
  (let* ((params (nth 2 (plist-get block :info)))
         (results (split-string (or (cdr (assq :results params)) "")))
         (where (plist-get block :where))
         (results-line (car (plist-get block :results-lines))))
    (when (and results-line (not (plist-get block :left-out))
               (gradients-build--left-out-at
                (save-excursion (goto-char (point-min))
                                (line-beginning-position results-line))))
      (error "%s: its #+RESULTS (line %d) is under a COMMENT or archived heading, which GitHub hides or Org leaves out, apart from the block: move it after the block"
             where results-line))
    (pcase (gradients-result-recorded-otherwise results params)
      (`(over-picture ,_)
       (error "%s: :results file would make Org write the link over the picture; drop `file', :file alone draws it"
              where))
      (`(raw ,_)
       (error "%s: :results raw outside a drawer has no end Org can find, so each run would add it again; use :results raw drawer"
              where))
      (`(code ,_)
       (error "%s: :results code would record the result as a source block, which the build would run and tangle; use :results drawer"
              where))
      (`(adding ,word)
       (error "%s: :results %s would add the result beside the last one on every run instead of replacing it; drop `%s'"
              where word word))
      (`(wrapped ,wrap)
       (error "%s: :wrap %s would record the result in a #+begin_%s block, not in the drawer the next build reads it back from (and a source block there would be run and tangled); drop the :wrap"
              where wrap (car (split-string wrap))))
      (`(reshaped ,word)
       (error "%s: :results %s would make Org record the result reshaped, not as the text the block produced, which `make test' compares it with; use :results drawer"
              where word))
      (`(named-file ,_)
       (error "%s: :results file without a :file would record a link to a file named by the block's output; give the block a :file to draw a picture"
              where))
      (`(undrawn ,word)
       (error "%s: :results %s without `drawer' makes Org write the block's text, lines already fixed-width, as fixed-width lines of its own (`: : 20.0'); use :results raw drawer, as the notes' #+PROPERTY does (a header-args property without `+' replaces it)"
              where word))
      ;; The link to the picture the block drew is its result.
      (`(linked ,_) nil))
    (let ((silent (car (cl-intersection '("silent" "none") results :test #'equal))))
      (when (and silent results-line)
        (error "%s: its #+RESULTS (line %d) is never updated, as :results %s writes no result, so nothing checks it; remove it, or drop `%s'"
               where results-line silent silent))
      (when (cdr (assq :post params))
        (error "%s: :post %s would record what another block makes of the result, which `make tangle' and `make test' never run; drop the :post, and do it in this block's code"
               where (cdr (assq :post params))))
      (unless silent
        ;; Org nests no drawer in another: the first :end: closes both.
        (let ((drawer (org-element-lineage (plist-get block :element)
                                           '(drawer property-drawer))))
          ;; A drawer named END is an :end: that closes no drawer,
          ;; said as such (`gradients-build--stray-drawer-ends').
          (when (and drawer (not (gradients-build--stray-end-p drawer)))
            (error "%s: is inside the drawer :%s:, where its results drawer would end the outer one, and the next build find both unclosed; move the block out of the drawer"
                   where (or (org-element-property :drawer-name drawer) "PROPERTIES"))))))))

(defun gradients-build--check-tangle (block)
  "Fail on a :tangle that may not be an output, or whose folder is
missing where the block forbids making it; return BLOCK's file, or nil."
  (let* ((params (nth 2 (plist-get block :info)))
         (tangle (cdr (assq :tangle params))))
    (when (and (stringp tangle) (not (equal tangle "no")))
      (let* ((name (if (equal tangle "yes")
                       (concat (file-name-sans-extension (buffer-file-name)) "."
                               (or (cdr (assoc (plist-get block :language)
                                               org-babel-tangle-lang-exts))
                                   (plist-get block :language)))
                     tangle))
             (relative (gradients-build-output-path name :tangle (plist-get block :where))))
        ;; Found by probing: Python text written into images/plot.png.
        (when (member (downcase (or (file-name-extension relative) ""))
                      gradients-build--picture-extensions)
          (error "%s: :tangle %s names a picture, which would hold the block's code; tangle into a file of code"
                 (plist-get block :where) tangle))
        ;; Org makes the folder only when :mkdirp is given, and not as no:
        ;; the build's tangling, into its own scratch folder, made it
        ;; where `org-babel-tangle' failed.
        (let ((mkdirp (cdr (assq :mkdirp params))))
          (when (and (member mkdirp '(nil "no"))
                     (not (file-directory-p
                           (file-name-directory
                            (expand-file-name relative gradients-build--project)))))
            (error (if mkdirp
                       "%s: :tangle %s goes in a folder that does not exist, and :mkdirp no forbids making it"
                     "%s: :tangle %s goes in a folder that does not exist, which Org makes only under :mkdirp yes; add it, or make the folder")
                   (plist-get block :where) tangle)))
        relative))))

(defconst gradients-build-lint-checkers
  '(invalid-block incomplete-drawer duplicate-name invalid-babel-call-block
    non-existent-setupfile-parameter wrong-header-value)
  "The checkers of `org-lint' whose reports stop the build: a block or
drawer Org reads as plain text (its code would neither run nor be
tangled), a name two blocks share (Org gives a named result and a
:var naming it to the first only), a #+SETUPFILE that is not there
(Org says it cannot read it, and builds without its settings), and a
header argument's value Org does not know (`:results silient', `:eval
noo'), which Org ignores: the block ran, and its result was written.")

(defun gradients-build--stray-end-p (drawer)
  "Whether DRAWER, as Org parses it, is an :end: that closes no drawer:
Org reads one as the start of a drawer named END."
  (equal (downcase (or (org-element-property :drawer-name drawer) "")) "end"))

(defun gradients-build--stray-drawer-ends ()
  "The :end: lines that close no drawer as Org parses the notes, each a
list (LINE OPENER), OPENER the line number of the nearest line above it,
in the same run of lines, that begins as a drawer does but holds more
than :NAME: (a drawer's first line written on), or nil.  Org reads such
an :end: as the start of a drawer named END, closed by the next :end:,
or, with none after it, as text; `org-lint' reports a later drawer,
often a sound one, as lacking its :end:."
  (let (lines)
    (org-element-map (org-element-parse-buffer) '(drawer paragraph)
      (lambda (element)
        (save-excursion
          (goto-char (org-element-property :begin element))
          (if (eq (org-element-type element) 'drawer)
              (when (gradients-build--stray-end-p element)
                (push (line-beginning-position) lines))
            (let ((case-fold-search t)
                  (end (org-element-property :end element)))
              (while (re-search-forward "^[ \t]*:end:[ \t]*$" end t)
                (push (line-beginning-position) lines)))))))
    (mapcar (lambda (start)
              (save-excursion
                (goto-char start)
                (let ((run-start (save-excursion
                                   (if (re-search-backward "^[ \t]*$" nil t) (point) (point-min)))))
                  (list (line-number-at-pos start)
                        (and (re-search-backward "^[ \t]*:[-_[:word:]]+:[ \t]*\\S-" run-start t)
                             (line-number-at-pos))))))
            (sort lines #'<))))

(defun gradients-build--check-with-org-lint ()
  "Note every report of `gradients-build-lint-checkers', in the build's
words; an :end: that closes no drawer in place of `org-lint's guess of
which drawer lacks one."
  (require 'org-lint)
  (let ((stray (gradients-build--stray-drawer-ends)))
    (pcase-dolist (`(,line ,opener) stray)
      (gradients-build--noting-problem line
        (gradients-build--fail-at
         line "this :end: closes no drawer, so Org reads the drawer as plain text%s"
         (if opener
             (format ": the drawer's first line, %d, holds more than its :NAME: alone" opener)
           ": begin the drawer with a line holding its :NAME: alone, or remove the :end:"))))
    (dolist (report (gradients-build--org-lint gradients-build-lint-checkers))
      (unless (and stray (eq (org-lint-checker-name (aref (cadr report) 3)) 'incomplete-drawer))
        (gradients-build--report-of-org-lint report)))))

(defconst gradients-build--values-org-reads
  '((":eval" . "query-export") (":noweb" . "eval"))
  "Header values Org reads, and documents, that its table of values,
which `org-lint' checks them against, lacks.")

(defconst gradients-build--combinations-org-runs
  '((":results" "drawer" "raw") (":results" "scalar" "verbatim"))
  "Values of one header argument, sorted, that Org's table of values sets
apart, and `org-lint' reports together, but Org runs with all the same,
each doing its part (`:results raw drawer': the text as it is, in a
drawer), or as one (`scalar' and `verbatim' both keep a value from
becoming a table).  Other such pairs Org resolves to one of the two in silence
\(`:results output value').")

(defun gradients-build--lisp-value-p (value)
  "Whether Org evaluates VALUE, a header argument's value as written,
as Lisp when it reads it (`org-babel-read')."
  (and (stringp value)
       (or (string-match-p "\\`[('`[]" value)
           (equal value "*this*"))))

(defun gradients-build--org-lint (checkers)
  "The reports of `org-lint's CHECKERS on the current buffer, but those
the build does not take for problems.  A header's value that is Lisp is
neither evaluated nor checked: `org-lint' would run it (a `(progn ...)'
that makes a folder) as it reads the value, in a build that may yet
refuse the notes having changed nothing; Org evaluates it as the block
runs.  Nor are the pairs of `gradients-build--combinations-org-runs',
nor the values of `gradients-build--values-org-reads'."
  (let* ((parse (symbol-function 'org-babel-parse-header-arguments))
         (reports (cl-letf (((symbol-function 'org-babel-parse-header-arguments)
                             (lambda (string &rest _)
                               (cl-remove-if (lambda (header)
                                               (gradients-build--lisp-value-p (cdr header)))
                                             (funcall parse string t)))))
                    (org-lint checkers))))
    (cl-remove-if
     (lambda (report)
       (let ((description (aref (cadr report) 2)))
         (cond
          ((string-match "\\`Forbidden combination in header \"\\(:[^\"]*\\)\": \\(.*\\)"
                         description)
           (member (cons (match-string 1 description)
                         (sort (split-string (match-string 2 description) ", ") #'string<))
                   gradients-build--combinations-org-runs))
          ((string-match "\\`Unknown value \"\\(.*\\)\" for header \"\\(:[^\"]*\\)\""
                         description)
           (member (cons (match-string 2 description) (match-string 1 description))
                   gradients-build--values-org-reads)))))
     reports)))

(defun gradients-build--report-of-org-lint (report)
  "Note REPORT, one of `org-lint', in the build's words."
  (let* ((fields (cadr report))
         (line (string-to-number (aref fields 0)))
         (description (aref fields 2))
         (quoted (and (string-match "\"\\(.*\\)\"" description)
                      (match-string 1 description))))
    (gradients-build--noting-problem line
      (gradients-build--fail-at
       line "%s"
       (pcase (org-lint-checker-name (aref fields 3))
         ((and 'invalid-block
               (guard (and quoted (string-match "\\`#\\+begin_\\(\\S-+\\)" quoted))))
          (format "#+begin_%s has no #+end_%s; Org reads it as plain text, so its code would neither run nor be tangled"
                  (match-string 1 quoted) (match-string 1 quoted)))
         ((and 'incomplete-drawer (guard quoted))
          (format "drawer %s has no :end:; Org reads it as plain text" quoted))
         ((and 'non-existent-setupfile-parameter (guard quoted))
          (format "#+SETUPFILE names %s, which is not there; Org would build without its settings"
                  quoted))
         ((and 'wrong-header-value
               (guard (string-match "\\`Unknown value \"\\(.*\\)\" for header \"\\(:[^\"]*\\)\""
                                    description)))
          (format "%s %s is a value Org does not know, and ignores (a typo?)"
                  (match-string 2 description) (match-string 1 description)))
         ((and 'duplicate-name (guard quoted))
          (format "the name `%s' is given to more than one block; Org would give its result, and a :var naming it, to the first only: give each its own"
                  quoted))
         (_ description))))))

(defun gradients-build--check-what-org-runs (blocks)
  "Note what Org would run or show that the build cannot keep current,
as Org parses it (text inside a fixed-width result or an example block
is no call): a #+CALL line, an inline block, a link to a picture an
interactive run saved, and a result saved while it still waited for the
kernel."
  (let ((tree (org-element-parse-buffer)))
    ;; With the affiliated keywords: Org runs an inline block in a
    ;; #+caption as it runs one in a paragraph.
    (org-element-map tree '(babel-call inline-babel-call inline-src-block link headline keyword)
                     (lambda (datum)
                       (let ((line (line-number-at-pos (org-element-property :begin datum))))
                         (gradients-build--noting-problem line
                           (pcase (org-element-type datum)
                             ('babel-call
                              (gradients-build--fail-at line "a #+CALL line is not run by the build, so its result would go stale; use a source block"))
                             ('inline-babel-call
                              (gradients-build--fail-at line "an inline call (call_%s) is not run by the build, so its result would go stale; use a source block"
                                                        (org-element-property :call datum)))
                             ('inline-src-block
                              (gradients-build--fail-at line "an inline source block is not run by the build, so its result would go stale; use a source block"))
                             ;; GitHub's renderer hides a section as Org does only
                             ;; when COMMENT follows the stars or a TODO keyword,
                             ;; and a title follows it.
                             ('headline
                              (when (and (org-element-property :commentedp datum)
                                         (or (org-element-property :priority datum)
                                             (string-empty-p (org-element-property :raw-value datum))))
                                (gradients-build--fail-at line "this COMMENT heading is left out by Org, blocks and all, but GitHub shows it (%s): put COMMENT before the priority, and a title after it"
                                                          (if (org-element-property :priority datum)
                                                              "COMMENT after a priority cookie"
                                                            "COMMENT with no title"))))
                             ;; Read as the notes' other inputs are, were it
                             ;; theirs: the kept run is keyed on the project's
                             ;; files, and this one would change unseen.
                             ('keyword
                              (let ((value (org-strip-quotes (org-element-property :value datum))))
                                (when (equal (org-element-property :key datum) "SETUPFILE")
                                  (cond
                                   ((or (org-url-p value)
                                        (not (gradients-file-inside-p
                                              (expand-file-name value)
                                              gradients-build--project)))
                                    (gradients-build--fail-at
                                     line "#+SETUPFILE %s is outside the notes' folder, where the build would not see it change; keep it in the checkout"
                                     value))
                                   ;; One not there at all is org-lint's to say.
                                   ((file-directory-p (expand-file-name value))
                                    (gradients-build--fail-at
                                     line "#+SETUPFILE %s is a folder, which Org cannot read settings from; name a file"
                                     value))))))
                             ('link
                              (let ((path (org-element-property :path datum)))
                                (when (and (equal (org-element-property :type datum) "file")
                                           (gradients-build--saved-picture-p path))
                                  (gradients-build--fail-at
                                   line "%s is a picture saved by an interactive run, which GitHub cannot show; give its block a :file under images/"
                                   path))))))))
                     nil nil nil t)
    (let ((names (make-hash-table :test #'equal)))
      (dolist (block blocks)
        (let ((name (plist-get block :name)))
          (when name
            (push block (gethash (downcase name) names)))))
      ;; Org finds a named result whatever the case of its name: two names
      ;; that differ only in case are one (exact twins are org-lint's).
      (maphash (lambda (_ same)
                 (when (cdr (delete-dups (mapcar (lambda (b) (plist-get b :name)) same)))
                   (dolist (block same)
                     (gradients-build--noting-problem (plist-get block :line)
                       (error "%s: its name differs only in case from another block's, and Org takes them for one: give each its own"
                              (plist-get block :where))))))
               names)
      ;; Every #+RESULTS but those Org updates, one a block, would stay
      ;; as it is: of a name no block has, a second of one that a block
      ;; has, one that follows no block.
      (let ((updated (make-hash-table))
            (owners (make-hash-table :test #'equal))
            (swallowed (gradients-build--swallowed-names blocks)))
        (dolist (block blocks)
          (when (plist-get block :results-lines)
            (puthash (car (plist-get block :results-lines)) block updated)
            ;; The first block of a name, as Org finds it.
            (when (and (plist-get block :name)
                       (not (gethash (plist-get block :name) owners)))
              (puthash (plist-get block :name) block owners))))
        (org-element-map tree org-element-all-elements
          (lambda (element)
            ;; A results drawer under no #+RESULTS line (the line
            ;; removed, the drawer left): no block writes it and no check
            ;; reads it, yet a reader sees its numbers.
            (when (and (eq (org-element-type element) 'drawer)
                       (equal (downcase (org-element-property :drawer-name element)) "results")
                       (not (org-element-property :results element)))
              (let ((line (line-number-at-pos (org-element-property :post-affiliated element))))
                (gradients-build--noting-problem line
                  (gradients-build--fail-at
                   line "a results drawer under no #+RESULTS line: no block writes it and no check reads it (was its #+RESULTS line removed?); remove it"))))
            (when (org-element-property :results element)
              (let* ((name (car (org-element-property :results element)))
                     (named (and name (not (string-empty-p name))))
                     (line (save-excursion
                             (goto-char (org-element-property :begin element))
                             (let ((case-fold-search t))
                               (re-search-forward "^[ \t]*#\\+results"
                                                  (org-element-property :post-affiliated element) t))
                             (line-number-at-pos)))
                     (owner (and named (gethash name owners))))
                (unless (or (gethash line updated)
                            (and named (gethash (downcase name) swallowed)))
                  (gradients-build--noting-problem line
                    (cond
                     ((and named (not (gethash (downcase name) names)))
                      (gradients-build--fail-at
                       line "#+RESULTS: %s belongs to no block (was the block renamed?); remove it with its drawer, or name it after the block"
                       name))
                     (owner
                      (gradients-build--fail-at
                       line "#+RESULTS: %s is a second result of block `%s', which Org never updates (it writes the one at line %d); remove it"
                       name name (car (plist-get owner :results-lines))))
                     (t
                      (gradients-build--fail-at
                       line "#+RESULTS%s follows no block that writes it, so Org never updates it; remove it"
                       (if named (concat ": " name) ""))))))))))))
    (dolist (block blocks)
      (let ((recorded (plist-get block :recorded)))
        (when (and recorded (string-match-p gradients--placeholder-regexp recorded))
          (let ((line (1+ (car (plist-get block :results-lines)))))
            (gradients-build--noting-problem line
              (gradients-build--fail-at
               line "the result of block %s was saved while it still waited for the kernel; run the block again, or remove the drawer"
               (if (plist-get block :name) (format "`%s'" (plist-get block :name)) "(unnamed)")))))))))

(defvar gradients-build--results-as-produced nil
  "Whether the results drawers read are what this build's run produced,
as `make run' checks them before it writes the notes; else they are as
recorded, and may be those of a block edited since.")

(defun gradients-build--check-linked-files (block picture)
  "Fail when BLOCK's recorded result links a file but PICTURE, the one
its :file draws (relative to the notes, or nil): a value shown as Org
may link any, and GitHub shows one no block draws, or one outside
images/, broken.  Fixed-width lines are text, and a picture an
interactive run saved is said so by the check of every link.  A result
recorded before its block's :file was changed links the old picture:
that is `make test''s to say (run make run), and `make run''s to mend."
  (dolist (target (gradients-build--linked-files block))
    (when (and (not (equal target picture))
               ;; The block's own picture spelled another way
               ;; (./images/x.png), which GitHub shows as well.
               (not (and picture (not (string-match-p "\\`[[:alpha:]]+:" target))
                         (equal (file-relative-name (expand-file-name target gradients-build--project)
                                                    gradients-build--project)
                                picture)))
               (or gradients-build--results-as-produced
                   (not (string-match-p gradients-build--picture-path-regexp target)))
               (not (gradients-build--saved-picture-p target)))
      (error "%s: its result links %s, which %s; a picture goes into the notes through its block's :file, under images/"
             (plist-get block :where) target
             (if picture (format "is not the picture its :file draws (%s)" picture)
               "no :file of the block draws")))))

(defun gradients-build--linked-files (block)
  "The files BLOCK's recorded result links, as written, in the order
written, read by Org's parser (fixed-width lines are text): a file link
in any of Org's forms ([[file:x]], [[./x]], <file:x>, file:x), a link
GitHub takes for a file's though Org does not ([[images/x.png]]), and a
picture at an address ([[https://.../x.png]]), which GitHub shows from
there.  A regular expression of file: and path links let the last three
through, each a broken or outside picture on GitHub."
  (let ((recorded (or (plist-get block :recorded) "")))
    (when (string-match-p "\\[\\[\\|file:\\|https?:" recorded)
      (with-temp-buffer
        (insert recorded)
        (delay-mode-hooks (org-mode))
        (let (targets)
          (org-element-map (org-element-parse-buffer) 'link
            (lambda (link)
              (let ((type (org-element-property :type link))
                    (path (org-element-property :path link))
                    (description (and (org-element-property :contents-begin link)
                                      (buffer-substring-no-properties
                                       (org-element-property :contents-begin link)
                                       (org-element-property :contents-end link)))))
                (cond
                 ((equal type "file")
                  (push (if (string-prefix-p "file:" (org-element-property :raw-link link))
                            path
                          (org-element-property :raw-link link))
                        targets))
                 ;; Org's attachments, in a folder of its own.
                 ((equal type "attachment")
                  (push (org-element-property :raw-link link) targets))
                 ((and (equal type "fuzzy") (string-match-p "/\\|\\.[[:alnum:]]+\\'" path))
                  (push path targets))
                 ((and (member type '("http" "https"))
                       (gradients-build--picture-name-p
                        (replace-regexp-in-string "[?#].*" "" path)))
                  (push (concat type ":" path) targets)))
                ;; A picture as a link's description, which Org and GitHub
                ;; show in the link's place.
                (when (and description
                           (gradients-build--picture-name-p (string-trim description)))
                  (push (replace-regexp-in-string "\\`file:" "" (string-trim description))
                        targets)))))
          (nreverse targets))))))

(defun gradients-build--picture-name-p (name)
  "Whether NAME ends as a picture's file does, which Org and GitHub show."
  (string-match-p (concat "\\.\\(?:" (regexp-opt gradients-build--picture-extensions)
                          "\\|gif\\|jpe?g\\|webp\\)\\'")
                  (downcase name)))

(defun gradients-build--check-links-of-unrun (block drawn)
  "Fail when BLOCK, which the build does not run, records a link to a
file but the pictures DRAWN by the blocks it runs: the build does not
draw it, one an earlier build drew under images/ is removed as an
output no block makes, and GitHub shows the picture broken; elsewhere,
a picture goes into the notes through a :file, as for any block.
`make test' does not check such a result."
  (let ((target (cl-find-if-not (lambda (target) (member target drawn))
                                (gradients-build--linked-files block))))
    (when target
      (error "%s: its result links %s, which the build does not draw, as it does not run the block (%s): GitHub would show it broken; remove the link, or let the block run"
             (plist-get block :where) target (gradients-build--not-run block)))))

(defconst gradients-build--compile-each "\
import ast, importlib.machinery, json, os, re, sys
asked = json.load(sys.stdin)
codes = asked['codes']

def ipython_runs(code):
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        compile(TransformerManager().transform_cell(code), '<cell>', 'exec',
                flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        return True
    except Exception:
        return False

def why(error):
    return getattr(error, 'msg', None) or str(error)

failed = set()
for index, code in enumerate(codes):
    try:
        compile(code, '<block>', 'exec', dont_inherit=True)
    except (SyntaxError, ValueError) as error:
        failed.add(index)
        if ipython_runs(code):
            print('alone', index, getattr(error, 'lineno', None) or 0, why(error), sep='\\t')

notes = os.path.realpath(asked['folder'])
path = [folder for folder in sys.path if folder and os.path.realpath(folder) != notes]
special = {'conftest', 'sitecustomize', 'usercustomize', 'setup', '__main__'}
coding = re.compile(r'^[ \\t\\f]*#.*?coding[:=][ \\t]*([-\\w.]+)')
for name, indexes in asked['files']:
    if not failed.intersection(indexes):
        starts, line = [], 1
        for index in indexes:
            starts.append(line)
            line += codes[index].count('\\n') + 2
        source = '\\n\\n'.join(codes[index] for index in indexes)
        try:
            compile(source.encode('utf-8'), name, 'exec', dont_inherit=True)
            declared = [match.group(1) for match in map(coding.match, source.split('\\n')[:2])
                        if match]
            if declared and declared[0].lower().replace('_', '-') not in ('utf-8', 'utf8'):
                raise SyntaxError(f'it declares the coding {declared[0]}, where the build '
                                  'writes UTF-8', (name, 1, 0, ''))
        except (SyntaxError, ValueError) as error:
            at = getattr(error, 'lineno', None) or 1
            first = max(number for number, start in enumerate(starts) if start <= at)
            print('together', indexes[first], at - starts[first] + 1, why(error), sep='\\t')
    stem = name[:-3]
    if '/' not in stem:
        found = (stem in special and 'a name Python or pytest reads on its own'
                 or stem in sys.builtin_module_names and 'built into Python'
                 or importlib.machinery.PathFinder.find_spec(stem, path))
        if found:
            print('module', indexes[0], name, getattr(found, 'origin', found), sep='\\t')
"
  "Python that compiles, for a JSON object on its standard input (the
blocks' CODES, the notes' FOLDER, and the FILES, each a name and the
indexes of its blocks in order), each code as a script's, then each
file's blocks together, and asks whether a file's name is a module
Python would import from elsewhere.  It prints a line for each failure,
tab-separated: alone (a block IPython runs and Python does not), its
index, line and why; together (blocks that fail only in one file), the
block's index, its line and why; module, the file's first block, its
name and where the module it hides is.  A block that fails in the
kernel too is the run's to name, with its traceback.")

(defun gradients-build--check-plain-python (tangled)
  "Note each block of TANGLED, blocks the build runs and tangles into a
Python file, whose code Python cannot run in that file: the kernel runs
IPython's own syntax (!command, %magic, top-level await), and `make run'
recorded such a block, whose gradients.py then failed every `make test'
with a SyntaxError; so did blocks fine alone that fail together (a
__future__ import after other code, a coding declared).  And a file
whose name is a module's (numpy.py, conftest.py), which gradients.py
and `make test', run from the notes' folder, would import in its place.
One Python for all the blocks."
  (let* ((blocks (cl-remove-if-not
                  (lambda (block) (string-suffix-p ".py" (or (plist-get block :tangle-file) "")))
                  tangled))
         (files nil))
    (cl-loop for block in blocks for index from 0
             do (let ((file (assoc (plist-get block :tangle-file) files)))
                  (if file
                      (setcdr file (append (cdr file) (list index)))
                    (push (list (plist-get block :tangle-file) index) files))))
    (when (and blocks (file-executable-p gradients-python))
      (with-temp-buffer
        (insert (json-serialize
                 `((codes . ,(vconcat (mapcar #'gradients-build--code blocks)))
                   (folder . ,(expand-file-name gradients-build--project))
                   (files . ,(vconcat (mapcar (lambda (file) (vector (car file) (vconcat (cdr file))))
                                              (nreverse files)))))))
        (let ((coding-system-for-write 'utf-8-unix)
              (coding-system-for-read 'utf-8-unix))
          (call-process-region (point-min) (point-max) gradients-python t '(t nil) nil
                               "-I" "-c" gradients-build--compile-each))
        (dolist (line (split-string (buffer-string) "\n" t))
          (pcase-let* ((`(,kind ,index ,at ,why) (split-string line "\t"))
                       (block (nth (string-to-number index) blocks))
                       (file (plist-get block :tangle-file)))
            (gradients-build--noting-problem (plist-get block :line)
              (if (equal kind "module")
                  (error "%s: :tangle %s would be imported in place of the module %s (%s) by the blocks' script and by `make test', which run from the notes' folder; name it otherwise"
                         (plist-get block :where) at (file-name-sans-extension at)
                         (abbreviate-file-name why))
                (let* ((at (max 1 (string-to-number at)))
                       (text (nth (1- at) (split-string (gradients-build--code block) "\n"))))
                  (error (if (equal kind "alone")
                             "%s: it is tangled into %s, which Python cannot run: %s at %s:%d%s; IPython's own syntax (!command, %%magic, top-level await) runs in the kernel alone: call subprocess or the function itself, or add :tangle no"
                           "%s: it is tangled into %s with the blocks before it, and Python cannot run that file: %s at %s:%d%s")
                         (plist-get block :where) file why
                         gradients-build--org-name (+ (plist-get block :line) at)
                         (if text (format " (%s)" (string-trim text)) "")))))))))))

(defun gradients-build--check-blocks (blocks)
  "Fail on every header argument that would go wrong, each on a line of
its own, as a linter does.  Runs before any block, so a bad header costs
nothing; return the pictures, an alist of output path and block."
  (let* ((gradients-build--problems nil)
         (pictures nil)
         (claimed (make-hash-table :test #'equal))
         (running (cl-remove-if-not #'gradients-build--runs-p blocks))
         (tangled-running (cl-remove-if-not #'gradients-build--tangled-p running))
         ;; The first block the build runs that is tangled into each file
         ;; (by `gradients-build--same-file-key'), once for all blocks.
         (first-into (make-hash-table :test #'equal))
         (run-files nil))
    (dolist (block tangled-running)
      (let ((file (ignore-errors (gradients-build--check-tangle block))))
        (when file
          (let ((key (gradients-build--same-file-key file)))
            (plist-put block :tangle-file file)
            (plist-put block :tangled-key key)
            (unless (gethash key first-into)
              (puthash key block first-into)
              (push key run-files))))))
    (when (and running (null tangled-running))
      (push (cons 0 (format "%s tangles no file, though the build runs its blocks: none of them has a :tangle (the notes' #+PROPERTY gives :tangle gradients.py), so the files tangled before would be left as they are"
                            gradients-build--org-name))
            gradients-build--problems))
    (gradients-build--check-header-properties)
    (gradients-build--check-with-org-lint)
    (gradients-build--check-what-org-runs blocks)
    (save-excursion
      (dolist (block blocks)
        ;; The executor's own checks name the block at point.
        (goto-char (plist-get block :marker))
        (let ((line (plist-get block :line)))
          (gradients-build--noting-problem line
            (gradients-check-header-names (plist-get block :element)))
          (gradients-build--noting-problem line (gradients-build--check-one-block block))
          (gradients-build--noting-problem line (gradients-build--check-tangle-mode block))
          (gradients-build--noting-problem line
            ;; Kept for the check of what is tangled with it, below.
            (let ((file (or (plist-get block :tangle-file)
                            (let ((found (gradients-build--naming-header-origin
                                          block nil #'gradients-build--check-tangle)))
                              (plist-put block :tangle-file found)
                              found))))
              (when file
                (gradients-build--claim-output claimed block :tangle file))))
          (gradients-build--noting-problem line
            (gradients-build--naming-header-origin block nil #'gradients-build--check-how-it-runs))
          (gradients-build--noting-problem line
            (gradients-build--naming-header-origin
             block nil (lambda (block) (gradients-build--check-as-tangled block run-files))))
          (let ((key (plist-get block :tangled-key)))
            (when key
              (gradients-build--noting-problem line
                (gradients-build--naming-header-origin
                 block nil (lambda (block)
                             (gradients-build--check-session
                              block (gradients-build--as-read (gethash key first-into)
                                                              (plist-get block :reading))))
                 (gethash key first-into)))))
          (gradients-build--noting-problem line
            (gradients-build--naming-header-origin
             block nil (lambda (block) (gradients-build--check-what-it-uses block blocks))))
          (when (gradients-build--runs-p block)
            (gradients-build--noting-problem line
              (gradients-build--naming-header-origin
               block :timeout (lambda (block) (gradients--timeout (nth 2 (plist-get block :info))))))
            (gradients-build--noting-problem line
              (gradients-build--naming-header-origin block nil #'gradients-build--check-results))
            (gradients-build--noting-problem line
              (let ((picture (gradients-build--naming-header-origin
                              block nil #'gradients-build--check-picture)))
                (when picture
                  ;; A :file a property gives every block is drawn by the
                  ;; first: the property's line is named.  The blocks read
                  ;; again claim in a copy of what is claimed.
                  (gradients-build--naming-header-origin
                   block :file (lambda (read)
                                 (let ((again (gradients-build--check-picture read)))
                                   (when again
                                     (gradients-build--claim-output
                                      (if (eq read block) claimed (copy-hash-table claimed))
                                      read :file again)))))
                  (push (cons picture block) pictures))
                (gradients-build--check-linked-files block picture)))))))
    ;; Once every picture the build draws is known.
    (dolist (block blocks)
      (when (and (equal (plist-get block :language) "jupyter-python")
                 (gradients-build--not-run block))
        (gradients-build--noting-problem (plist-get block :line)
          (gradients-build--check-links-of-unrun block (mapcar #'car pictures)))))
    ;; Last, with every block's code known good to Org; not for the
    ;; code of the kept run, which passed it (see `gradients-build--key'),
    ;; so that a prose edit starts no Python.
    (unless (or gradients-build--problems
                (equal (gradients-build--key blocks)
                       (alist-get 'key (gradients-build--read-json
                                        (gradients-build--produced-file
                                         gradients-build--project)))))
      (gradients-build--check-plain-python tangled-running))
    (when gradients-build--problems
      (error "%s" (mapconcat #'cdr (sort (nreverse gradients-build--problems)
                                         (lambda (a b) (< (car a) (car b))))
                             "\n")))
    (nreverse pictures)))

;;;; Running the blocks

(defun gradients-build--insert-files (files)
  "Insert the name and bytes of each of FILES (nothing for a missing one)."
  (dolist (file files)
    (insert (file-name-nondirectory file) "\0")
    (when (file-exists-p file)
      (insert-file-contents-literally file)
      (goto-char (point-max)))
    (insert "\0")))

(defun gradients-build--buffer-digest ()
  "The SHA-256 of the current buffer's text, as UTF-8 (raw bytes from
`insert-file-contents-literally' as themselves).  Named, because
`secure-hash' otherwise asks `select-safe-coding-system' to choose an
encoding for the buffer, which scans it and costs more than the hash."
  (let ((coding-system-for-write 'utf-8-unix))
    (secure-hash 'sha256 (current-buffer))))

(defconst gradients-build-programs '(gradients-python "dot")
  "The programs a kernel's run depends on besides Emacs and Org: the
venv's Python (a variable naming it) and Graphviz's dot, which draws.")

(defun gradients-build--program-file (program)
  "The file PROGRAM of `gradients-build-programs' is now, links followed,
or nil."
  (let ((file (if (symbolp program) (symbol-value program) (executable-find program))))
    (and file (file-exists-p file) (file-truename file))))

(defun gradients-build--program-files ()
  "The files of `gradients-build-programs' as found now, links followed:
the venv made again with another python3, or another dot first on the
PATH, is another program, whatever the lock says."
  (delq nil (mapcar #'gradients-build--program-file gradients-build-programs)))

(defvar gradients-build--key-of nil
  "(BLOCKS . KEY): the key last computed, and the blocks it is of.")

(defun gradients-build--key (blocks)
  "A digest of everything the kernel's run of BLOCKS can depend on but
the tangled files: the code and header arguments of each block it runs,
in order, the lock, the build's tools, Emacs and Org, and the programs
it runs with, by their files' names, sizes and times.  Computed once for
one reading of the blocks: the checks ask, and the run after them."
  (if (eq (car gradients-build--key-of) blocks)
      (cdr gradients-build--key-of)
    (let ((key (gradients-build--compute-key blocks)))
      (setq gradients-build--key-of (cons blocks key))
      key)))

(defun gradients-build--compute-key (blocks)
  "The key of BLOCKS (see `gradients-build--key')."
  (with-temp-buffer
    (insert emacs-version "\0" (org-release) "\0")
    (dolist (file (gradients-build--program-files))
      (let ((attributes (file-attributes file)))
        (insert (format "%s %s %s\0" file (file-attribute-size attributes)
                        (format-time-string "%s.%N" (file-attribute-modification-time
                                                     attributes))))))
    (gradients-build--insert-files
     (cons (expand-file-name "requirements.lock" gradients-build--project)
           (mapcar (lambda (tool) (expand-file-name tool gradients-build-directory))
                   (gradients-build-tools))))
    (dolist (block blocks)
      (when (gradients-build--runs-p block)
        (let ((print-length nil) (print-level nil))
          (insert (prin1-to-string (list (gradients-build--code block)
                                         (nth 2 (plist-get block :info))))
                  "\0"))))
    (gradients-build--buffer-digest)))

(defun gradients-build--tangled-key (tangled)
  "A digest of the TANGLED files, which a block may read or run."
  (with-temp-buffer
    (gradients-build--insert-files tangled)
    (gradients-build--buffer-digest)))

(defun gradients-build--picture-destination (file)
  "Where the build draws the picture of a block with :file FILE."
  (gradients-build--scratch-path (gradients-build-output-path file :file "a block")))

(defconst gradients-build-watch-reads "\
def _watch_reads():
    import importlib.util, json, os, sys, types
    project = os.path.realpath(os.getcwd())
    inside = project + os.sep
    skipped = tuple(os.path.join(project, name) + os.sep for name in ('.venv', '.build', '.git'))
    bytecode = os.sep + '__pycache__' + os.sep
    files, written = set(), set()

    def hook(event, args):
        if event != 'open' or not isinstance(args[0], (str, bytes)):
            return
        mode, flags = args[1], args[2]
        path = os.path.normpath(os.path.join(os.getcwd(), os.fsdecode(args[0])))
        if not path.startswith(inside) or path.startswith(skipped):
            return
        if (any(letter in mode for letter in 'wax+') if mode is not None
                else flags & os.O_ACCMODE != os.O_RDONLY):
            written.add(os.path.relpath(os.path.realpath(path), project))
        if mode is not None and 'r' not in mode and '+' not in mode:
            return
        if mode is None and flags & os.O_ACCMODE == os.O_WRONLY:
            return
        if bytecode in path:
            try:
                path = importlib.util.source_from_cache(path)
            except ValueError:
                pass
        path = os.path.realpath(path)
        if path.startswith(inside) and os.path.isfile(path):
            files.add(os.path.relpath(path, project))

    sys.addaudithook(hook)
    sys.modules['_gradients_reads'] = types.SimpleNamespace(
        files=files, written=written, json=json, stdout=sys.stdout)
_watch_reads()
del _watch_reads
"
  "Python run on each kernel before the blocks: it notes every file of the
project (but for .venv, .build and .git) that Python opens for reading,
a module's bytecode counting as its source, so that the kept run
depends on those files too (a block that reads
data.csv runs again once it changed); and every file it opens for
writing, which the blocks make: no input of theirs (gradients.py,
imported by `make test', would write it again, and make would build
again).  What other programs read, a block's subprocesses for instance,
is not seen.  It keeps the json module and the kernel's standard output
as they are before any block, for the report below.")

(defconst gradients-build-report-reads
  "import sys\nreads = sys.modules['_gradients_reads']
reads.stdout.set_parent(get_ipython().kernel.get_parent())
reads.stdout.write(reads.json.dumps(sorted(reads.files - reads.written)) + '\\n')
reads.stdout.flush()"
  "Python that prints the files the kernel read, and did not write, as a
JSON list, with what the watch kept: a block may have left another
sys.stdout (a StringIO, which took the list and failed the build with a
JSON error naming nothing) or json module behind it.  The kernel's
stream is told which request it writes for, as the kernel tells
sys.stdout.")

(defun gradients-build--on-each-kernel (blocks code what)
  "Run CODE, described as WHAT, on the kernel of each session the blocks
of BLOCKS run in; return what it printed on each."
  (let (sessions printed)
    (dolist (block blocks)
      (when (gradients-build--runs-p block)
        (let ((session (assq :session (gradients-build--params block))))
          (unless (member session sessions)
            (push session sessions)
            (push (alist-get 'printed (gradients-run-block
                                       code (list session '(:result-params "output")
                                                  '(:result-type . output))
                                       (format "%s: %s" gradients-build--org-name what)))
                  printed)))))
    printed))

(defun gradients-build--digests (files)
  "FILES, relative to the notes' folder, each with its SHA-256 digest
(nil for one that is gone)."
  (mapcar (lambda (file)
            (let ((path (expand-file-name file gradients-build--project)))
              (cons file (and (file-regular-p path)
                              (secure-hash 'sha256 (gradients-build--file-bytes path))))))
          files))

(defun gradients-build--run (blocks)
  "Run every block of BLOCKS the build runs, in order, on a fresh kernel;
record what each produced under :produced and :printed, and return the
project's files the kernels read, with their digests.  Pictures are
drawn into the scratch folder."
  (let ((gradients-picture-destination #'gradients-build--picture-destination))
    (gradients-build--on-each-kernel blocks gradients-build-watch-reads
                                     "the build's watch of the files the blocks read")
    (dolist (block blocks)
      (when (gradients-build--runs-p block)
        (let* ((params (gradients-build--params block))
               (reply (condition-case failure
                          (gradients-build--run-noted
                           block (lambda ()
                                   (let ((code (gradients-build--code block)))
                                     (gradients-run-block
                                      code params (plist-get block :where)
                                      (gradients-code-place (plist-get block :element) code)))))
                        (error
                         ;; Its failure then says what was missing (a
                         ;; module), not why.
                         (if (file-executable-p gradients-python)
                             (signal (car failure) (cdr failure))
                           (error "%s; %s was removed while the block ran (a git clean -fdX?): run make again"
                                  (error-message-string failure)
                                  (file-relative-name gradients-python
                                                      gradients-project-directory)))))))
          (plist-put block :produced (alist-get 'org reply))
          (plist-put block :printed (alist-get 'printed reply)))))
    (gradients-build--digests
     (sort (delete-dups
            (apply #'append
                   (mapcar (lambda (printed) (json-parse-string printed :array-type 'list))
                           (gradients-build--on-each-kernel
                            blocks gradients-build-report-reads
                            "the build's list of the files the blocks read"))))
           #'string<))))

(defun gradients-build--reuse (blocks pictures earlier)
  "Take what each block produced from EARLIER, the blocks.json of a
kernel run under the same key, and copy its PICTURES."
  (let ((runs (cl-remove-if-not #'gradients-build--runs-p blocks))
        (recorded (cl-remove-if-not (lambda (block) (alist-get 'runs block))
                                    (alist-get 'blocks earlier))))
    (cl-loop for block in runs
             for old in recorded
             do (plist-put block :produced (alist-get 'produced old))
             (plist-put block :printed (alist-get 'printed old))))
  (dolist (picture pictures)
    (copy-file (gradients-build--produced-file gradients-build--project (car picture))
               (gradients-build--scratch-path (car picture)) t t)))

(defun gradients-build--reads (earlier)
  "The files EARLIER's kernel run read, with their digests then."
  (mapcar (lambda (read) (cons (alist-get 'file read) (alist-get 'sha256 read)))
          (alist-get 'reads earlier)))

(defun gradients-build--changed-reads (earlier)
  "The files EARLIER's kernel run read that hold other bytes now."
  (let ((reads (gradients-build--reads earlier)))
    (cl-loop for (file . digest) in (gradients-build--digests (mapcar #'car reads))
             unless (equal digest (cdr (assoc file reads))) collect file)))

(defun gradients-build--reusable-p (earlier tangled-key pictures)
  "Whether EARLIER, a kept run of the same code, holds for the files
tangled now (TANGLED-KEY), the files it read as they are now, and has
every one of PICTURES."
  (and (equal (alist-get 'tangled_key earlier) tangled-key)
       (null (gradients-build--changed-reads earlier))
       (cl-every (lambda (picture)
                   (file-exists-p (gradients-build--produced-file
                                   gradients-build--project (car picture))))
                 pictures)))

;;;; blocks.json

(defun gradients-build--json-value (value)
  (cond ((null value) :null)
        ((eq value t) t)
        ((symbolp value) (symbol-name value))
        ((stringp value) (substring-no-properties value))
        ((numberp value) value)
        (t (let ((print-length nil) (print-level nil)) (prin1-to-string value)))))

(defun gradients-build--block-json (block)
  (let* ((info (plist-get block :info))
         (header (mapcar (lambda (pair)
                           (cons (car pair) (gradients-build--json-value (cdr pair))))
                         (cl-remove-duplicates (nth 2 info) :key #'car :from-end t))))
    `((name . ,(or (plist-get block :name) :null))
      (language . ,(plist-get block :language))
      (line . ,(plist-get block :line))
      (first_line . ,(plist-get block :first-line))
      (last_line . ,(plist-get block :last-line))
      (results_line . ,(or (car (plist-get block :results-lines)) :null))
      (results_last_line . ,(or (cadr (plist-get block :results-lines)) :null))
      (header . ,(or header :null))
      (code . ,(substring-no-properties (nth 1 info)))
      (runs . ,(if (gradients-build--runs-p block) t :false))
      (records . ,(if (gradients-build--records-p block) t :false))
      (left_out . ,(if (plist-get block :left-out) t :false))
      (not_run . ,(or (and (equal (plist-get block :language) "jupyter-python")
                           (gradients-build--not-run block))
                      :null))
      (recorded . ,(or (plist-get block :recorded) :null))
      (produced . ,(or (plist-get block :produced) :null))
      (printed . ,(or (plist-get block :printed) :null)))))

(defun gradients-build--headings ()
  (let (headings)
    (org-element-map (org-element-parse-buffer 'headline) 'headline
      (lambda (headline)
        (push `((level . ,(org-element-property :level headline))
                (title . ,(substring-no-properties
                           (org-element-property :raw-value headline)))
                (line . ,(line-number-at-pos (org-element-property :begin headline))))
              headings)))
    (vconcat (nreverse headings))))

(defun gradients-build--write-blocks-json (blocks outputs key tangled-key reads hint)
  (let ((file (expand-file-name "blocks.json" gradients-build--scratch))
        (json `((org_file . ,(file-name-nondirectory (buffer-file-name)))
                (sha256 . ,(secure-hash 'sha256 (gradients-build--file-bytes (buffer-file-name))))
                (key . ,key)
                (tangled_key . ,tangled-key)
                (reads . ,(vconcat (mapcar (lambda (read)
                                             `((file . ,(car read))
                                               (sha256 . ,(or (cdr read) :null))))
                                           reads)))
                (hint . ,hint)
                (emacs . ,emacs-version)
                (org . ,(org-release))
                (outputs . ,(vconcat outputs))
                (headings . ,(gradients-build--headings))
                (blocks . ,(vconcat (mapcar #'gradients-build--block-json blocks))))))
    (let ((text (json-serialize json))
          (coding-system-for-write 'utf-8-unix))
      (with-temp-file file
        ;; Emacs 30 serializes to UTF-8 bytes, Emacs 28 to characters.
        (insert (if (multibyte-string-p text) text (decode-coding-string text 'utf-8))
                "\n")))))

(defvar gradients-build--retired nil
  "The last build's .build/produced/, moved aside for the new one: removed
however the build ends, Ctrl-C between the two moves included.")

(defun gradients-build--keep-produced ()
  "Make the scratch folder .build/produced/, in place of the last one.
The last one is moved aside under a scratch folder's name, so that a
build killed outright (SIGKILL) leaves it for the next build to remove."
  (let ((produced (directory-file-name
                   (expand-file-name gradients-build-produced-folder gradients-build--project))))
    (when (file-exists-p produced)
      (setq gradients-build--retired
            (concat (directory-file-name gradients-build--scratch) "-retired"))
      (rename-file produced gradients-build--retired))
    (rename-file (directory-file-name gradients-build--scratch) produced)
    (setq gradients-build--scratch nil)
    (when gradients-build--retired
      (delete-directory gradients-build--retired t)
      (setq gradients-build--retired nil))))

;;;; Installing the results

(defun gradients-build--same-bytes-p (a b)
  (and (file-exists-p b)
       (string= (gradients-build--file-bytes a) (gradients-build--file-bytes b))))

(defvar gradients-build--written nil
  "The outputs moved into place or removed so far, relative to the
project, a removed one followed by `gradients-build--removed'.")

(defun gradients-build--finish-moves ()
  "Make every move left in `gradients-build--moves'.  Also run from
`kill-emacs-hook', so that Ctrl-C during the install completes it."
  (while gradients-build--moves
    (let ((move (car gradients-build--moves)))
      ;; Ctrl-C right after a rename, or after its note, finds that move
      ;; still listed, done.
      (let ((output (file-relative-name (cdr move) gradients-build--project)))
        (when (file-exists-p (car move))
          (make-directory (file-name-directory (cdr move)) t)
          (rename-file (car move) (cdr move) t)
          (message "wrote %s" output))
        (unless (member output gradients-build--written)
          (push output gradients-build--written)))
      (setq gradients-build--moves (cdr gradients-build--moves)))))

(defun gradients-build--file-in-the-way (target)
  "The nearest folder of TARGET's path that is a file, or nil; and in
any case the nearest one that exists, as (FILE . FOLDER)."
  (let ((folder (file-name-directory target))
        in-the-way)
    (while (not (or in-the-way (file-directory-p folder)))
      (if (file-exists-p (directory-file-name folder))
          (setq in-the-way (directory-file-name folder))
        (setq folder (file-name-directory (directory-file-name folder)))))
    (cons in-the-way folder)))

(defun gradients-build--check-replaceable (target project)
  "Fail unless a rename can put a file at TARGET: its folder, or the
nearest one that exists, must be writable, and TARGET no folder.  Checked
for every output before the first move, so that a folder the build
cannot write stops it with nothing changed, not halfway through.  (The
checks of `gradients-build-output-path' found a file in the way before
any block ran; this one finds what changed meanwhile.)"
  (let ((relative (file-relative-name target project))
        (found (gradients-build--file-in-the-way target)))
    (when (file-directory-p target)
      (error "%s: cannot write %s: it is a folder" gradients-build--org-name relative))
    (when (car found)
      (error "%s: cannot write %s: %s is a file, not a folder" gradients-build--org-name
             relative (file-relative-name (car found) project)))
    (unless (file-writable-p (cdr found))
      (error "%s: cannot write %s: the folder %s is not writable" gradients-build--org-name
             relative (file-relative-name (cdr found) project)))))

(defun gradients-build--installed-modes (new target)
  "The permissions TARGET is to have once NEW, its new bytes, is in place.
The rename would give it NEW's, made under the umask of whoever builds
(077 would give 600, and a group or a web server could no longer read
it): it keeps those of the file it replaces, and a new output gets the
umask's.  When NEW is executable (Org makes a file with a :shebang so),
whoever may read TARGET may run it: a gradients.py that lost its
execute bit to a copy gets it back, as the notes build it."
  (let ((modes (if (file-exists-p target)
                   (file-modes target)
                 (logand #o666 (default-file-modes)))))
    (if (zerop (logand (file-modes new) #o111))
        modes
      (logior modes (ash (logand modes #o444) -2)))))

(defun gradients-build--install (from relatives)
  "Put each file RELATIVES names under FROM at the same place in the
project, unless it is there byte for byte.  The new files are copied
into the scratch folder first; then each move is a rename on one disk,
so no file is ever half written.  Every output gets the permissions
`gradients-build--installed-modes' says, an unchanged one too."
  (let (moves executables)
    (dolist (relative relatives)
      (let* ((new (expand-file-name relative from))
             (target (expand-file-name relative gradients-build--project))
             (modes (gradients-build--installed-modes new target)))
        (if (gradients-build--same-bytes-p new target)
            (if (= modes (file-modes target))
                (message "unchanged %s" relative)
              (push (list relative target modes) executables))
          (unless (gradients-file-inside-p new gradients-build--scratch)
            (let ((copy (gradients-build--scratch-path relative)))
              (copy-file new copy t t)
              (setq new copy)))
          (set-file-modes new modes)
          (push (cons new target) moves))))
    (dolist (move moves)
      (gradients-build--check-replaceable (cdr move) gradients-build--project))
    ;; After the checks, so that a refusal leaves them as they were.
    (dolist (executable (nreverse executables))
      (set-file-modes (nth 1 executable) (nth 2 executable))
      (push (car executable) gradients-build--written)
      (message "made %s executable" (car executable)))
    (setq gradients-build--moves (nreverse moves))
    (gradients-build--finish-moves)))

(defun gradients-build--cleanup (&optional wait)
  "Finish an install that was begun, remove the scratch folder, stop the
kernels.  Runs however the build ends, Ctrl-C included.  With WAIT (a
build that ends or refuses, not one stopped by a signal), wait for the
kernels to be gone: make then returns with nothing of the build running,
and the next build finds the checkout's lock free."
  (gradients-build--as-a-build
   (gradients-build--finish-moves)
   (dolist (folder (list gradients-build--scratch gradients-build--retired))
     (when folder
       (delete-directory folder t)))
   (setq gradients-build--scratch nil
         gradients-build--retired nil)
   (advice-remove 'insert-file-contents #'gradients-build--note-input)
   (gradients-stop-sessions (not wait))))

(defvar gradients-build--under-way nil
  "The Org file's name while its build runs: set when the build begins,
cleared when it ends or refuses.  Still set when Emacs exits, the build
was stopped from outside (Ctrl-C, a signal).")

(defvar gradients-build--running nil
  "Where the block that runs is, while one does: a build stopped then
says which block it stopped in.")

(defun gradients-build--run-noted (block run)
  "Call RUN, saying first that BLOCK runs, and noting it until it ends."
  (message "running %s" (plist-get block :where))
  (setq gradients-build--running (plist-get block :where))
  (unwind-protect (funcall run)
    (setq gradients-build--running nil)))

(defvar gradients-build--kernel-stopping nil
  "What to say while a build that has done all its work waits for its
kernel to stop.  Still set when Emacs exits, the build was stopped then:
it says so, as make alone would only say that its recipe failed.")

(defvar gradients-build--installed nil
  "Whether the running build has installed its outputs and written
make's stamp (`make tangle', `make run'), rather than only kept its run.")

(defconst gradients-build--removed " (removed)"
  "What follows an output's name in `gradients-build--written' when the
build removed it.")

(defun gradients-build--what-changed (written-some)
  "The last line of a build that did not end: what it changed, in
WRITTEN-SOME's words followed by the outputs, or \"Nothing was changed.\""
  (let ((changed
         (seq-remove (lambda (entry)
                       (and (string-suffix-p gradients-build--removed entry)
                            (file-exists-p
                             (expand-file-name (string-remove-suffix gradients-build--removed entry)
                                               gradients-build--project))))
                     (reverse gradients-build--written))))
    (if changed
        (format "%s: %s" written-some (mapconcat #'identity changed ", "))
      "Nothing was changed.")))

(defvar gradients-build--ended-by-lisp nil
  "Non-nil once Lisp has called `kill-emacs': a library the build
loaded, not a signal, which Emacs handles without calling it from Lisp.")

(define-advice kill-emacs (:before (&rest _) gradients-build-note-who)
  (setq gradients-build--ended-by-lisp t))

(defun gradients-build--on-exit ()
  "Clean up, however Emacs exits; for a build stopped from outside, say
so in the build's own words, as a refusal does: make alone would only
say that its recipe failed."
  ;; Its failure is not said here: a build that ended has cleaned up
  ;; already, and said a failure then, which would only come again with
  ;; Emacs's raw "Error in kill-emacs-hook" and skip what follows; what a
  ;; stopped build leaves in .build/ the next build removes.
  (ignore-errors (gradients-build--cleanup))
  ;; Stopped while a block of `make run' ran, which is run with its
  ;; messages held back, this is still said.
  (let ((inhibit-message nil))
    (when gradients-build--under-way
      (message (if gradients-build--ended-by-lisp
                   "%s: Lisp ended the build before its end, calling kill-emacs (a library Emacs loaded? see EMACSLOADPATH)."
                 "%s: the build was stopped (Ctrl-C or a signal) before it ended%s.")
               gradients-build--under-way
               (if (and gradients-build--running (not gradients-build--ended-by-lisp))
                   (format ", as %s ran" gradients-build--running)
                 ""))
      ;; An install under way when the build was stopped was completed.
      (message "%s" (gradients-build--what-changed "Changed before it stopped"))
      (setq gradients-build--under-way nil))
    (when gradients-build--kernel-stopping
      (message "%s" gradients-build--kernel-stopping)
      (setq gradients-build--kernel-stopping nil))))

(add-hook 'kill-emacs-hook #'gradients-build--on-exit)

(defun gradients-build--write-outputs-list (outputs &optional retiring)
  "Write the digests of OUTPUTS as installed, with those of RETIRING
\(outputs no block makes, still the build's to remove), and of the inputs
they were built from, then the list of OUTPUTS, make's stamp, last."
  (let ((file (expand-file-name gradients-build-outputs-file gradients-build--project)))
    (gradients-build--write-digests
     (expand-file-name gradients-build-outputs-digests gradients-build--project)
     (append outputs retiring))
    (let ((inputs (expand-file-name "inputs.sha256"
                                    (expand-file-name gradients-build-produced-folder
                                                      gradients-build--project)))
          (copy (expand-file-name gradients-build-outputs-inputs gradients-build--project)))
      (let ((temporary (gradients-build--make-temp (concat copy "-"))))
        (copy-file inputs temporary t)
        (rename-file temporary copy t)))
    (let ((temporary (gradients-build--make-temp (concat file "-")))
          (coding-system-for-write 'utf-8-unix))
      (with-temp-file temporary
        (insert (mapconcat #'identity outputs "\n") "\n"))
      (rename-file temporary file t)))
  (setq gradients-build--installed t))

(defun gradients-build--check-unchanged (org-file original target)
  "Fail if ORG-FILE no longer holds ORIGINAL, the bytes the build began
with: an edit saved meanwhile is kept, and built by the next run of
`make TARGET'.  For `make tangle' this matters as much as for `make
run': the list of outputs, written last, is make's stamp, and would be
newer than the edit, so make would never build it."
  (unless (equal (gradients-build--file-bytes org-file) original)
    (error "%s changed on disk while the blocks ran; it is kept as it is now, run `make %s' again"
           (file-name-nondirectory org-file) target)))

;;;; The builds

(defconst gradients-build-oldest-org "9.5"
  "The oldest Org the build is tested with (Debian 12's Emacs 28 has 9.5.5).")

(defun gradients-build--load-path-setting ()
  "\" (EMACSLOADPATH=...)\" when that variable set where Org comes from,
else \"\": a message about the Org loaded names what chose it."
  (let ((setting (getenv "EMACSLOADPATH")))
    (if (and setting (not (equal setting "")))
        (format " (EMACSLOADPATH=%s)" setting)
      "")))

(defun gradients-build--org-origin ()
  "The folder Org is loaded from, with the EMACSLOADPATH that chose it."
  (concat (abbreviate-file-name (file-name-directory (or (locate-library "org") "org")))
          (gradients-build--load-path-setting)))

(defun gradients-build--org-folders ()
  "The folders Org's own libraries were loaded from, other than this
build's: one, unless an Org is only partly on the load path."
  (let (folders)
    (dolist (entry load-history)
      (let ((file (car entry)))
        (when (and (stringp file)
                   (string-match-p "/\\(org\\|ob\\|ol\\|ox\\)\\(-[^/]*\\)?\\.elc?\\'" file)
                   (not (gradients-file-inside-p file gradients-build-directory)))
          (cl-pushnew (file-name-directory file) folders :test #'equal))))
    folders))

(defun gradients-build--load-org ()
  "Load Org and its tangling, or fail in one line naming where that Org
came from: an Org on EMACSLOADPATH may be partial (a copied org.elc),
compiled for another Emacs, or older than the build is tested with."
  (condition-case err
      (progn (require 'org) (require 'ob-tangle))
    (error (error "Org did not load from %s: %s" (gradients-build--org-origin)
                  (error-message-string err))))
  (let ((folders (gradients-build--org-folders)))
    (when (cdr folders)
      (error "Org was loaded from %d folders at once, %s%s: one of them holds only part of an Org"
             (length folders) (mapconcat #'abbreviate-file-name folders " and ")
             (gradients-build--load-path-setting))))
  (when (version< (org-release) gradients-build-oldest-org)
    (error "Org %s from %s is older than %s, the oldest the build is tested with"
           (org-release) (gradients-build--org-origin) gradients-build-oldest-org)))

(defun gradients-build--visit (org-file)
  "Visit ORG-FILE where it is, decoded as UTF-8 (so Emacs never asks for
a coding system, not even on a terminal); return its buffer."
  (gradients-build--load-org)
  (setq org-confirm-babel-evaluate nil     ; batch: nobody to ask
        ;; Tangling visits python-mode, which would guess and complain.
        python-indent-guess-indent-offset nil
        ;; Without its cache, each look at a block parses its section from
        ;; the top: a build quadratic in the blocks under one heading.
        org-element-use-cache t)
  (let ((coding-system-for-read 'utf-8-unix)
        (enable-local-variables :safe))
    (find-file-noselect org-file)))

(defvar gradients-build--in-process nil
  "Non-nil while `gradients-build-in-process' runs a build in an Emacs
that outlives it: the build then starts no kernel ahead of its checks,
and a refusal returns what it said instead of exiting.")

(defun gradients-build--note ()
  "The note in which the make that started this build reads how it
ended: the file GRADIENTS_BUILD_FINISHED names, relative to the folder
make started Emacs in; nil for a build no make started, or one in
process.  Make writes \"started\" into it before the build."
  (let ((file (getenv "GRADIENTS_BUILD_FINISHED")))
    (and file (not (string-empty-p file)) (not gradients-build--in-process)
         (expand-file-name file command-line-default-directory))))

(defun gradients-build--clear-finished ()
  "Before the build's work: remove the notes `gradients-build--say-finished'
writes for makes no longer running (one stopped between its build and its
reading of the note), so that they do not pile up.  This make's own note,
which says \"started\" until the build says otherwise, stays."
  (let* ((own (gradients-build--note))
         (folder (and own (file-name-directory own))))
    (dolist (file (and folder (file-directory-p folder)
                       (directory-files folder t "\\`finished\\.[0-9]+\\'")))
      (unless (or (equal file own)
                  (process-attributes (string-to-number (file-name-extension file))))
        (ignore-errors (delete-file file))))))

(defun gradients-build--say-finished ()
  "Tell make that the build did all its work: write \"finished\" into its
note (`gradients-build--note'), which make reads once Emacs has exited.
An exit status of 0 alone may come from a program between make and
Emacs, or a library, that ran nothing."
  (let ((note (gradients-build--note))
        (coding-system-for-write 'utf-8-unix))
    (when note
      (write-region "finished\n" nil note nil 'silent))))

(defmacro gradients-build--main (kernel-wanted &rest body)
  "Run BODY with the Org file named on the command line visited, having
checked what needs no Org; exit 1 on error, having changed nothing.
KERNEL-WANTED, a form that sees `original' and `project', says whether
to start the kernel at once, to boot while Org loads.  BODY sees
`org-file', `original' (its bytes when the build began), `project' (its
folder) and `scratch'."
  (declare (indent 1))
  `(gradients-build--as-a-build
    (condition-case err
       (let* ((org-file (gradients-build--org-file))
              (project (file-name-directory org-file))
              (gradients-build--org-name (file-name-nondirectory org-file))
              (original (gradients-build--read-and-check org-file))
              (gradients-kernel-directory project))
         ;; A batch build starts with these empty; a build in process
         ;; must not see what the one before it found.
         (gradients-build-take-as-spelled project)
         (setq gradients-build--project project
               gradients-build--under-way gradients-build--org-name
               gradients-build--installed nil
               gradients-build--origin-readings nil
               gradients-build--inputs nil
               gradients-build--written nil)
         (clrhash gradients-build--answers)
         (gradients-build--clear-finished)
         ;; The make that started the build made or found it: gone now,
         ;; it was removed while the build waited for another to end.
         (when (and (gradients-build--note) (not (file-executable-p gradients-python)))
           (error "%s: %s is gone, removed since make looked (a make clean or git clean while this build waited for another?); run make again, which makes it"
                  gradients-build--org-name
                  (file-relative-name gradients-python gradients-project-directory)))
         (advice-add 'insert-file-contents :before #'gradients-build--note-input)
         ;; Evaluated in process too: it may hold a check (`make run').
         (when (and ,kernel-wanted (not gradients-build--in-process))
           (gradients-start-session "gradients"))
         (let ((scratch (gradients-build--make-scratch project)))
           (ignore scratch)
           (with-current-buffer (gradients-build--visit org-file)
             (let ((default-directory project))
               ,@body)))
         (setq gradients-build--kernel-stopping
               (format "%s: the build was stopped (Ctrl-C or a signal) as its kernel stopped, after all its work: %s."
                       gradients-build--under-way (gradients-build--work-done))
               gradients-build--under-way nil)
         (prog1 (condition-case err
                    (progn (gradients-build--cleanup 'wait)
                           (gradients-build--say-finished)
                           nil)
                  (error (gradients-build--fail-after-the-work err)))
           (setq gradients-build--kernel-stopping nil)))
     (error (gradients-build--refuse err)))))

(defun gradients-build--work-done ()
  "What a build that did all its work leaves: its outputs installed, or,
for `make test', its run kept."
  (if gradients-build--installed
      "every output is in place"
    (format "what it made is whole in %s/" gradients-build-produced-folder)))

(defun gradients-build--drop-note ()
  "Remove the note make wrote \"started\" into before a build that now
fails, and says why: make, which stops at the failure, would not read
it, and it stayed until the next build.  (A build stopped by a signal
leaves it to the next one; one ended early by another program, to make,
which fails the build on it.)"
  (let ((note (gradients-build--note)))
    (when note
      (ignore-errors (delete-file note)))))

(defun gradients-build--fail-after-the-work (err)
  "End a build whose cleaning up after all its work failed with ERR: say
so, with what it did, and exit 1; in process, return what it said."
  (setq gradients-build--kernel-stopping nil)
  (let ((said (format "%s: cleaning up after the build failed, after all its work (%s): %s"
                      gradients-build--org-name (gradients-build--work-done)
                      (error-message-string err))))
    (message "%s" said)
    (if gradients-build--in-process
        said
      (gradients-build--drop-note)
      (kill-emacs 1))))

(defun gradients-build--refusal-text (err org-name)
  "The line saying why a build of the Org file ORG-NAME (nil before it is
known) failed with ERR.  The build's own refusals name the file, the
block and the line already.  An error Emacs signals on a file (a scratch
folder it cannot make in a read-only checkout, a copy to a full disk)
names only that file, by its absolute path: it is said as the Org file's
too, with the paths under the notes' folder made relative to it."
  (if (not (and org-name gradients-build--project
                (memq 'file-error (get (car err) 'error-conditions))))
      (error-message-string err)
    (let ((parts (mapcar (lambda (part)
                           ;; By name: .build/ named as the user knows it,
                           ;; wherever a link to it leads.
                           (if (and (stringp part)
                                    (string-prefix-p gradients-build--project part))
                               (file-relative-name part gradients-build--project)
                             part))
                         (cdr err))))
      (format "%s: %s: %s" org-name
              (if (cl-some (lambda (part) (and (stringp part) (string-prefix-p ".build/" part)))
                           parts)
                  "the build cannot keep its scratch files in .build/ (a read-only checkout, or another user's?)"
                "the build cannot go on")
              (error-message-string (cons (car err) parts))))))

(defun gradients-build--refuse (err)
  "End a build that failed with ERR: say why and what it changed, undo
what it began, and exit 1; in process, return what it said instead."
  ;; A move that failed is not tried again on the way out.
  (setq gradients-build--moves nil
        gradients-build--kernel-stopping nil)
  (let ((said (list (gradients-build--refusal-text err gradients-build--under-way)
                    (gradients-build--what-changed "Only some outputs were changed"))))
    (setq gradients-build--under-way nil)
    (dolist (line said)
      (message "%s" line))
    (gradients-build--cleanup 'wait)
    (if gradients-build--in-process
        (mapconcat #'identity said "\n")
      (gradients-build--drop-note)
      (kill-emacs 1))))

(defun gradients-build-in-process (entry org-file)
  "Run the build ENTRY (`gradients-build-tangle', `gradients-build-run',
`gradients-build-produce') on ORG-FILE in this Emacs, and leave it
running: what the build said when it refused ORG-FILE (its error, then
what it changed, one a line), or nil when it succeeded.  The steps are
the batch build's, but for the kernel it starts ahead of the checks; a
kernel a block needs starts as usual.  The notes' buffer is killed
after, so that the next run reads the file afresh.  For ERT (tests/ert/)."
  (let ((gradients-build--in-process t)
        (command-line-args-left (list org-file))
        (org-file (file-name-unquote (expand-file-name org-file))))
    (unwind-protect (funcall entry)
      (let ((buffer (find-buffer-visiting org-file)))
        (when buffer
          (with-current-buffer buffer (set-buffer-modified-p nil))
          (kill-buffer buffer)))
      (setq gradients-build--project nil
            gradients-build--under-way nil
            gradients-build--kernel-stopping nil
            gradients-build--key-of nil))))

(defun gradients-build--has-blocks-p (original)
  (string-match-p "#\\+begin_src[ \t]+jupyter-python" original))

(defun gradients-build--kernel-likely-p (original project)
  "Whether the build will probably run the blocks: there are some, and no
kernel run is kept whose code looks the same.  Only a guess, so that the
kernel can boot while Org loads; a wrong one costs time, not results."
  (and (gradients-build--has-blocks-p original)
       (not (equal (alist-get 'hint (gradients-build--read-json
                                     (gradients-build--produced-file project)))
                   (gradients-build--code-hint (decode-coding-string original 'utf-8-unix))))))

(defun gradients-build--tangling-modes (blocks)
  "The `org-src-lang-modes' to tangle BLOCKS with.  Org turns on each
language's major mode in the file it tangles, only for `comment-region'
to find the comment syntax of :comments; without them, starting
python-mode (loading python.el and its dependencies) would be most of
the tangling time, so every language is tangled as plain text."
  (if (cl-some (lambda (block)
                 (not (member (cdr (assq :comments (nth 2 (plist-get block :info))))
                              '(nil "no"))))
               blocks)
      org-src-lang-modes
    (append (mapcar (lambda (block) (cons (plist-get block :language) 'fundamental))
                    blocks)
            org-src-lang-modes)))

(defun gradients-build--tangle (blocks)
  "Tangle the buffer into the scratch folder; return the files written."
  (advice-add 'org-babel-tangle-collect-blocks :filter-return
              #'gradients-build--tangle-into-scratch)
  (unwind-protect
      (let ((inhibit-message t)
            (org-src-lang-modes (gradients-build--tangling-modes blocks))
            ;; What Emacs would choose anyway, for text read as UTF-8,
            ;; without scanning each file for the characters it holds.
            (coding-system-for-write 'utf-8-unix))
        (org-babel-tangle))
    (advice-remove 'org-babel-tangle-collect-blocks
                   #'gradients-build--tangle-into-scratch)))

(defun gradients-build--produce (org-file original target &optional kept-only)
  "Produce everything into the scratch folder and make it .build/produced/;
return the outputs, relative to the notes' folder.  TARGET is the make
target to run again after an edit saved meanwhile: the one the user ran.
With KEPT-ONLY, the kept run must serve: `make run' reads the notes it
wrote, whose code is that of the run it just kept."
  (let* ((blocks (gradients-build--read-blocks))
         (pictures (gradients-build--check-blocks blocks))
         (earlier (gradients-build--read-json
                   (gradients-build--produced-file gradients-build--project)))
         (key (gradients-build--key blocks))
         (_ (when (and kept-only (not (equal key (alist-get 'key earlier))))
              (error "%s: the notes' code, or what the build depends on, changed while `make %s' ran; run it again"
                     gradients-build--org-name target)))
         ;; Code unlike the kept run's runs whatever is tangled: at once,
         ;; on the kernel started early, and tangling waits.
         (ran (not (equal key (alist-get 'key earlier))))
         (reads (when ran
                  (prog1 (gradients-build--run blocks)
                    ;; Before Org touches the buffer of a file saved
                    ;; meanwhile, and asks about it.
                    (gradients-build--check-unchanged org-file original target))))
         (tangled (gradients-build--tangle blocks))
         (tangled-key (gradients-build--tangled-key tangled)))
    (unless ran
      (if (not (gradients-build--reusable-p earlier tangled-key pictures))
          (if kept-only
              (error "%s: a file the blocks read changed while `make %s' ran; run it again"
                     gradients-build--org-name target)
            (setq reads (gradients-build--run blocks)))
        ;; `make run' runs every block again all the same, for the notes:
        ;; the kept run is what it checks that run against.  Its second
        ;; reading of the notes, once written (KEPT-ONLY), says nothing new.
        (unless kept-only
          (message "%s" (if (equal target "run")
                            "the code of the blocks is as when they last ran: that run is kept for make tangle, and each block now runs again for the notes, checked against it"
                          "the code of the blocks is as when they last ran: their results are reused")))
        ;; One guessed needed, and started early, is not.
        (gradients-stop-sessions 'no-wait)
        (gradients-build--reuse blocks pictures earlier)
        (setq reads (gradients-build--reads earlier))))
    ;; Found by probing: `make run' wrote the notes, then found them
    ;; changed since the blocks read them, twice, before it settled.
    (when (assoc gradients-build--org-name reads)
      (error "%s: a block reads %s itself, which `make run' rewrites with the results, so that what the block makes would change with each run; keep what it reads in a file of its own"
             gradients-build--org-name gradients-build--org-name))
    (setq gradients-build--inputs
          (cl-union gradients-build--inputs (mapcar #'car reads) :test #'equal))
    (gradients-build--check-unchanged org-file original target)
    (let ((outputs (append (mapcar (lambda (file) (file-relative-name file gradients-build--scratch))
                                   tangled)
                           (mapcar #'car pictures))))
      (gradients-build--write-blocks-json
       blocks outputs key tangled-key reads (gradients-build--code-hint
                                       (decode-coding-string original 'utf-8-unix)))
      (gradients-build--write-inputs org-file)
      (gradients-build--write-emacs-files)
      (gradients-build--keep-produced)
      (gradients-build--release-markers blocks)
      outputs)))

(defun gradients-build-produce ()
  "Produce everything the notes make into .build/produced/ (`make test')."
  (gradients-build--main (gradients-build--kernel-likely-p original project)
    (gradients-build--produce org-file original "test")))

(defun gradients-build--installed-before ()
  "The outputs the last `make tangle' installed, as an alist of each one's
path relative to the project and its digest then; nil when none did."
  (let ((file (expand-file-name gradients-build-outputs-digests gradients-build--project)))
    (when (file-readable-p file)
      (with-temp-buffer
        (insert-file-contents file)
        (let (installed)
          ;; A line sha256sum escaped (a backslash or newline in the
          ;; name) is skipped: such a name is no output's (see
          ;; `gradients-build-output-path').
          (while (re-search-forward "^\\([0-9a-f]\\{64\\}\\)  \\(.+\\)$" nil t)
            (push (cons (match-string 2) (match-string 1)) installed))
          (nreverse installed))))))

(defun gradients-build--check-not-emptied (before outputs)
  "Fail when the notes make no output at all, and the build would remove
every one of BEFORE still there (see `gradients-build--installed-before'):
notes cut short (`: > README.org', an editor's crash) took gradients.py
and the pictures with them, the build saying it succeeded.  Notes that
never made one, or whose outputs are gone already, build."
  (let ((going (cl-loop for (relative . _) in before
                        when (file-regular-p (expand-file-name relative gradients-build--project))
                        collect relative)))
    (when (and going (null outputs))
      (error "%s makes no output now (no block is tangled or draws a picture), and the build would remove every one it made before (%s): if the notes were cut short, put them back (git checkout %s); to retire the outputs, remove them yourself"
             gradients-build--org-name
             (concat (string-join (seq-take going 3) ", ") (if (nthcdr 3 going) ", …" ""))
             gradients-build--org-name))))

(defun gradients-build--remove-retired-outputs (before outputs notes)
  "Remove each output in BEFORE (see `gradients-build--installed-before')
that is not among OUTPUTS, when it holds what the build installed: a
picture whose :file was renamed, a file no block tangles into any more.
One changed since is named and kept, as is one NOTES, the Org file's
text, links (the recorded result of a block that no longer runs).
Return those kept because linked, unchanged: still the build's, removed
by the build that finds them no longer linked (`make run', which writes
the new link, after the `make tangle' that kept them)."
  (let (retiring)
    (pcase-dolist (`(,relative . ,digest) before)
      (let ((file (expand-file-name relative gradients-build--project)))
        (when (and (not (member relative outputs)) (file-regular-p file)
                   (not (file-symlink-p file)))
          (let ((unchanged (equal (secure-hash 'sha256 (gradients-build--file-bytes file))
                                  digest)))
            (cond
             ((string-match-p (concat "\\[\\[file:\\(?:\\./\\)?" (regexp-quote relative)
                                      "\\]")
                              notes)
              (when unchanged
                (push relative retiring))
              (message "kept %s: no block makes it now, but the notes link it" relative))
             (unchanged
              ;; Listed first: Ctrl-C right after the removal finds it
              ;; listed (and `gradients-build--what-changed' leaves out a
              ;; file still there).
              (push (concat relative gradients-build--removed) gradients-build--written)
              (delete-file file)
              (message "removed %s: no block makes it now" relative))
             (t
              (message "kept %s: no block makes it now, but it changed since the build wrote it; remove it if nothing needs it"
                       relative)))))))
    (nreverse retiring)))

(defun gradients-build--say-stale-results (org-name)
  "Say which recorded results of the notes ORG-NAME differ from what
their blocks produced in the build just made (.build/produced/): found
by `make test' alone, they were news after the next step of the loop.
The blocks compared are those `make test' compares, its `records'."
  (let* ((kept (gradients-build--read-json
                (gradients-build--produced-file gradients-build--project)))
         (stale (cl-loop
                 for block in (alist-get 'blocks kept)
                 ;; Blanks at lines' ends aside, as `make test' compares
                 ;; them: an editor may take them from an empty line's ": ".
                 when (and (alist-get 'records block)
                           (not (equal (replace-regexp-in-string
                                        "[ \t]+$" "" (or (alist-get 'recorded block) ""))
                                       (replace-regexp-in-string
                                        "[ \t]+$" "" (or (alist-get 'produced block) "")))))
                 collect (format "%s:%d: block %s" org-name (alist-get 'line block)
                                 (if (alist-get 'name block)
                                     (format "`%s'" (alist-get 'name block))
                                   "(unnamed)")))))
    (when stale
      (message "%s recorded result%s %s not what %s produce%s now (%s): `make run' records %s"
               (length stale) (if (cdr stale) "s" "") (if (cdr stale) "are" "is")
               (if (cdr stale) "their blocks" "its block") (if (cdr stale) "" "s")
               (concat (string-join (seq-take stale 3) "; ") (if (nthcdr 3 stale) "; …" ""))
               (if (cdr stale) "them" "it")))))

(defun gradients-build-tangle ()
  "Produce everything, then install every output that changed and remove
those no block makes any more (`make tangle')."
  (gradients-build--main (gradients-build--kernel-likely-p original project)
    (let ((outputs (gradients-build--produce org-file original "tangle"))
          (before (gradients-build--installed-before)))
      (gradients-build--check-not-emptied before outputs)
      (gradients-build--make-scratch project)
      (gradients-build--install
       (expand-file-name gradients-build-produced-folder project) outputs)
      (gradients-build--write-outputs-list
       outputs (gradients-build--remove-retired-outputs
                before outputs (decode-coding-string original 'utf-8-unix)))
      (gradients-build--say-stale-results (file-name-nondirectory org-file)))))

(defun gradients-build--check-as-written ()
  "Fail unless the buffer, with the results of a run written into it,
passes the checks the next build will make of it.  The bridge refuses
what no notes could keep; what only the build knows of (a link to a
picture an interactive run saved) would otherwise be written by one
`make run' and refused by the next build."
  (let ((blocks (gradients-build--read-blocks))
        (gradients-build--results-as-produced t))
    (unwind-protect
        (condition-case err
            (gradients-build--check-blocks blocks)
          (error
           (error "%s would be refused by the next build as this run leaves it, so it is not written; lines as they would be:\n%s"
                  gradients-build--org-name (error-message-string err))))
      (gradients-build--release-markers blocks))))

(defun gradients-build--first-difference (one other)
  "The first line where the texts ONE and OTHER differ, as (NUMBER
ONE-LINE OTHER-LINE), each line cut at 200 characters."
  (let ((ones (split-string one "\n")) (others (split-string other "\n")) (number 1))
    (while (and ones others (equal (car ones) (car others)))
      (setq ones (cdr ones) others (cdr others) number (1+ number)))
    (list number
          (truncate-string-to-width (or (car ones) "(no line)") 200)
          (truncate-string-to-width (or (car others) "(no line)") 200))))

(defun gradients-build--check-reads-unchanged (kept)
  "Fail if a file KEPT, the build's kept run, read has changed since:
`make run' would record what its own run made of the new file, beside
the build's run of the old one."
  (let ((changed (gradients-build--changed-reads kept)))
    (when changed
      (error "%s: %s, which the blocks read, changed while `make run' ran; run it again"
             gradients-build--org-name (mapconcat #'identity changed ", ")))))

(defun gradients-build--check-reproduced (made kept)
  "Fail unless each reply of MADE, those of the blocks `make run' ran in
order, holds what KEPT, the build's own run of the same code, made of
that block: the drawer text, what it printed (which `make test' compares
with gradients.py's output, for a block of :results silent too) and its
picture, byte for byte.  What changes from run to run no build could
check, and `make test' would fail on it after every `make run'."
  (let ((produced (cl-remove-if-not (lambda (entry) (alist-get 'runs entry))
                                    (alist-get 'blocks kept)))
        differing)
    (dolist (reply made)
      (let* ((entry (pop produced))
             (where (gradients-build--where gradients-build--org-name (alist-get 'line entry)
                                            (alist-get 'name entry)))
             (file (alist-get :file (alist-get 'header entry)))
             (output (and file (gradients-build-output-path file :file where)))
             (what
              (cond
               ((not (equal (alist-get 'org reply) (alist-get 'produced entry)))
                (cons "its result" (gradients-build--first-difference
                                    (or (alist-get 'produced entry) "")
                                    (or (alist-get 'org reply) ""))))
               ;; Compared with gradients.py's output by `make test' only
               ;; when tangled: printed by a block of :tangle no, it is
               ;; in the drawer alone (a progress bar's passing states,
               ;; the kernel's file of the block, which the drawer names
               ;; <cell>).
               ((and (not (member (alist-get :tangle (alist-get 'header entry)) '(nil "no")))
                     (not (equal (alist-get 'printed reply) (alist-get 'printed entry))))
                (cons "what it printed" (gradients-build--first-difference
                                         (or (alist-get 'printed entry) "")
                                         (or (alist-get 'printed reply) ""))))
               ((and output
                     (not (equal (gradients-build--file-bytes
                                  (gradients-build--produced-file gradients-build--project output))
                                 (gradients-build--file-bytes
                                  (gradients-build--scratch-path output)))))
                (list (format "its picture %s" output))))))
        (when what
          ;; Written out as escapes: a control character said as it is
          ;; moved the terminal's cursor over the text (a carriage
          ;; return), or reset the terminal (ESC c).
          (push (if (cdr what)
                    (let ((print-escape-control-characters t))
                      (format "%s gave another result when run again on a fresh kernel: %s, line %d:\n  the build's run:  %S\n  make run's run:   %S"
                              where (car what) (nth 1 what) (nth 2 what) (nth 3 what)))
                  (format "%s gave another result when run again on a fresh kernel: %s, drawn again, holds other bytes"
                          where (car what)))
                differing))))
    (when differing
      (error "%s\nWhat these blocks show changes from run to run, and no build could check it: seed what is random, sort what has no order, round what the machine may change"
             (mapconcat #'identity (nreverse differing) "\n")))))

(defun gradients-build-run ()
  "Restart and run all: every results drawer and picture, from a fresh
kernel, written into the Org file (`make run'); then what `make tangle'
installs, from a run of its own on another fresh kernel (or the kept one
of the same code), whose results must be the same.  So `make tangle'
and `make test' find everything as the run left it."
  (gradients-build--main (progn (gradients-build--check-rewritable org-file)
                                (gradients-build--has-blocks-p original))
    (let ((outputs (gradients-build--produce org-file original "run"))
          (before (gradients-build--installed-before))
          made)
      (gradients-build--check-not-emptied before outputs)
      ;; The results are recorded from a kernel of their own.
      (gradients-stop-sessions)
      (gradients-build--make-scratch project)
      (let* ((blocks (gradients-build--read-blocks))
             (gradients-picture-destination #'gradients-build--picture-destination)
             ;; A block is named by its line in the file, not in the buffer
             ;; that holds the results of the blocks above it.
             (gradients-block-line-function
              (lambda (head)
                (plist-get (cl-find head blocks :key (lambda (block)
                                                       (marker-position (plist-get block :marker))))
                           :line))))
        (gradients-build--check-blocks blocks)
        ;; An edit saved meanwhile is found by `gradients-build--check-unchanged'
        ;; and kept; Emacs must not ask about it as Org writes a result.
        (load "userlock" nil t)
        (cl-letf (((symbol-function 'userlock--ask-user-about-supersession-threat) #'ignore))
          (dolist (block blocks)
            (when (gradients-build--runs-p block)
              (goto-char (plist-get block :marker))
              (let* ((org-babel-current-src-block-location (plist-get block :marker))
                     (replies nil)
                     (gradients-reply-functions
                      (cons (lambda (_request reply) (push reply replies))
                            gradients-reply-functions)))
                (gradients-build--run-noted
                 block (lambda ()
                         (let ((inhibit-message t))
                           (org-babel-execute-src-block))))
                ;; Its own, the last: a block runs no other (no :var of a
                ;; block passes the checks).
                (push (car replies) made)))))
        (gradients-build--release-markers blocks)
        (gradients-stop-sessions))
      (gradients-build--check-as-written)
      (let ((kept (gradients-build--read-json (gradients-build--produced-file project) t)))
        (gradients-build--check-reads-unchanged kept)
        (gradients-build--check-reproduced (nreverse made) kept))
      (let ((copy (expand-file-name (file-name-nondirectory org-file) gradients-build--scratch))
            (coding-system-for-write 'utf-8-unix))
        ;; The outputs of the build's run, which `make test' compares
        ;; with the committed ones, beside the Org file, all moved into
        ;; place together.
        (dolist (output outputs)
          (let ((to (expand-file-name output gradients-build--scratch)))
            (make-directory (file-name-directory to) t)
            (copy-file (gradients-build--produced-file project output) to t t)))
        (write-region nil nil copy nil 'silent)
        (set-buffer-modified-p nil)
        ;; As near the install as can be: an edit saved meanwhile is kept.
        (gradients-build--check-unchanged org-file original "run")
        (gradients-build--install
         gradients-build--scratch (cons (file-name-nondirectory org-file) outputs))
        ;; What the build keeps of the notes is read again from them as
        ;; they are now: the same run, reused, with the results just
        ;; written, so that neither `make test' nor `make tangle' finds
        ;; anything to do.
        (let ((now (gradients-build--file-bytes org-file)))
          ;; The buffer holds what was just moved into place: not an
          ;; edit made elsewhere, for Emacs to ask about.
          (set-visited-file-modtime)
          (delete-directory gradients-build--scratch t)
          (gradients-build--make-scratch project)
          (gradients-build--produce org-file now "run" 'kept-only)
          (gradients-build--write-outputs-list
           outputs (gradients-build--remove-retired-outputs
                    before outputs (decode-coding-string now 'utf-8-unix))))))))

;;; build.el ends here
