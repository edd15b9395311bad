;;; build.el --- the batch build behind `make tangle' and `make run'  -*- lexical-binding: t -*-

;; emacs -Q --batch -l tools/build.el -f gradients-build-tangle README.org
;; emacs -Q --batch -l tools/build.el -f gradients-build-run README.org
;;
;; Both work on a copy of the Org file in a scratch folder under .build/:
;; tangled files and pictures land beside the copy, however a release of
;; Org resolves relative paths (Org 9.7 resolves :tangle against the Org
;; file's folder, earlier releases against `default-directory'; here the
;; two are the same folder).  Only once every block has run are the results
;; moved into the project, and a file whose new bytes equal the old ones is
;; not rewritten, so its timestamp keeps meaning "content changed".
;; Anything that goes wrong, Ctrl-C included, leaves every output as it was;
;; Ctrl-C during the final moves completes them instead, so the outputs are
;; never half old and half new.

;;; Code:

(defconst gradients-build-directory
  (file-name-directory (or load-file-name buffer-file-name)))

;; Opening an Org file loads every link module in `org-modules' (Gnus,
;; Rmail, EWW...) and version control looks for git: together most of the
;; start-up time of a batch run, and none of it is needed here.
(setq org-modules nil
      vc-handled-backends nil)

(load (expand-file-name "ob-gradients" gradients-build-directory) nil t)

(defconst gradients-build-outputs-file ".build/outputs"
  "What the last successful `make tangle' produced, one path a line.
The Makefile reads it: the build, not a second parser, says what the
outputs are.")

(defvar gradients-build--scratch nil
  "The scratch folder of the running build, removed however the build ends.")

(defvar gradients-build--project nil
  "The folder of the Org file being built: where the outputs go.")

(defvar gradients-build--moves nil
  "The moves still to make once the install has begun: (FROM . TO) pairs.")

;;;; Reading the Org file

;; These checks need no Org, so they run before it loads and before the
;; kernel starts: bad input fails at once.

(defun gradients-build--org-file ()
  (let ((file (pop command-line-args-left)))
    (unless (and file (file-readable-p file))
      (error "Usage: emacs --batch -l tools/build.el -f FUNCTION README.org"))
    (expand-file-name file)))

(defvar gradients-build--org-name nil
  "The Org file's name, for messages about the text being checked.")

(defun gradients-build--fail-at (line format-string &rest args)
  (error "%s:%d: %s" gradients-build--org-name line (apply #'format format-string args)))

(defun gradients-build--check-utf-8 ()
  "Fail on the first byte of the buffer that did not decode as UTF-8."
  (save-excursion
    (goto-char (point-min))
    ;; Undecodable bytes become the raw-byte characters #x3FFF80-#x3FFFFF.
    (when (re-search-forward "[\x3fff80-\x3fffff]" nil t)
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
       "the line ends in CR LF (Windows line ends), which Org reads as part of the line; save the notes with LF line ends"))))

(defun gradients-build--check-structure ()
  "Fail on a block or drawer that is never closed: Org would quietly read
it as plain text, and its code would neither run nor be tangled."
  (save-excursion
    (goto-char (point-min))
    (let ((case-fold-search t) block block-line drawer drawer-line)
      (while (not (eobp))
        (cond
         (block
          (when (looking-at (format "[ \t]*#\\+end_%s[ \t]*$" (regexp-quote block)))
            (setq block nil)))
         ((looking-at "[ \t]*#\\+begin_\\(\\S-+\\)")
          (setq block (match-string 1) block-line (line-number-at-pos)))
         ((looking-at "[ \t]*:end:[ \t]*$")
          (setq drawer nil))
         ((or (looking-at "\\*+ ") (looking-at "[ \t]*:\\([-_[:alnum:]]+\\):[ \t]*$"))
          (when drawer
            (gradients-build--fail-at drawer-line "drawer :%s: has no :end:" drawer))
          (when (match-beginning 1)
            (setq drawer (match-string 1) drawer-line (line-number-at-pos)))))
        (forward-line))
      (when block
        (gradients-build--fail-at block-line "#+begin_%s has no #+end_%s" block block))
      (when drawer
        (gradients-build--fail-at drawer-line "drawer :%s: has no :end:" drawer)))))

(defun gradients-build--check-links ()
  "Fail on a link to a picture an interactive run saved for a block
without :file: GitHub would show a broken picture."
  (save-excursion
    (goto-char (point-min))
    (when (re-search-forward
           (concat "\\[\\[file:\\(?:\\./\\)?"
                   (regexp-quote gradients-loose-picture-folder) "/[^]]*")
           nil t)
      (gradients-build--fail-at
       (line-number-at-pos)
       "%s is a picture saved by an interactive run, which GitHub cannot show; give its block a :file under images/"
       (substring (match-string 0) 7)))))

(defun gradients-build--check-calls ()
  "Fail on a #+CALL line or an inline block: the build runs only source
blocks, so their results would never be refreshed, nor checked."
  (save-excursion
    (goto-char (point-min))
    (let ((case-fold-search t))
      (when (re-search-forward "^[ \t]*#\\+call:\\|\\_<src_[-a-z0-9]+[[{]" nil t)
        (gradients-build--fail-at
         (line-number-at-pos)
         "%s is not run by the build, so its result would go stale; use a source block"
         (if (string-prefix-p "src_" (downcase (string-trim-left (match-string 0))))
             "an inline source block" "a #+CALL line"))))))

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
      (gradients-build--check-line-ends)
      (gradients-build--check-structure)
      (gradients-build--check-links)
      (gradients-build--check-calls))
    bytes))

(defvar gradients-build--original nil
  "The bytes of the Org file being built, as they were read and checked.")

(defun gradients-build--check-rewritable (org-file)
  "Fail unless ORG-FILE is a file its owner may write: the install renames
the new copy over it, which would turn a link into a file and overwrite
a file made read-only, as no editor would."
  (let ((name (file-name-nondirectory org-file)))
    (when (file-symlink-p org-file)
      (error "%s is a symbolic link, which `make run' would replace with a file; run it where the link points (%s)"
             name (file-truename org-file)))
    (unless (and (file-writable-p org-file) (/= 0 (logand (file-modes org-file) #o200)))
      (error "%s is read-only; make it writable (chmod u+w %s) for `make run' to rewrite it"
             name name))))

;; A build that runs blocks starts its kernel as soon as the file passed
;; those checks: it boots while Emacs loads Org, opens the file and tangles.
;; Every kernel runs in the Org file's folder: not the folder Emacs was
;; started from, nor the scratch folder a later session would start in,
;; whose name would show in results and whose files would be taken for
;; outputs.
(let ((org-file (cadr (or (member "gradients-build-tangle" command-line-args-left)
                          (member "gradients-build-run" command-line-args-left)))))
  (when org-file
    (condition-case err
        (progn
          (when (member "gradients-build-run" command-line-args-left)
            (gradients-build--check-rewritable (expand-file-name org-file)))
          (setq gradients-build--original
                (gradients-build--read-and-check (expand-file-name org-file))
                gradients-kernel-directory
                (file-name-directory (expand-file-name org-file)))
          (when (string-match-p "#\\+begin_src[ \t]+jupyter-python" gradients-build--original)
            (gradients-start-session "gradients")))
      (error (message "%s" (error-message-string err))
             (message "Nothing was changed.")
             (kill-emacs 1)))))

(require 'org)
(require 'ob-tangle)

(setq org-confirm-babel-evaluate nil     ; batch: nobody to ask
      make-backup-files nil
      ;; Tangling visits python-mode, which would guess and complain.
      python-indent-guess-indent-offset nil)

;; The scratch folder has none of the project's folders: a block tangled
;; into one must be able to make it there.
(add-to-list 'org-babel-default-header-args '(:mkdirp . "yes"))

(defvar gradients-build--problems nil
  "What the header checks found so far: (LINE . MESSAGE) pairs.")

(defmacro gradients-build--noting-problem (&rest body)
  "Run BODY; if it fails, note its message, at the current line, and go on."
  `(condition-case err
       (progn ,@body)
     (error (push (cons (line-number-at-pos) (error-message-string err))
                  gradients-build--problems))))

(defun gradients-build--check-header-properties ()
  "Note each unknown name in a header-args property, naming its line."
  (save-excursion
    (goto-char (point-min))
    (let ((case-fold-search t))
      (while (re-search-forward
              (concat "^[ \t]*\\(?:#\\+PROPERTY:[ \t]+header-args\\(?::\\(\\S-+?\\)\\)?\\+?"
                      "\\|:header-args\\(?::\\(\\S-+?\\)\\)?\\+?:\\)[ \t]+\\(.*\\)$")
              nil t)
        (dolist (name (gradients-unknown-header-names
                       (match-string 3) (or (match-string 1) (match-string 2))))
          (gradients-build--noting-problem
           (error "%s:%d: unknown header argument %s; Org would ignore it (a typo?)"
                  (file-name-nondirectory (buffer-file-name)) (line-number-at-pos) name)))))))

(defun gradients-build--check-path (key path home)
  (when (and (stringp path)
             (not (and (eq key :tangle) (member path '("yes" "no"))))
             (or (file-name-absolute-p path)
                 (not (file-in-directory-p (expand-file-name path home) home))))
    (error "%s: %s %s is outside the project; use a path under this folder, such as images/%s"
           (gradients-block-description) key path (file-name-nondirectory path)))
  ;; The Makefile reads the list of outputs split at spaces.
  (when (and (stringp path) (string-match-p "[[:space:]]" path))
    (error "%s: %s %s has a space, which make cannot tell from two files; use - or _ instead"
           (gradients-block-description) key path)))

(defconst gradients-build--picture-extensions '("png" "svg")
  "What a :file may end in: the pictures the kernel bridge can write.")

(defun gradients-build--check-picture (file pictures)
  "Fail on a :file the bridge cannot draw, or one an earlier block in
PICTURES (an alist of file and description) draws already: the second
would silently replace the first, and both drawers show the same picture."
  (when (stringp file)
    (unless (member (downcase (or (file-name-extension file) ""))
                    gradients-build--picture-extensions)
      (error "%s: :file %s is not a picture the build can draw; end it in .%s"
             (gradients-block-description) file
             (mapconcat #'identity gradients-build--picture-extensions " or .")))
    (let ((earlier (assoc file pictures)))
      (when earlier
        (error "%s: :file %s is drawn already by %s; give each picture its own file"
               (gradients-block-description) file (cdr earlier))))))

(defun gradients-build--check-results (params)
  "Fail on `:results file' with a :file: Org would write the drawer's
text, the link, over the picture the block drew."
  (let ((results (split-string (or (cdr (assq :results params)) ""))))
    (when (and (member "file" results) (cdr (assq :file params))
               (not (or (member "link" results) (member "graphics" results))))
      (error "%s: :results file would make Org write the link over the picture; drop `file', :file alone draws it"
             (gradients-block-description)))))

(defun gradients-build--check-headers ()
  "Fail on every header argument that would go wrong, each on a line of
its own, as a linter does: a name Org does not know, a :timeout that is
not a number of seconds, a :file or :tangle that would write outside the
Org file's folder.  Runs before any block, so a bad header costs nothing."
  (let ((home (file-name-directory (buffer-file-name)))
        (gradients-build--problems nil)
        (pictures nil))
    (gradients-build--check-header-properties)
    (org-babel-map-src-blocks nil
      (let ((org-babel-current-src-block-location beg-block)
            (params (nth 2 (org-babel-get-src-block-info 'light))))
        (gradients-build--noting-problem
         (gradients-check-header-names (org-element-at-point)))
        (when (equal lang "jupyter-python")
          (gradients-build--noting-problem (gradients--timeout params))
          (gradients-build--noting-problem (gradients-build--check-results params))
          (let ((file (cdr (assq :file params))))
            (gradients-build--noting-problem
             (gradients-build--check-picture file pictures))
            (when (stringp file)
              (push (cons file (gradients-block-description)) pictures))))
        (dolist (key '(:file :tangle))
          (gradients-build--noting-problem
           (gradients-build--check-path key (cdr (assq key params)) home)))))
    (when gradients-build--problems
      (error "%s" (mapconcat #'cdr (sort (nreverse gradients-build--problems)
                                         (lambda (a b) (< (car a) (car b))))
                             "\n")))))

(defun gradients-build--open-copy (org-file original scratch)
  "Visit a copy in SCRATCH of ORG-FILE, whose bytes are ORIGINAL; check
what needs Org, and return the copy's buffer.  The copy is always decoded
as UTF-8, so Emacs never asks for a coding system, not even on a terminal."
  (let ((copy (expand-file-name (file-name-nondirectory org-file) scratch)))
    (with-temp-file copy
      (set-buffer-multibyte nil)
      (setq buffer-file-coding-system 'no-conversion)
      (insert original))
    (let ((coding-system-for-read 'utf-8-unix)
          (enable-local-variables :safe))
      (with-current-buffer (find-file-noselect copy)
        (gradients-build--check-headers)
        (current-buffer)))))

;;;; Installing the results

(defun gradients-build--same-bytes-p (a b)
  (and (file-exists-p b)
       (string= (gradients-build--file-bytes a) (gradients-build--file-bytes b))))

(defvar gradients-build--written nil
  "The outputs moved into place so far, relative to the project.")

(defun gradients-build--finish-moves ()
  "Make every move left in `gradients-build--moves'.  Also run from
`kill-emacs-hook', so that Ctrl-C during the install completes it."
  (while gradients-build--moves
    (let ((move (car gradients-build--moves)))
      ;; Ctrl-C right after a rename finds that move still listed.
      (when (file-exists-p (car move))
        (make-directory (file-name-directory (cdr move)) t)
        (rename-file (car move) (cdr move) t)
        (push (file-relative-name (cdr move) gradients-build--project)
              gradients-build--written)
        (message "wrote %s" (car gradients-build--written)))
      (setq gradients-build--moves (cdr gradients-build--moves)))))

(defun gradients-build--check-replaceable (target project)
  "Fail unless a rename can put a file at TARGET: its folder, or the
nearest one that exists, must be writable, and TARGET no folder.  Checked
for every output before the first move, so that a folder the build
cannot write stops it with nothing changed, not halfway through."
  (let ((relative (file-relative-name target project))
        (folder (file-name-directory target)))
    (when (file-directory-p target)
      (error "Cannot write %s: it is a folder" relative))
    (while (not (file-directory-p folder))
      (when (file-exists-p (directory-file-name folder))
        (error "Cannot write %s: %s is not a folder" relative
               (file-relative-name (directory-file-name folder) project)))
      (setq folder (file-name-directory (directory-file-name folder))))
    (unless (file-writable-p folder)
      (error "Cannot write %s: the folder %s is not writable" relative
             (file-relative-name folder project)))))

(defun gradients-build--install (scratch project)
  "Move every file under SCRATCH to the same place under PROJECT, unless
it is already there byte for byte; return the relative paths of them all.
Each move is a rename on one disk, so no file is ever half written."
  (let (moves outputs)
    (dolist (new (directory-files-recursively scratch ""))
      (let* ((relative (file-relative-name new scratch))
             (target (expand-file-name relative project)))
        (push relative outputs)
        (if (gradients-build--same-bytes-p new target)
            (message "unchanged %s" relative)
          (push (cons new target) moves))))
    (dolist (move moves)
      (gradients-build--check-replaceable (cdr move) project))
    (setq gradients-build--moves (nreverse moves))
    (gradients-build--finish-moves)
    (nreverse outputs)))

(defun gradients-build--cleanup ()
  "Finish an install that was begun, remove the scratch folder, stop the
kernels.  Runs however the build ends, Ctrl-C included."
  (gradients-build--finish-moves)
  (when gradients-build--scratch
    (delete-directory gradients-build--scratch t)
    (setq gradients-build--scratch nil))
  (gradients-stop-sessions 'no-wait))

(add-hook 'kill-emacs-hook #'gradients-build--cleanup)

;;;; Running the blocks

(defun gradients-build--jupyter-blocks ()
  "Positions of the `jupyter-python' blocks to evaluate, in order."
  (let (positions)
    (org-babel-map-src-blocks nil
      (when (and (string= lang "jupyter-python")
                 (org-babel-check-evaluate (org-babel-get-src-block-info 'light)))
        (push (copy-marker beg-block) positions)))
    (nreverse positions)))

(defun gradients-build--each-block (run)
  "Call RUN with point on each block to evaluate, announcing each one.
Org's own \"executing\" lines are silenced: not every release prints
them, and the build's own lines say the same on all of them."
  (dolist (position (gradients-build--jupyter-blocks))
    (goto-char position)
    (let ((org-babel-current-src-block-location position))
      (message "running %s" (gradients-block-description))
      (let ((inhibit-message t))
        (funcall run position)))))

(defun gradients-build--run-pictures ()
  "Run every block of the current buffer, only writing the pictures."
  (gradients-build--each-block
   (lambda (_position)
     (let* ((info (org-babel-get-src-block-info))
            (params (org-babel-process-params (nth 2 info))))
       (gradients-execute (org-babel--expand-body info) params)))))

(defun gradients-build--run-results ()
  "Run every block of the current buffer through org-babel, which writes
the results drawers."
  (gradients-build--each-block
   (lambda (_position) (org-babel-execute-src-block))))

(defmacro gradients-build--main (&rest body)
  "Run BODY in a checked copy of the Org file named on the command line,
in a scratch folder; exit 1 on error, having changed nothing.  BODY sees
`org-file', `original' (its bytes when the build began), `project' (its
folder) and `scratch'."
  `(condition-case err
       (let* ((org-file (gradients-build--org-file))
              (project (file-name-directory org-file))
              (original (or gradients-build--original
                            (gradients-build--read-and-check org-file)))
              (scratch (progn
                         (make-directory (expand-file-name ".build" project) t)
                         (file-name-as-directory
                          (make-temp-file (expand-file-name ".build/run-" project) t)))))
         (ignore original)
         (setq gradients-build--scratch scratch
               gradients-build--project project)
         (with-current-buffer (gradients-build--open-copy org-file original scratch)
           (let ((default-directory scratch))
             ,@body))
         (gradients-build--cleanup))
     (error
      ;; A move that failed is not tried again on the way out.
      (setq gradients-build--moves nil)
      (message "%s" (error-message-string err))
      (message "%s" (if gradients-build--written
                        (format "Only some outputs were written: %s"
                                (mapconcat #'identity (reverse gradients-build--written) ", "))
                      "Nothing was changed."))
      (gradients-build--cleanup)
      (kill-emacs 1))))

(defun gradients-build--write-outputs-list (outputs project)
  (let* ((file (expand-file-name gradients-build-outputs-file project))
         (temporary (make-temp-file (concat file "-"))))
    (with-temp-file temporary
      (insert (mapconcat #'identity outputs "\n") "\n"))
    (rename-file temporary file t)))

(defun gradients-build--check-unchanged (org-file original target)
  "Fail if ORG-FILE no longer holds ORIGINAL, the bytes the build began
with: an edit saved meanwhile is kept, and built by the next run of
`make TARGET'.  For `make tangle' this matters as much as for `make
run': the list of outputs, written last, is make's stamp, and would be
newer than the edit, so make would never build it."
  (unless (equal (gradients-build--file-bytes org-file) original)
    (error "%s changed on disk while the blocks ran; it is kept as it is now, run `make %s' again"
           (file-name-nondirectory org-file) target)))

(defun gradients-build-tangle ()
  "Tangle gradients.py and draw every picture."
  (gradients-build--main
   (org-babel-tangle)
   (gradients-build--run-pictures)
   ;; The copy of the Org file is not an output: only `make run' writes it.
   (delete-file (buffer-file-name))
   (set-buffer-modified-p nil)
   (gradients-build--check-unchanged org-file original "tangle")
   (gradients-build--write-outputs-list (gradients-build--install scratch project) project)))

(defun gradients-build-run ()
  "Restart and run all: every results drawer and picture, from a fresh kernel."
  (gradients-build--main
   (gradients-build--run-results)
   (let ((coding-system-for-write 'utf-8-unix))
     (save-buffer))
   ;; The new copy keeps the permissions of the file it replaces.
   (set-file-modes (buffer-file-name) (file-modes org-file))
   (gradients-build--check-unchanged org-file original "run")
   (gradients-build--install scratch project)))

;; For the tests: emacs --batch -l tools/build.el -f gradients-build-tangle-into
;; README.org DIR tangles into DIR and touches nothing else.
(defun gradients-build-tangle-into ()
  "Tangle the Org file named on the command line into the folder after it."
  (let* ((org-file (gradients-build--org-file))
         (target (file-name-as-directory (expand-file-name (pop command-line-args-left)))))
    (make-directory target t)
    (with-current-buffer (gradients-build--open-copy
                          org-file (gradients-build--read-and-check org-file) target)
      (let ((default-directory target))
        (org-babel-tangle))
      (delete-file (buffer-file-name))
      (set-buffer-modified-p nil))))

;;; build.el ends here
