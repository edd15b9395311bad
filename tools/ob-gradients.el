;;; ob-gradients.el --- run jupyter-python blocks without emacs-jupyter  -*- lexical-binding: t -*-

;; emacs-jupyter is the usual way to run `jupyter-python' blocks, but it is
;; not packaged for Debian and its :file code needs a newer Emacs.  This
;; file gives org-babel a small executor of its own for that language: each
;; session is one kernel_bridge.py process (beside this file), which runs
;; the project's ipykernel from .venv and answers with the text that goes
;; into the results drawer.  It steps aside when emacs-jupyter is loaded.
;;
;; Interactively: M-x load-file RET tools/ob-gradients.el RET, then C-c C-c.
;; With `:async yes' (the notes' default) C-c C-c returns at once, the
;; drawer says the block is waiting, and the result replaces that when it
;; arrives; blocks run one after another in the order they were started.
;; A block whose value Org needs at once (a :var, a #+CALL line, an inline
;; block) is waited for even so.
;; A block that is the value of a :var gets the value as ob-python gives
;; it (str() of the last expression), and runs once.
;; A result goes to the drawer that holds its placeholder, in the file's
;; own buffer, wherever the block moved meanwhile; one that has nowhere
;; to go is reported and kept in the buffer *gradients-unwritten*.
;; Each session name gets one kernel per folder: notes elsewhere that
;; say `:session gradients' never share the kernel of README.org.
;; M-x gradients-interrupt stops the running block and drops the queued
;; ones; M-x gradients-restart starts a fresh kernel in the same folder.
;; C-x C-c while blocks run asks first whether to stop them, and puts
;; their earlier results back before Emacs offers to save.  Batch builds
;; always wait for each block.  In a graphical Emacs a block's picture is
;; redrawn in place each time it runs.

;;; Code:

;; Three files, one concern each: gradients-kernel.el is the kernel
;; client, this file the Org Babel executor, gradients-editing.el the
;; editor's set-up.  Org itself is not required here: the batch build
;; starts the kernel first and loads Org while it boots.  Everything
;; Org-related below runs only once Org is there.
(require 'cl-lib)
(require 'json)
;; Compiling needs their definitions too (their macros, which variables
;; are special, which functions exist).
(eval-and-compile
  (let ((load-path (cons (file-name-directory (or (macroexp-file-name) buffer-file-name))
                         load-path)))
    (load "gradients-kernel" nil t)
    (load "gradients-editing" nil t)))

(defvar org-babel-current-src-block-location)
(defvar org-babel-after-execute-hook)
(declare-function org-babel-balanced-split "ob-core")
(declare-function org-babel-where-is-src-block-head "ob-core")
(declare-function org-babel-get-src-block-info "ob-core")
(declare-function org-babel-where-is-src-block-result "ob-core")
(declare-function org-babel-remove-result "ob-core")
(declare-function org-babel-insert-result "ob-core")
(declare-function org-element-at-point "org-element")
(declare-function org-element-property "org-element")
(declare-function org-current-line "org-macs")
(declare-function org-remove-indentation "org-macs")
(declare-function org-babel-result-end "ob-core")
(declare-function org-babel-find-named-block "ob-core")
(declare-function org-babel-expand-body:generic "ob-core")
(declare-function org-babel-parse-header-arguments "ob-core")
(declare-function org-element-type "org-element")
(declare-function org-babel-variable-assignments:python "ob-python")
(declare-function org-babel-python-table-or-string "ob-python")
(defvar org-babel-header-arg-names)
(defvar gradients--placeholder-regexp)
(defvar org-babel-tangle-lang-exts)
(defvar org-babel-common-header-args-w-values)

(defcustom gradients-batch-timeout 300
  "Seconds a block may run in a batch build unless it says `:timeout N'."
  :type 'number :group 'gradients)

;; What the batch build does differently, each bound by build.el: the
;; executor itself never asks whether Emacs runs in batch.
(defvar gradients-default-timeout nil
  "Seconds a block may run unless it says `:timeout N'; nil for no limit.")

(defvar gradients-allow-async t
  "Whether `:async yes' is honoured; nil makes every block wait.")

(defvar gradients-save-loose-pictures t
  "Whether the pictures of a block without :file are saved and linked.")

(defvar gradients-results-for-the-notes nil
  "Whether results are recorded by the build: the bridge then refuses
what the notes could not keep as the block made it (see check_repeatable
in kernel_bridge.py).  Interactively such a result is shown as it is.")

(defvar gradients-tracebacks-in-errors nil
  "Whether a failing block's error carries its whole traceback, rather
than one line, with the traceback shown in its own buffer.")

(defcustom gradients-max-result-lines 1000
  "A block whose result is longer fails: the notes are for people to read."
  :type 'natnum :group 'gradients)

(defcustom gradients-loose-picture-folder ".build/pictures"
  "Where an interactive run saves the pictures of a block without :file,
relative to the Org file.  It is ignored by git: such pictures are for
looking at, and only a :file under images/ goes on GitHub."
  :type 'string :group 'gradients)

(defconst gradients-traceback-buffer "*gradients-traceback*")

;;;; Placeholders in saved files

(defconst gradients-placeholder-line-regexp
  "^[ \t]*: \\[waiting for the kernel: request \\([0-9]+\\)\\][ \t]*$"
  "Matches a line of a results drawer whose block is waiting for the
kernel; group 1 is the request.  Such a line in a saved file means that
a result never arrived: the build refuses it.")

(defun gradients--alone-in-drawer-p ()
  "Whether the line at point is the whole of a results drawer, as the
executor writes a placeholder."
  (save-excursion
    (forward-line 0)
    (and (save-excursion (forward-line 1) (looking-at-p "[ \t]*:end:[ \t]*$"))
         (progn (forward-line -1) (looking-at-p "[ \t]*:results:[ \t]*$")))))

(defun gradients-placeholder-lines ()
  "The line numbers of the placeholders in the current buffer, all of it:
lines that are the whole of a results drawer, as the executor writes
one (`gradients--placeholder-regexp'); a block may print such a line
among others."
  (save-excursion
    (save-restriction
      (widen)
      (goto-char (point-min))
      (let ((case-fold-search nil) lines)
        (while (re-search-forward gradients-placeholder-line-regexp nil t)
          (when (gradients--alone-in-drawer-p)
            (push (line-number-at-pos (match-beginning 0)) lines)))
        (nreverse lines)))))

(defun gradients--dead-placeholder-lines (lines)
  "Those of LINES, placeholders' line numbers, whose request is no longer
pending in this Emacs: no result will ever fill them."
  (let ((pending (mapcar #'gradients-request-id (gradients--pending-requests))))
    (cl-remove-if (lambda (line)
                    (save-excursion
                      (save-restriction
                        (widen)
                        (goto-char (point-min))
                        (forward-line (1- line))
                        (looking-at gradients-placeholder-line-regexp)
                        (memq (string-to-number (match-string 1)) pending))))
                  lines)))

(defun gradients--warn-of-saved-placeholders ()
  "After saving an Org file, say which of its lines are placeholders:
those results are not in the file.  Saving is not refused: an author
saves while a long block runs, and saves again when it is done."
  (when (derived-mode-p 'org-mode)
    (let ((lines (gradients-placeholder-lines)))
      (when lines
        (let ((stale (length (gradients--dead-placeholder-lines lines))))
          (message "gradients: %s was saved with %d block%s waiting for the kernel (line%s %s)%s"
                   (buffer-name) (length lines) (if (cdr lines) "s" "")
                   (if (cdr lines) "s" "") (mapconcat #'number-to-string lines ", ")
                   (if (zerop stale)
                       "; save again once their results are in"
                     (format "; %d of them will never get a result: run %s again"
                             stale (if (= stale 1) "that block" "those blocks")))))))))

(add-hook 'after-save-hook #'gradients--warn-of-saved-placeholders)

(defun gradients--warn-of-undone-results (&rest _)
  "After an undo, say so when it brought back the placeholder of a run
that has ended: the step that wrote a result gives back what was there
just before, the placeholder, and the drawer's earlier text comes only
with the step that wrote the placeholder, behind any typed while the
block ran (the undo list records positions, and rewriting one step
would throw every older one off)."
  (when (derived-mode-p 'org-mode)
    (let ((dead (gradients--dead-placeholder-lines (gradients-placeholder-lines))))
      (when dead
        ;; After the undo command's own "Undo".
        (run-at-time 0 nil #'message "gradients: line%s %s hold%s the placeholder of a run that has ended, brought back by the undo: undo on, past what was typed while the block ran, for what the drawer held before, or run the block again"
                     (if (cdr dead) "s" "") (mapconcat #'number-to-string dead ", ")
                     (if (cdr dead) "" "s"))))))

(advice-add 'primitive-undo :after #'gradients--warn-of-undone-results)

;;;; Running a block

(defun gradients--own-head (&optional element)
  "Where the source block at point begins, or nil.  ELEMENT, when given,
is the element at point: Org 9.5 keeps no parse, and each look costs a
parse of the section."
  (save-excursion (org-babel-where-is-src-block-head
                   (or element (org-element-at-point)))))

(defun gradients--block-head (&optional element)
  "Where the block being run begins: the source block at point, or else
the line Org runs it from (a #+CALL line).  Org's location names the
block the user ran, which is another one when this block is the value
of its :var.  ELEMENT is as for `gradients--own-head'."
  (or (gradients--own-head element)
      org-babel-current-src-block-location))

(defun gradients--file-label ()
  "The name of the Org file being worked on, for messages; an indirect
buffer (C-c C-x b) is named after the file it shows."
  (let ((base (or (buffer-base-buffer) (current-buffer))))
    (file-name-nondirectory (or (buffer-file-name base) (buffer-name base)))))

(defvar gradients-block-line-function nil
  "Function of the position of a block's head returning the line to name
the block by, or nil for the line it is on in the buffer.  `make run'
binds it: Org has written the results of the blocks above into the
buffer by then, and the file, which a failing block leaves as it was,
has the block on another line.")

(defun gradients-block-description (&optional element)
  "Where the block at point is, for messages: file, line and name.
ELEMENT is as for `gradients--own-head'."
  (let* ((element (or element (org-element-at-point)))
         (own (gradients--own-head element))
         (head (or own (gradients--block-head element) (point)))
         (name (if own
                   (org-element-property :name element)
                 (save-excursion
                   (goto-char head)
                   (org-element-property :name (org-element-at-point))))))
    (format "%s:%d: block %s"
            (gradients--file-label)
            (or (and gradients-block-line-function
                     (funcall gradients-block-line-function head))
                (org-current-line head))
            (if name (format "`%s'" name) "(unnamed)"))))

(defun gradients--session-name (params)
  (let ((session (cdr (assq :session params))))
    (if (member session '(nil "none")) "default" session)))

(defun gradients--session-process (params)
  (let* ((name (gradients--session-name params))
         (process (gradients-start-session name)))
    (unless (process-get process 'announced)
      (process-put process 'announced t)
      (when gradients-chatty
        (message "gradients: starting a kernel for session %s in %s%s" name
                 (abbreviate-file-name (process-get process 'directory))
                 (let ((others (cl-remove-if
                                (lambda (session)
                                  (or (eq (cdr session) process)
                                      (not (equal (car session) name))
                                      (not (process-live-p (cdr session)))))
                                gradients--sessions)))
                   (if others
                       (format " (the session %s in %s has a kernel of its own)" name
                               (mapconcat (lambda (session)
                                            (abbreviate-file-name
                                             (process-get (cdr session) 'directory)))
                                          others ", "))
                     "")))))
    process))

(defun gradients--timeout (params)
  "The seconds PARAMS give the block with `:timeout', or nil for none.
A value that is not a positive number is a typo to point at, not a
reason to fall back on the default in silence."
  (let ((value (cdr (assq :timeout params))))
    (cond ((null value) nil)
          ;; Org reads 1e309 as infinity, and a 1 with 400 zeros as an
          ;; integer no float holds: the bridge's clock cannot count either.
          ((and (numberp value) (> value 0) (< (float value) 1.0e+INF)) value)
          ;; Said without the value, which Org read as infinity: 1e400
          ;; as written would be shown as 1.0e+INF.
          ((and (numberp value) (> value 0))
           (gradients--fail "%s: :timeout is more seconds than any clock counts; give a number of seconds, such as :timeout 60"
                            (gradients-block-description)))
          ((and (stringp value)
                (string-match-p "\\`\\([0-9]+\\.?[0-9]*\\|\\.[0-9]+\\)\\'" value)
                (> (string-to-number value) 0))
           (string-to-number value))
          (t (gradients--fail "%s: :timeout %s is not a number of seconds, such as :timeout 60"
                    (gradients-block-description) value)))))

(defun gradients--notes-folder ()
  "The folder of the Org file being worked on, where its links lead."
  (let ((file (buffer-file-name (or (buffer-base-buffer) (current-buffer)))))
    (if file (file-name-directory file) default-directory)))

(defvar gradients-picture-destination nil
  "Function of a block's :file (as its header gives it) returning the
absolute file its picture is written to, or nil to write it beside the
notes.  The batch build binds it, to draw into its scratch folder.")

(defconst gradients-raw-byte-regexp "[\x3fff80-\x3fffff]"
  "A byte Emacs could not decode, as it keeps one in a buffer or string:
one of the notes that is not UTF-8 when they were read as UTF-8.")

(defun gradients--check-utf-8 (where code file)
  "Fail, naming WHERE, when the block's CODE or its FILE (nil for none)
holds a byte that is not UTF-8: the request could not carry it to the
kernel, and the build refuses the notes for it."
  (pcase-dolist (`(,text . ,what) `((,code . "its code") (,file . "its :file")))
    (when (and text (string-match gradients-raw-byte-regexp text))
      (gradients--fail "%s: byte #x%X in %s%s is not UTF-8; the notes must be saved as UTF-8"
                       where (- (aref text (match-beginning 0)) #x3fff00) what
                       (if (eq text code)
                           (format " (line %d)" (1+ (cl-count ?\n text :end (match-beginning 0))))
                         "")))))

(defun gradients--new-request (body params &optional where value-of element place)
  "A request to run BODY with PARAMS, from the block at point, or from
the block WHERE names.  With VALUE-OF, the result params of a block
whose value Org wants, the request asks for that value, not for drawer
text.  ELEMENT is as for `gradients--own-head'.  PLACE, or else one
read from ELEMENT, is where BODY begins in the notes (see
`gradients-code-place')."
  (let* ((where (or where (gradients-block-description element)))
         (file (cdr (assq :file params)))
         (_ (gradients--check-utf-8 where body file))
         (home (gradients--notes-folder))
         (timeout (or (gradients--timeout params)
                      gradients-default-timeout))
         (loose (and (not file) gradients-save-loose-pictures (not value-of)
                     `((folder . ,(expand-file-name gradients-loose-picture-folder home))
                       (link . ,gradients-loose-picture-folder))))
         (id (cl-incf gradients--last-id)))
    (gradients--make-request
     :id id
     :where where
     :source (gradients--code-as-run element)
     :value-of value-of
     :timeout timeout
     :json (json-serialize
            `((id . ,id)
              (code . ,(if value-of
                           (gradients--value-code body (assq :result-type params)
                                                  (member "pp" value-of))
                         body))
              (file . ,(or file :null))
              ;; Absolute, so the picture lands beside this Org file
              ;; whatever folder the session's kernel was started from.
              (write_to . ,(cond ((null file) :null)
                                 (gradients-picture-destination
                                  (funcall gradients-picture-destination file))
                                 (t (expand-file-name file home))))
              (timeout . ,(or timeout :null))
              (max_lines . ,gradients-max-result-lines)
              (loose_pictures . ,(or loose :null))
              ;; How Org will insert the text: the bridge refuses one it
              ;; could not replace on the next run.
              (results . ,(vconcat (cdr (assq :result-params params))))
              (for_the_notes . ,(if (and gradients-results-for-the-notes (not value-of))
                                    t :false))
              ;; A tangled script shows no display: the notes may not
              ;; record one from a block it runs.
              (tangled . ,(let ((tangle (cdr (assq :tangle params))))
                            (if (and gradients-results-for-the-notes (not value-of)
                                     (stringp tangle) (not (equal tangle "no")))
                                tangle :null)))
              (wrap . ,(if (assq :wrap params) t :false))
              (notes . ,(or place (gradients-code-place element body))))))))

(defun gradients-same-code-p (code written)
  "Whether CODE, which a block runs, is WRITTEN, its code as written, but
for the line ends Org drops."
  (and code written
       (equal (string-trim-right code "\n+") (string-trim-right written "\n+"))))

(defun gradients-code-place (element body)
  "Where the first line of BODY is in the notes, as ((file . NAME) (line
. N)), for the bridge to name the notes' lines in a traceback; :null
where BODY is not ELEMENT's code as written (a :var, a noweb reference
or a prologue put lines in it), or ELEMENT is nil.  The build's blocks
and those run from Emacs alike."
  (let ((head (and element (gradients--own-head element))))
    (if (and head (gradients-same-code-p body (gradients--code-as-run element)))
        `((file . ,(gradients--file-label))
          (line . ,(1+ (or (and gradients-block-line-function
                                (funcall gradients-block-line-function head))
                           (org-current-line head)))))
      :null)))

(defun gradients--failure-message (request reply)
  "The one line that says why REQUEST failed; the traceback is shown apart."
  (let ((where (gradients-request-where request))
        (kind (alist-get 'kind reply))
        (summary (alist-get 'summary reply))
        (error (alist-get 'error reply)))
    (pcase kind
      ("raised" (format "%s raised %s" where summary))
      ("interrupted" (if (gradients-request-interrupted request)
                         (format "%s was interrupted (KeyboardInterrupt)" where)
                       ;; Its own doing, or a signal from outside Emacs.
                       (format "%s raised %s" where (or summary "KeyboardInterrupt"))))
      ("died" (let ((requeued (or (alist-get 'requeued reply) 0)))
                (format "%s %s: %s%s" where
                        ;; Killed from outside (kill -9, the memory's
                        ;; limit), the bridge was no doing of the block's.
                        (if (alist-get 'killed reply) "lost its kernel" "stopped the kernel")
                        (car (split-string error "\n"))
                        (cond ((not gradients-chatty) "")
                              ((zerop requeued)
                               ".  Its variables are gone; the next block starts a fresh kernel")
                              (t (format ".  Its variables are gone; the %s queued behind it %s on a fresh kernel"
                                         (if (= requeued 1) "block" (format "%d blocks" requeued))
                                         (if (= requeued 1) "runs" "run")))))))
      ("dropped" (format "%s did not run: %s" where error))
      ("stopped" (format "%s was stopped before it finished: %s" where error))
      (_ (format "%s %s" where error)))))

(defun gradients--show-failure (request reply)
  "Say why REQUEST failed: one line in the echo area, and in batch or in
the traceback buffer the whole story."
  (let ((line (gradients--failure-message request reply))
        (error (alist-get 'error reply)))
    (if gradients-tracebacks-in-errors
        (if (member (alist-get 'kind reply) '("raised" "interrupted"))
            (concat line "\n" error)
          line)
      (when (member (alist-get 'kind reply) '("raised" "interrupted" "died"))
        (with-current-buffer (get-buffer-create gradients-traceback-buffer)
          (let ((inhibit-read-only t)
                ;; A dead kernel's reason is in LINE already; only what
                ;; follows it (the bridge's last words) is news.
                (details (if (equal (alist-get 'kind reply) "died")
                             (string-trim (mapconcat #'identity
                                                     (cdr (split-string error "\n"))
                                                     "\n"))
                           error)))
            (erase-buffer)
            (insert line "\n")
            (unless (string-empty-p details)
              (insert "\n" details "\n")))
          (goto-char (point-min))
          (special-mode))
        (display-buffer gradients-traceback-buffer
                        '(nil (inhibit-same-window . t))))
      line)))

(defun gradients--result-text (request reply)
  "The drawer text of REPLY, or the value when REQUEST asked for one, or
an error for REQUEST's block."
  (if (alist-get 'ok reply)
      (let ((org (alist-get 'org reply)))
        (cond ((gradients-request-value-of request)
               (gradients--reply-value org (gradients-request-value-of request)))
              ((string-empty-p org) nil)
              ;; The drawer's own mark of a block still waiting: saved so,
              ;; the build refuses it as a result that never came.
              ((string-match-p gradients--placeholder-regexp org)
               (gradients--fail "%s made a result that reads as the placeholder of a block waiting for the kernel (%s); have it print something else"
                                (gradients-request-where request) org))
              (t org)))
    (gradients--fail "%s" (gradients--show-failure request reply))))

(defconst gradients--value-mark "gradients-value-of-block:"
  "Begins the line on which a block run for its value prints the value.")

(defun gradients--value-code (code result-type pretty)
  "Python that runs CODE as ob-python runs a session block whose value is
wanted, and prints that value, as JSON, on a line of its own.  The value
is str() of the last expression (pprint's form with PRETTY), or with
RESULT-TYPE `output' what CODE printed.  What CODE prints goes nowhere
else: a value is all a reference gets."
  (format "def __gradients_value(source, output, pretty):
    import ast, contextlib, io, json, pprint
    shell = get_ipython()
    tree = ast.parse(shell.transform_cell(source))
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(tree, '<block>', 'exec'), shell.user_ns)
        value = None if last is None else \\
            eval(compile(ast.Expression(last.value), '<block>', 'eval'), shell.user_ns)
    if output:
        text = printed.getvalue()
    elif last is None:
        text = ''
    else:
        text = pprint.pformat(value) if pretty else str(value)
    print(%s + json.dumps(text))
try:
    __gradients_value(%s, %s, %s)
finally:
    del __gradients_value
"
          (json-encode gradients--value-mark)
          (json-encode code)
          (if (eq (cdr result-type) 'output) "True" "False")
          (if pretty "True" "False")))

(defun gradients--value-form (result-params)
  "How Org takes a value with RESULT-PARAMS, as `org-babel-result-cond'
of the Org that runs decides: `scalar' (one string), `table' (read into
numbers, lists and tables) or nil (none at all).  The macro is expanded
here, when called, since its rules change between Org releases."
  (eval `(org-babel-result-cond ',result-params 'scalar 'table) t))

(defun gradients--reply-value (org result-params)
  "The value in drawer text ORG of a block run for its value, as
ob-python gives it for RESULT-PARAMS: a string, or a number, list or
table read from it."
  (let ((text (if (string-match (concat "^: " (regexp-quote gradients--value-mark) "\\(.*\\)$")
                                org)
                  (json-parse-string (match-string 1 org))
                org)))
    (pcase (gradients--value-form result-params)
      ('scalar text)
      ('table (require 'ob-python)
              (org-babel-python-table-or-string (string-trim text))))))

(defvar gradients--resolving-reference nil
  "Non-nil while Org computes the value of a reference to a block: a
:var, a noweb <<name()>>, `org-sbe'.")

(defvar gradients-refuse-runs-for-value nil
  "Non-nil where no block may be run for its value (a noweb <<name()>>,
a :var, `org-sbe'), of any language, in any file: in a build, which
runs each block once, in the notes' order, and tangles what it ran.")

(defconst gradients-run-for-value-refused "it has Org run "
  "How the refusal of a run for a value begins, for those who pass it on.")

(defun gradients--refuse-run-for-value (execute &rest arguments)
  "Around `org-babel-execute-src-block': fail, where runs for a value are
refused (`gradients-refuse-runs-for-value'), on one that is, before Org
says it executes the block."
  (if (not (and gradients-refuse-runs-for-value gradients--resolving-reference))
      (apply execute arguments)
    (let ((name (or (nth 4 (nth 1 arguments))
                    (org-element-property :name (org-element-at-point)))))
      (error "%sblock %s at %s:%d for its value (a noweb <<name()>>, a :var or org-sbe) whenever Org reads this block, out of the notes' order, and put the value in its code as a constant; compute it in this block's code instead"
             gradients-run-for-value-refused (if name (format "`%s'" name) "(unnamed)")
             (file-name-nondirectory (or (buffer-file-name (buffer-base-buffer)) (buffer-name)))
             (line-number-at-pos)))))

(defun gradients--resolve-reference (resolve &rest arguments)
  "Around `org-babel-ref-resolve': note that a block's value is wanted."
  (let ((gradients--resolving-reference t))
    (apply resolve arguments)))

(defun gradients--own-drawer-p (&optional element)
  "Whether Org puts the result below the source block at point, where a
placeholder can wait for it.  A block that is the value of a reference,
a #+CALL line and an inline block want the result itself: they wait.
ELEMENT is as for `gradients--own-head'."
  (let ((head (gradients--own-head element))
        (location org-babel-current-src-block-location))
    (and head (not gradients--resolving-reference)
         (or (null location)
             (= head (if (markerp location) (marker-position location) location))))))

(defun gradients--async-p (params)
  (and gradients-allow-async
       (member (cdr (assq :async params)) '("yes" yes t))))

;; A misspelt header argument is ignored by Org without a word: a block
;; with `:fiel images/x.png' would draw nothing where the notes expect it.
(defun gradients--header-pieces (arguments)
  "Header ARGUMENTS (a string) cut as Org cuts them: \":name value\" or
\":name\" each, blanks trimmed."
  (let ((raw (org-babel-balanced-split (string-trim arguments) '((32 9) . 58))))
    (delete "" (mapcar #'string-trim
                       (cons (or (car raw) "")
                             (mapcar (lambda (piece) (concat ":" piece)) (cdr raw)))))))

(defun gradients--known-header-names (language)
  "The header names Org or LANGUAGE's backend knows, without their colon;
LANGUAGE nil stands for every language."
  (let ((specific (intern-soft (format "org-babel-header-args:%s"
                                       (or language "jupyter-python")))))
    (append org-babel-header-arg-names
            (and specific (boundp specific) (mapcar #'car (symbol-value specific))))))

(defun gradients-header-names-without-value (arguments &optional language)
  "The names in header ARGUMENTS (a string) that Org or LANGUAGE's backend
knows, given no value: Org fails on them (a bare :var as it reads the
header, a bare :tangle as it tangles) saying only \"Wrong type
argument\", with no block nor line.  Unknown names are left to
`gradients-unknown-header-names'."
  (let ((known (gradients--known-header-names language))
        ;; Flags, which Org's table gives no values (:no-expand): Org
        ;; reads only whether they are there.
        (flags (mapcar #'car (cl-remove-if #'cdr org-babel-common-header-args-w-values))))
    (cl-loop for piece in (gradients--header-pieces arguments)
             for name = (intern piece)
             for bare = (intern (substring piece 1))
             ;; Those Org takes alone: :wrap wraps in a results block,
             ;; :file-desc describes the link by itself.
             unless (or (string-match-p "[ \f\t\n\r\v]" piece) (memq name '(:wrap :file-desc))
                        (memq bare flags) (not (memq bare known)))
             collect name)))

(defun gradients-unknown-header-names (arguments language)
  "The names in header ARGUMENTS (a string) that neither Org nor LANGUAGE's
backend knows; LANGUAGE nil stands for arguments given to every language."
  (let ((known (gradients--known-header-names language)))
    (cl-loop for piece in (gradients--header-pieces arguments)
             for key = (intern (car (split-string piece)))
             for name = (intern (substring (symbol-name key) 1))
             unless (memq name known) collect key)))

(defun gradients-header-without-value-message (names)
  "What to say of NAMES, header arguments given no value: Org fails on a
bare :tangle, :results or :var, and takes any other as given nothing."
  (format "%s %s no value, and Org would %s; give %s one, or remove %s"
          (mapconcat #'symbol-name names ", ") (if (cdr names) "have" "has")
          (let ((failing (cl-remove-if-not (lambda (name) (memq name '(:tangle :results :var)))
                                           names)))
            (if failing
                (format "fail on %s saying only \"Wrong type argument\""
                        (if (equal failing names) (if (cdr names) "them" "it")
                          (mapconcat #'symbol-name failing ", ")))
              (format "take %s as given nothing" (if (cdr names) "them" "it"))))
          (if (cdr names) "each" "it") (if (cdr names) "them" "it")))

(defun gradients-check-header-names (block &optional at-point)
  "Fail on a name in the header of BLOCK, a src-block element, that Org
would ignore.  AT-POINT, the element at point, saves a parse when the
failure is described."
  (let* ((arguments (string-trim
                     (mapconcat #'identity
                                (delq nil (cons (org-element-property :parameters block)
                                                (org-element-property :header block)))
                                " ")))
         (bare (gradients-header-names-without-value arguments
                                                     (org-element-property :language block)))
         (unknown (gradients-unknown-header-names arguments
                                                  (org-element-property :language block))))
    (when bare
      (gradients--fail "%s: %s" (gradients-block-description at-point)
                       (gradients-header-without-value-message bare)))
    (when unknown
      (gradients--fail "%s: unknown header argument%s %s; Org would ignore %s (a typo?%s)"
             (gradients-block-description at-point) (if (cdr unknown) "s" "")
             (mapconcat #'symbol-name unknown ", ") (if (cdr unknown) "them" "it")
             (gradients--unseen-space (mapconcat #'symbol-name unknown " "))))
    (let ((twice (gradients-header-names-given-twice arguments)))
      (when twice
        (gradients--fail "%s: %s" (gradients-block-description at-point)
                         (gradients-header-twice-message twice "its header"))))))

(defun gradients-header-names-given-twice (arguments)
  "The names header ARGUMENTS (a string) give twice, of which Org keeps
the last alone, without a word; not those it merges (:var, :results,
:exports)."
  (let ((seen nil) (twice nil))
    (dolist (piece (gradients--header-pieces arguments))
      (let ((key (intern (car (split-string piece)))))
        (if (and (memq key seen) (not (memq key '(:var :results :exports))))
            (cl-pushnew key twice)
          (push key seen))))
    (nreverse twice)))

(defun gradients-header-twice-message (names where)
  "What to say of NAMES, given twice in WHERE."
  (format "%s given twice in %s, and Org keeps the last alone, without a word: give %s once"
          (mapconcat #'symbol-name names ", ") where (if (cdr names) "each" "it")))

(defun gradients--unseen-space (text)
  "Words on a character of TEXT that looks like a space, or like nothing,
but is none to Org (a no-break space): \"\" when there is none."
  (let ((unseen (cl-find-if (lambda (char)
                              (and (> char 127)
                                   (memq (get-char-code-property char 'general-category)
                                         '(Zs Cf))))
                            text)))
    (if unseen
        (format "; it holds U+%04X %s, which Org does not read as a space"
                unseen (downcase (or (get-char-code-property unseen 'name) "")))
      "")))

(defun gradients-variable-assignments (params)
  "Python statements that give each `:var' of PARAMS its value, written
as ob-python writes them, so tables and lists arrive as lists."
  ;; Most blocks have no :var: they need not wait for ob-python to load.
  (when (assq :var params)
    (require 'ob-python)
    (org-babel-variable-assignments:python params)))

(defvar gradients--placeholder-inserted nil
  "Non-nil right after Org wrote a placeholder, until the hooks that
follow have run: a placeholder is neither empty nor a picture.")

(defun gradients-execute (body params)
  "Run BODY on the kernel of the session in PARAMS; return the drawer text.
A picture block writes its :file from the display output.  With `:async
yes', interactively, return a placeholder at once and put the result in
its place when it comes."
  (setq gradients--placeholder-inserted nil)
  (let* ((element (org-element-at-point))
         (head (gradients--block-head element)))
    (when head
      (gradients-check-header-names
       (if (gradients--own-head element)
           element
         (save-excursion (goto-char head) (org-element-at-point)))
       element))
    (gradients--run body params element)))

(defconst gradients--reshaping-results
  '("table" "vector" "list" "pp" "html" "latex" "org")
  "The :results words under which Org records a result otherwise than as
the drawer text the bridge made: as a table, a list, fixed-width lines
outside a drawer, an export block or an Org block.")

(defun gradients--run (body params element)
  "The rest of `gradients-execute', with the ELEMENT at point."
  ;; Org would fail only as it writes the result, or its placeholder:
  ;; once the block has run, or with the block sent all the same.
  (when (and buffer-read-only (not gradients--resolving-reference)
             (not (gradients--silent-p params)))
    (gradients--fail "%s: %s is read-only, so its result would have nowhere to go; make the buffer writable (C-x C-q) and run the block again"
                     (gradients-block-description element) (buffer-name)))
  (let* ((own-drawer (gradients--own-drawer-p element))
         (result-params (cdr (assq :result-params params)))
         (request (gradients--new-request
                   (org-babel-expand-body:generic
                    body params (gradients-variable-assignments params))
                   params nil
                   ;; A block run for its value: a :var, noweb <<name()>>,
                   ;; org-sbe.  #+CALL lines and inline blocks want text.
                   ;; So is a block whose own result Org records as a
                   ;; table, a list or an export block, as ob-python's:
                   ;; drawer text there made a table of one cell.
                   (cond ((and gradients--resolving-reference (not own-drawer))
                          (or result-params '("replace")))
                         ((and own-drawer (not gradients--resolving-reference)
                               (cl-intersection gradients--reshaping-results result-params
                                                :test #'equal))
                          result-params))
                   element))
         (process (gradients--session-process params)))
    ;; A placeholder Org would record otherwise than as text in a drawer
    ;; is never found again: such a block is waited for.
    (if (and own-drawer (gradients--async-p params)
             (not (gradients-result-recorded-otherwise
                   (cdr (assq :result-params params)) params)))
        (gradients--execute-async process request params element)
      (let ((previous (and own-drawer (gradients--drawer-text))))
        (gradients--submit process request)
        (let ((text (gradients--result-text request (gradients--wait process request))))
          ;; A value (a table, a list) links no picture.
          (unless (or (gradients--silent-p params) (gradients-request-value-of request))
            (gradients--forget-loose-pictures previous text))
          text)))))

(defun gradients-run-block (body params where &optional place)
  "Run BODY with PARAMS on its session's kernel and wait for it; return
the reply, an alist with the drawer text under `org' and what the block
printed under `printed'.  A block that fails signals an error naming
WHERE, and PLACE, where BODY begins in the notes (see
`gradients-code-place'), its lines in the traceback.  For callers that
read each block once themselves (the build)."
  (let ((request (gradients--new-request
                  (org-babel-expand-body:generic
                   body params (gradients-variable-assignments params))
                  params where nil nil place))
        (process (gradients--session-process params)))
    (gradients--submit process request)
    (let ((reply (gradients--wait process request)))
      (gradients--result-text request reply)
      reply)))

(defun gradients--silent-p (params)
  "Whether Org writes no drawer for a block with PARAMS."
  (let ((result-params (cdr (assq :result-params params))))
    (and (or (member "silent" result-params) (member "none" result-params)) t)))

(defun gradients-result-recorded-otherwise (results params)
  "How Org would record the result of a block with the :results words
RESULTS and the header arguments PARAMS otherwise than as the text the
bridge made, in a results drawer it replaces whole on the next run; nil
when it records it so, or writes nothing.  A list (KIND WORD), WORD the
header's word at fault, KIND one of: `over-picture' (Org writes the text
into the :file), `raw' (no drawer, so no end Org can find), `code' (a
source block), `adding' (beside the last result), `wrapped' (a :wrap
block), `reshaped' (a table, list, fixed-width lines or another block),
`named-file' (a link to a file the text names), `linked' (a link to its
:file, the picture), `undrawn' (neither raw nor in a drawer).  A
placeholder put there would never be found again, and the build could
not compare the result with what the block produces; the build accepts
`linked' alone, whose result is the picture."
  (let ((written (not (cl-intersection '("silent" "none") results :test #'equal)))
        (has (lambda (words) (car (cl-intersection words results :test #'equal)))))
    (cond
     ((and (member "file" results) (cdr (assq :file params))
           (not (funcall has '("link" "graphics"))))
      (list 'over-picture "file"))
     ((and written (member "raw" results) (not (member "drawer" results))
           (not (assq :wrap params)))
      (list 'raw "raw"))
     ((member "code" results) (list 'code "code"))
     ((not written) nil)
     ((funcall has '("append" "prepend"))
      (list 'adding (funcall has '("append" "prepend"))))
     ((assq :wrap params) (list 'wrapped (or (cdr (assq :wrap params)) "results")))
     ((funcall has gradients--reshaping-results)
      (list 'reshaped (funcall has gradients--reshaping-results)))
     ;; A link Org makes itself only of a :results file.
     ((and (not (member "file" results)) (funcall has '("link" "graphics")))
      (list 'reshaped (funcall has '("link" "graphics"))))
     ((and (member "file" results) (not (cdr (assq :file params))))
      (list 'named-file "file"))
     ;; Org puts a link to the :file in place of what the executor returns.
     ((member "file" results) (list 'linked "file"))
     ;; Neither raw nor in a drawer, Org writes the drawer text, already
     ;; fixed-width lines, as fixed-width lines of its own (`: : 20.0').
     ((and (not (member "drawer" results)) (not (cdr (assq :file params))))
      (list 'undrawn (or (funcall has '("output" "value")) "replace"))))))

(defun gradients--loose-pictures (text)
  "The pictures in `gradients-loose-picture-folder' that drawer TEXT links."
  (let ((link (concat "\\[\\[file:\\(" (regexp-quote gradients-loose-picture-folder)
                      "/[^]/]+\\)\\]\\]"))
        (start 0) found)
    (while (and text (string-match link text start))
      (push (match-string 1 text) found)
      (setq start (match-end 0)))
    found))

(defun gradients--forget-loose-pictures (old new)
  "Delete the pictures that drawer text OLD linked and NEW does not: each
run of a block without :file saves its pictures afresh, and those of
earlier runs would otherwise pile up."
  (let ((home (gradients--notes-folder)))
    (dolist (picture (cl-set-difference (gradients--loose-pictures old)
                                        (gradients--loose-pictures new) :test #'equal))
      (let ((file (expand-file-name picture home)))
        (when (file-exists-p file)
          (delete-file file))))))

;;;; Asynchronous blocks

(defun gradients--placeholder (request)
  (format ": [waiting for the kernel: request %d]" (gradients-request-id request)))

(defconst gradients--placeholder-regexp
  "\\`: \\[waiting for the kernel: request \\([0-9]+\\)\\]\\'"
  "Matches the drawer text of a block waiting for the kernel; group 1 is
the request.")

(defun gradients--code-as-run (element)
  "The code of ELEMENT, a source block (else nil), as Org runs it: without
the indentation of a block in a list item, which Org 9.5's :value keeps
and 9.6's does not, so that indenting the block again is no edit."
  (and element (eq (org-element-type element) 'src-block)
       (org-remove-indentation (org-element-property :value element))))

(defun gradients-results-unindented (text indentation)
  "TEXT, results Org wrote under a #+RESULTS line INDENTATION columns in,
as the block produced them: Org indents the results of an indented block
(in a list item) as far as that line, and that indentation is no part
of them.  The executor and the build read a drawer so."
  (if (> indentation 0) (org-remove-indentation text indentation) text))

(defun gradients--drawer-text ()
  "The content of the results drawer of the block at point, or nil, as
the block produced it (`gradients-results-unindented')."
  (let ((result (org-babel-where-is-src-block-result)))
    (when result
      (save-excursion
        (goto-char result)
        (let ((indentation (current-indentation)))
          (forward-line)
          (when (looking-at "[ \t]*:results:[ \t]*\n")
            (let ((start (match-end 0)))
              (when (re-search-forward "^[ \t]*:end:[ \t]*$" nil t)
                (string-trim-right
                 (gradients-results-unindented
                  (buffer-substring-no-properties start (match-beginning 0))
                  indentation))))))))))

(defvar gradients--earlier-results (make-hash-table)
  "The result each pending request's block had before it, by request id:
what a block run again while it waits, and then failing, gets back.")

(defun gradients--waiting-request (text)
  "The id of the request of this Emacs still pending whose placeholder
drawer TEXT is, or nil.  A placeholder saved by another Emacs may carry
the number of an unrelated request here."
  (and text (string-match gradients--placeholder-regexp text)
       (car (memq (string-to-number (match-string 1 text))
                  (mapcar #'gradients-request-id (gradients--pending-requests))))))

(defun gradients--earlier-result (text)
  "The result of a block whose drawer holds TEXT, or nil.  A placeholder
is no result: in its place the drawer's text before that request, if it
is still waiting, or nothing (a placeholder saved in the file by an
Emacs that quit before the reply came)."
  (cond ((null text) nil)
        ((string-match-p gradients--placeholder-regexp text)
         (let ((waiting (gradients--waiting-request text)))
           (and waiting (gethash waiting gradients--earlier-results))))
        (t text)))

(defvar gradients--superseded (make-hash-table)
  "Ids of pending requests whose block was run again before they
finished, each with the id of the newer run: their placeholder made way
for the newer one's.")

;; A buffer read again from its file while blocks run (M-x revert-buffer,
;; or auto-revert once another program wrote the file) loses the
;; placeholders the file does not hold (it holds them only if saved
;; meanwhile, and the results then go there as usual).  Those results are
;; said to be unwritten because of the revert, which the author may not
;; have asked for, not of an edit.
(defvar gradients--reverted (make-hash-table)
  "Ids of pending requests whose placeholder went with a revert of its
buffer.")

(defun gradients--note-reverted-placeholders ()
  "Note the pending requests whose placeholders this buffer holds, before
it is read again from its file."
  (dolist (request (gradients--pending-requests))
    (save-excursion
      (save-restriction
        (widen)
        (goto-char (point-min))
        (when (search-forward (gradients--placeholder request) nil t)
          (puthash (gradients-request-id request) t gradients--reverted))))))

(add-hook 'before-revert-hook #'gradients--note-reverted-placeholders)

(defun gradients--execute-async (process request params element)
  "Queue REQUEST and return its placeholder.  The reply goes to the block
whose drawer holds this request's placeholder, in the file's own buffer:
an indirect buffer the block was run from may be gone by then.  A block
whose result Org does not write (`:results silent' or `none') only says
how it went."
  (let* ((base (or (buffer-base-buffer) (current-buffer)))
         (file (buffer-file-name base))
         (marker (set-marker (make-marker)
                             (or (gradients--own-head element) (point)) base))
         (id (gradients-request-id request))
         (shown (gradients--drawer-text))
         (previous (gradients--earlier-result shown))
         (result-params (cdr (assq :result-params params)))
         (silent (gradients--silent-p params))
         ;; Before the placeholder goes in.
         (unmodified (and (not (buffer-modified-p base)) (buffer-hash base))))
    (let ((earlier (gradients--waiting-request shown)))
      (when earlier
        (puthash earlier id gradients--superseded)))
    (puthash id previous gradients--earlier-results)
    (setf (gradients-request-callback request)
          (lambda (reply)
            (remhash id gradients--earlier-results)
            (cond
             ((gradients--hand-back request reply base)
              (set-marker marker nil))
             (silent
              (gradients--report-silent request reply result-params marker))
             (t (gradients--fill-placeholder marker request reply previous params file)))
            (gradients--unmodified-if-unchanged base unmodified)
            (remhash id gradients--superseded)
            (remhash id gradients--reverted)))
    (gradients--submit process request)
    (gradients--placeholder request)))

(defun gradients--hand-back (request reply buffer)
  "Put back in BUFFER the placeholder of the run REQUEST replaced, when
REPLY says REQUEST did not run and that earlier run of its block still
runs; non-nil if so.  Its result then goes there as it comes: an
interrupt drops the run queued behind the one it stops, which may catch
the interrupt and finish, and the drawer got back what it held before
both runs."
  (let* ((id (gradients-request-id request))
         (earlier (and (equal (alist-get 'kind reply) "dropped")
                       (cl-find-if (lambda (pending)
                                     (eql (gethash (gradients-request-id pending)
                                                   gradients--superseded)
                                          id))
                                   (gradients--pending-requests)))))
    (when (and earlier (buffer-live-p buffer))
      (with-current-buffer buffer
        (save-excursion
          (save-restriction
            (widen)
            (goto-char (point-min))
            (when (search-forward (gradients--placeholder request) nil t)
              (replace-match (gradients--placeholder earlier) t t)
              (remhash (gradients-request-id earlier) gradients--superseded)
              t)))))))

(defun gradients--unmodified-if-unchanged (buffer hash)
  "Mark BUFFER unmodified if its text is again what it was when a block
ran in it unmodified, HASH (nil if it was modified then): a block whose
drawer went back to what it held (it failed, was interrupted, dropped or
stopped, or gave its result again) leaves nothing to save, and no
question about saving on the way out."
  (when (and hash (buffer-live-p buffer) (buffer-modified-p buffer)
             (equal (buffer-hash buffer) hash))
    (with-current-buffer buffer (set-buffer-modified-p nil))))

(defun gradients--report-silent (request reply result-params marker)
  "Say how REQUEST, whose result goes into no drawer, went: its failure,
or with `:results silent' its result, as Org shows it."
  (set-marker marker nil)
  (condition-case failure
      (let ((text (gradients--result-text request reply)))
        (when (and text (member "silent" result-params))
          (message "%s" text)))
    (error (message "%s" (error-message-string failure)))))

(defun gradients--drawer-block ()
  "The head of the source block whose results drawer holds point, or nil."
  (save-excursion
    (when (re-search-backward "^[ \t]*#\\+results\\(?:\\[[^]\n]*\\]\\)?:[ \t]*\\(.*?\\)[ \t]*$"
                              nil t)
      (let ((name (match-string-no-properties 1)))
        (if (string-empty-p name)
            ;; An unnamed result belongs to the block right above it.
            (progn (skip-chars-backward " \t\n")
                   (beginning-of-line)
                   (and (looking-at-p "[ \t]*#\\+end_src")
                        (org-babel-where-is-src-block-head)))
          (org-babel-find-named-block name))))))

(defun gradients--placeholder-block (marker request)
  "The head of the block whose results drawer holds REQUEST's placeholder,
in the current buffer, or nil.  MARKER, left at the block's head when it
was run, is looked at first; the placeholder itself is the proof, since
a marker follows deleted text onto whatever block comes next."
  (let ((placeholder (gradients--placeholder request)))
    (cl-flet ((holds-it (head)
                (and head (save-excursion
                            (goto-char head)
                            (equal (gradients--drawer-text) placeholder))
                     head)))
      (or (and (eq (marker-buffer marker) (current-buffer))
               (holds-it (save-excursion (goto-char marker)
                                         (org-babel-where-is-src-block-head))))
          (save-excursion
            (goto-char (point-min))
            (let (found)
              (while (and (not found) (search-forward (substring placeholder 2) nil t))
                (setq found (holds-it (gradients--drawer-block))))
              found))))))

(defconst gradients-unwritten-buffer "*gradients-unwritten*"
  "Where the results that could not go into their drawers are kept.")

(defun gradients--report-unwritten (request reply why)
  "Say that REQUEST's result goes into no drawer, because WHY; keep it in
`gradients-unwritten-buffer', where it can be copied from."
  (let ((text (condition-case failure
                  (gradients--result-text request reply)
                (error (error-message-string failure)))))
    (with-current-buffer (get-buffer-create gradients-unwritten-buffer)
      (let ((inhibit-read-only t))
        (goto-char (point-max))
        (insert (format "%s, %s:\n%s\n\n" (gradients-request-where request)
                        (format-time-string "%T") (or text "(no output)"))))
      (special-mode))
    (message "gradients: %s finished, but %s; its result is in the buffer %s"
             (gradients-request-where request) why gradients-unwritten-buffer)))

(defun gradients--fill-placeholder (marker request reply previous params file)
  "Put REQUEST's REPLY where its placeholder is, in the buffer of MARKER,
or once that is killed, in the one visiting FILE now.  PREVIOUS is the
drawer text before the block ran, kept if it fails; PARAMS are those Org
ran the block with.  A result that cannot be written is reported, never
dropped in silence."
  ;; The file visited again (C-x C-v, or closed after saving the
  ;; placeholder and opened again) holds the placeholder in a new buffer.
  (let ((buffer (or (marker-buffer marker) (and file (find-buffer-visiting file))))
        (id (gradients-request-id request)))
    (unwind-protect
        (gradients--fill-placeholder-in buffer marker request reply previous params id)
      (set-marker marker nil))))

(defun gradients--restore-orphan-placeholder (request previous &optional from)
  "Put PREVIOUS, the drawer text before REQUEST ran, back where REQUEST's
placeholder is, found after FROM (by default the buffer's start) where
no block owns it; return (WHY . END), END where the text put back ends,
or nil if it was not there.  WHY is `edited' when the drawer holds more
than the placeholder (the author wrote in it, on a line of its own or
on the placeholder's), else `apart' when the #+RESULTS line above names
a block, which Org no longer sees the drawer as the result of (a line
typed between them), else `renamed' (its block renamed while it ran).
Left as it is, the placeholder would never be filled, and the build
refuses notes saved with one.  The request's own placeholder is looked
for wherever it is on its line: no printed text carries the number of a
request of this Emacs still waiting."
  (save-excursion
    (goto-char (or from (point-min)))
    (when (search-forward (gradients--placeholder request) nil t)
      (let* ((start (match-beginning 0))
             (end (match-end 0))
             (whole-line (save-excursion
                           (and (progn (goto-char start) (skip-chars-backward " \t") (bolp))
                                (progn (goto-char end) (skip-chars-forward " \t") (eolp)))))
             (alone (and whole-line (gradients--alone-in-drawer-p)))
             (owned (save-excursion
                      (save-match-data (goto-char start) (gradients--drawer-block)))))
        (cond ((and previous (not (string-empty-p previous)))
               (replace-match previous t t))
              ((and alone (null previous))
               ;; The run made the drawer, and with it, above, its
               ;; #+RESULTS line: both go, with the blank lines before
               ;; them, as Org removes a result.
               (goto-char start)
               (forward-line -1)
               (let ((opener (point))
                     (case-fold-search t))
                 (delete-region
                  (if (and (zerop (forward-line -1))
                           (looking-at-p "[ \t]*#\\+results\\(\\[.*\\]\\)?:"))
                      (progn (skip-chars-backward " \r\t\n")
                             (if (bobp) (point) (line-beginning-position 2)))
                    opener)
                  (progn (goto-char opener) (forward-line 3) (point)))))
              (whole-line
               ;; An empty drawer had no line here.
               (delete-region (line-beginning-position)
                              (min (point-max) (1+ (line-end-position)))))
              (t (delete-region start end)))
        (cons (cond ((not alone) 'edited) (owned 'apart) (t 'renamed)) (point))))))

(defun gradients--restore-copied-placeholders (request previous)
  "Once REQUEST's result is written, put PREVIOUS back in place of every
copy of its placeholder left alone in a drawer, saying where: a block
copied with its drawer while it ran (M-w, C-y) has two, and Org writes
the result into the first block of that name, so the block that was run
kept a placeholder nothing would fill.  Each is looked for after the
last one put back: PREVIOUS may hold the placeholder's text itself (a
drawer saved by an Emacs that quit, whose numbers this one reuses)."
  (let ((placeholder (gradients--placeholder request))
        (from (point-min))
        lines)
    (while (setq from (save-excursion
                        (goto-char from)
                        (when (search-forward placeholder nil t)
                          (goto-char (match-beginning 0))
                          (if (gradients--alone-in-drawer-p)
                              (progn
                                (push (line-number-at-pos) lines)
                                (cdr (gradients--restore-orphan-placeholder
                                      request previous (point))))
                            (match-end 0))))))
    (when lines
      (message "gradients: %s finished, and its result went into the first block of that name; the copy of its placeholder at line%s %s got back what the drawer held before (was the block copied while it ran?)"
               (gradients-request-where request) (if (cdr lines) "s" "")
               (mapconcat #'number-to-string (nreverse lines) ", ")))))

(defun gradients--why-unwritable ()
  "Why a result cannot go into the current buffer without a question from
Emacs, which in a process filter would come out of nowhere, or nil: the
buffer was made read-only, or, unmodified since it was saved, its file
changed on disk or another Emacs holds its lock."
  (cond
   (buffer-read-only
    (format "%s was made read-only (C-x C-q) while the block ran" (buffer-name)))
   ((and buffer-file-name (not (buffer-modified-p))
         (not (verify-visited-file-modtime)))
    (format "%s changed on disk since it was saved; revert it (M-x revert-buffer) and run the block again"
            (buffer-name)))
   ((and buffer-file-name (not (buffer-modified-p)) create-lockfiles)
    (let ((owner (file-locked-p buffer-file-name)))
      (and owner (not (eq owner t))
           (format "another Emacs (%s) is editing %s" owner (buffer-name)))))))

(defun gradients--fill-placeholder-in (buffer marker request reply previous params id)
  (let (orphaned)
    (cond
     ((not (buffer-live-p buffer))
      (gradients--report-unwritten request reply "its file's buffer was killed"))
     (t
      (with-current-buffer buffer
        (save-excursion
          (save-restriction
            (widen)
            (let ((head (gradients--placeholder-block marker request)))
              (cond
               (head
                (goto-char head)
                ;; Named by the line it is on now: the text above may
                ;; have changed since it was run.
                (setf (gradients-request-where request) (gradients-block-description))
                (let ((why (gradients--why-unwritable)))
                  (if why
                      (gradients--report-unwritten request reply why)
                    ;; An error as the result goes in (a prompt answered
                    ;; no) would otherwise lose it, in a process filter,
                    ;; naming no block.
                    (condition-case failure
                        (progn
                          ;; An undo step of its own: without the
                          ;; boundaries, the author's next C-/ would take
                          ;; back the result together with whatever they
                          ;; typed while the block ran.
                          (undo-boundary)
                          (gradients--write-result request reply previous params)
                          (gradients--restore-copied-placeholders request previous)
                          (undo-boundary))
                      (error
                       (gradients--report-unwritten
                        request reply
                        (format "writing it into %s failed (%s)" (buffer-name)
                                (error-message-string failure))))))))
               ((gethash id gradients--superseded)
                ;; Run again meanwhile: the newer run's result goes there.
                (let ((inhibit-message t))
                  (message "gradients: %s was run again before it finished; the earlier run's result is not written"
                           (gradients-request-where request))))
               ((gethash id gradients--reverted)
                (gradients--report-unwritten
                 request reply
                 (format "%s was read again from its file while the block ran (a revert), which took its placeholder"
                         (buffer-name))))
               ((setq orphaned (gradients--restore-orphan-placeholder request previous))
                (gradients--report-unwritten
                 request reply
                 (pcase (car orphaned)
                   ('edited
                    (format "its results drawer in %s was written in while the block ran; it keeps what was written, with what it held before the run in place of the placeholder"
                            (buffer-name)))
                   ('apart
                    (format "its placeholder in %s is no longer right below the #+RESULTS line of its block (was a line typed between them?); the drawer holds what it held before the run"
                            (buffer-name)))
                   (_
                    (format "its placeholder in %s is under a #+RESULTS no block is named for any more (was the block renamed?); the drawer holds what it held before the run"
                            (buffer-name))))))
               (t
                (gradients--report-unwritten
                 request reply
                 (format "its placeholder is no longer in %s (the block or its results were edited or deleted)"
                         (buffer-name)))))))))))))

(defun gradients--write-result (request reply previous params)
  "Write REPLY into the drawer of the block at point, as Org would have."
  (let* ((failed nil)
         (text (condition-case failure
                   (gradients--result-text request reply)
                 (error (setq failed (error-message-string failure))
                        ;; A block that fails keeps its earlier result, as
                        ;; when Emacs waits for it.
                        (or previous 'remove))))
         ;; The light info reads no :var: the full one would run the
         ;; blocks they name once more, here, in a process filter.  The
         ;; params are those the block ran with.
         (info (org-babel-get-src-block-info 'light))
         ;; Its picture went where the header said when it was run.
         (file-now (cdr (assq :file (nth 2 info))))
         (source-now (gradients--code-as-run (org-element-at-point)))
         (head (point-marker)))
    (setf (nth 2 info) params)
    ;; Org, putting the earlier result back, would say "Code block
    ;; evaluation complete." over the failure: the failure is the last
    ;; word, and Org's is neither shown nor logged.
    (let ((inhibit-message (and failed t))
          (message-log-max (and (not failed) message-log-max)))
      (if (memq text '(nil remove))
          (org-babel-remove-result info)
        (org-babel-insert-result text (cdr (assq :result-params params)) info nil
                                 "jupyter-python")))
    (gradients--forget-loose-pictures previous (and (stringp text) text))
    ;; The hooks look at the block at point, as after Org's own run.
    (goto-char head)
    (set-marker head nil)
    (run-hooks 'org-babel-after-execute-hook)
    (cond (failed (message "%s" failed))
          ((not (equal file-now (cdr (assq :file params))))
           (message "gradients: %s: its :file %s while it ran; the picture went to %s, which the drawer links: run the block again"
                    (gradients-request-where request)
                    (if file-now
                        (format "changed from %s to %s" (cdr (assq :file params)) file-now)
                      (format "%s was removed" (cdr (assq :file params))))
                    (cdr (assq :file params))))
          ((and (gradients-request-source request) source-now
                (not (equal source-now (gradients-request-source request))))
           (message "gradients: %s: its code was edited after it was run, and the drawer holds what the code made before: run the block again"
                    (gradients-request-where request))))))

;;;; Commands

(defun gradients--current-session ()
  "The process of the session the block at point uses, in this folder;
or else the only session there is, or the one this buffer's folder runs;
or, when that leaves several, the one the user picks."
  (let ((live (cl-remove-if-not (lambda (session) (process-live-p (cdr session)))
                                gradients--sessions)))
    (or (and (derived-mode-p 'org-mode)
             (let ((info (ignore-errors (org-babel-get-src-block-info 'light))))
               (and info (equal (car info) "jupyter-python")
                    (gradients--find-session (gradients--session-name (nth 2 info))
                                             (gradients--kernel-folder)))))
        (and (null (cdr live)) (cdr (car live)))
        (let ((here (cl-remove-if-not
                     (lambda (session)
                       (equal (process-get (cdr session) 'directory)
                              (gradients--kernel-folder)))
                     live)))
          (and here (null (cdr here)) (cdr (car here))))
        (let ((choices (mapcar (lambda (session)
                                 (cons (format "%s in %s" (car session)
                                               (abbreviate-file-name
                                                (process-get (cdr session) 'directory)))
                                       (cdr session)))
                               live)))
          (cdr (assoc (completing-read "Kernel of session: " choices nil t) choices))))))

(defun gradients-interrupt ()
  "Interrupt the running block, as Jupyter's interrupt does: it ends with
KeyboardInterrupt and the kernel keeps its variables.  Blocks queued
behind it are dropped.  A block that has not stopped after
`gradients-interrupt-patience' seconds is named, with the way out."
  (interactive)
  (let* ((busy (cl-remove-if-not (lambda (session)
                                   (and (process-live-p (cdr session))
                                        (process-get (cdr session) 'current)))
                                 gradients--sessions))
         ;; The one session running a block, wherever point is; else as
         ;; for any command on a session.
         (process (if (and busy (null (cdr busy)))
                      (cdr (car busy))
                    (gradients--current-session))))
    (if (not (process-live-p process))
        (message "gradients: no kernel is running")
      (let ((queue (process-get process 'queue))
            (running (process-get process 'current)))
        (process-put process 'queue nil)
        (gradients--drop queue (if running "the kernel was interrupted"
                                 "interrupted before it was sent"))
        (cond
         (running
          (gradients--interrupt-process process)
          (message "gradients: interrupted %s" (gradients-request-where running)))
         ;; Blocks wait unsent while the bridge is held stopped, or its
         ;; kernel starts: the last word says what became of them.
         (queue
          (message "gradients: no block was running in session %s; %s%s"
                   (process-get process 'session)
                   (if (cdr queue)
                       (format "the %d blocks queued were dropped" (length queue))
                     "the block queued was dropped")
                   (if (eq (process-status process) 'stop)
                       (format " (its kernel bridge is held stopped from outside: kill -CONT %d lets it go on)"
                               (process-id process))
                     "")))
         (t (message "gradients: no block is running in session %s"
                     (process-get process 'session))))))))

(defun gradients-restart ()
  "Replace the kernel of the current session with a fresh one, in the
folder the old one worked in."
  (interactive)
  (let* ((process (gradients--current-session))
         (name (if process (process-get process 'session) "gradients"))
         (default-directory (or (and process (process-get process 'directory))
                                default-directory))
         (gradients-kernel-directory (and (not process) gradients-kernel-directory)))
    ;; Before the working kernel is stopped: without a Python (a venv
    ;; removed by `make clean'), it would be stopped and none started.
    (gradients--check-python)
    (when process (gradients--stop process))
    (let ((fresh (gradients-start-session name)))
      (process-put fresh 'announced t)
      (message "gradients: restarted the kernel of session %s in %s; its variables are gone"
               name (abbreviate-file-name (process-get fresh 'directory))))))

;;;; Making this the executor

(defun gradients-drop-empty-result ()
  "Remove the results drawer of a block that printed and returned nothing,
so that definitions carry no empty drawers."
  (let ((info (and (not gradients--placeholder-inserted)
                   (org-babel-get-src-block-info 'light))))
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

(defvar gradients--placeholders-in-command nil
  "While a command runs many blocks, how many placeholders it wrote so
far; otherwise nil.  Saying where each block stands as it is queued
would redraw the echo area once a block, for words no one can read.")

(defun gradients--insert-result-in-spaces (insert result &rest arguments)
  "Around `org-babel-insert-result' of a jupyter-python block: Org indents
the results of a block in a list item as far as the block, with tabs
where `indent-tabs-mode' says so (Emacs's default, or an `org-mode-hook'
that runs after .dir-locals.el): the drawer then differed from the one
the build writes, in spaces, and `make test' failed."
  (let ((indent-tabs-mode (and (not (equal (car (nth 1 arguments)) "jupyter-python"))
                               indent-tabs-mode)))
    (apply insert result arguments)))

(defun gradients--insert-placeholder-quietly (insert result &rest arguments)
  "Around `org-babel-insert-result': a placeholder is no result, so Org's
\"Code block evaluation complete.\" is not said for it; what is said is
where the block stands, or after a command that runs many blocks, how
many it queued."
  (if (not (and (stringp result) (string-match gradients--placeholder-regexp result)))
      (apply insert result arguments)
    (let ((id (string-to-number (match-string 1 result))))
      (let ((inhibit-message t)
            (message-log-max nil))
        (apply insert result arguments))
      ;; Cleared by the last of `org-babel-after-execute-hook', which
      ;; Org runs next.
      (setq gradients--placeholder-inserted t)
      (if gradients--placeholders-in-command
          (cl-incf gradients--placeholders-in-command)
        (gradients--say-where-it-stands id)))))

(defun gradients--say-where-it-stands (id)
  "Say whether the block of request ID runs or how many wait before it."
  (cl-loop for (_ . process) in gradients--sessions
           for current = (process-get process 'current)
           for queue = (process-get process 'queue)
           for place = (cl-position id queue :key #'gradients-request-id)
           when (and current (= id (gradients-request-id current)))
           return (message "gradients: %s is running; its result will replace the placeholder"
                           (gradients-request-where current))
           when place
           return (message "gradients: %s is queued%s; its result will replace the placeholder"
                           (gradients-request-where (nth place queue))
                           (let ((ahead (+ place (if current 1 0))))
                             (if (zerop ahead) ""
                               (format " behind %d block%s" ahead
                                       (if (= ahead 1) "" "s")))))))

(defun gradients--placeholder-done ()
  (setq gradients--placeholder-inserted nil))

(defvar gradients--parses nil
  "While `org-babel-execute-buffer' or `org-babel-execute-subtree' runs,
the elements `org-element-at-point' found, by buffer, position and state
of the text: a hash table.  Otherwise nil.")

(defun gradients--parse-once (parse &rest arguments)
  "Around `org-element-at-point': while a command runs many blocks, each
place in unchanged text is looked at once.  To queue one block Org asks
about ten times for the element at the block's head; Org 9.5 keeps no
parse, and each time parses the section from its heading.  Any edit
moves the text's tick on, and with it every later look to a fresh one.
A source block or a drawer is also what Org finds at the start of its
line below the affiliated keywords (#+name:, #+results:), where Org
looks next: it is kept for that place too."
  (if (null gradients--parses)
      (apply parse arguments)
    (cl-flet ((key (place)
                ;; Narrowing changes where a parse starts, and so its answer.
                (list (current-buffer) place (buffer-chars-modified-tick)
                      (point-min) (point-max) arguments)))
      (let ((known (gethash (key (point)) gradients--parses 'unknown)))
        (if (not (eq known 'unknown))
            known
          (let ((element (apply parse arguments)))
            (puthash (key (point)) element gradients--parses)
            ;; Only when asked about point: arguments may name a place.
            (when (and (null arguments) (memq (org-element-type element) '(src-block drawer)))
              (puthash (key (org-element-property :post-affiliated element)) element
                       gradients--parses))
            element))))))

(defun gradients--run-blocks-cheaply (run &rest arguments)
  "Around `org-babel-execute-buffer' and `org-babel-execute-subtree':
each place is parsed once (see `gradients--parse-once'); one message
says how many blocks were queued, not one a block; and since queuing a
block makes Org allocate a lot, and a garbage collection every few
blocks, each of which scans all of Emacs, cost more than the rest
together, one collection after the command does that work once."
  (let ((gc-cons-threshold (max gc-cons-threshold (* 64 1024 1024)))
        (gradients--parses (make-hash-table :test #'equal))
        (gradients--placeholders-in-command 0))
    (prog1 (apply run arguments)
      (let ((queued gradients--placeholders-in-command))
        (unless (zerop queued)
          (message "gradients: %d block%s queued; each result will replace its placeholder as it comes"
                   queued (if (= queued 1) "" "s")))))))

(defvar org-babel-header-args:jupyter-python
  '((timeout . :any) (async . ((yes no))) (kernel . :any))
  "Header arguments of `jupyter-python' blocks beyond Org's own.")

(defun gradients-install ()
  "Make this file org-babel's `jupyter-python' executor, unless
emacs-jupyter already provides one."
  (gradients-editing-install)
  ;; `:tangle yes' names the file after the notes, with Python's extension.
  (with-eval-after-load 'ob-tangle
    (add-to-list 'org-babel-tangle-lang-exts '("jupyter-python" . "py")))
  (with-eval-after-load 'ob-core
    (add-hook 'org-babel-after-execute-hook #'gradients--placeholder-done 90))
  (with-eval-after-load 'ob-ref
    (advice-add 'org-babel-ref-resolve :around #'gradients--resolve-reference)
    (advice-add 'org-babel-execute-src-block :around #'gradients--refuse-run-for-value))
  (with-eval-after-load 'ob-core
    (advice-add 'org-babel-insert-result :around #'gradients--insert-placeholder-quietly)
    (advice-add 'org-babel-insert-result :around #'gradients--insert-result-in-spaces)
    (advice-add 'org-babel-execute-buffer :around #'gradients--run-blocks-cheaply)
    (advice-add 'org-babel-execute-subtree :around #'gradients--run-blocks-cheaply))
  (with-eval-after-load 'org-element
    (advice-add 'org-element-at-point :around #'gradients--parse-once))
  (unless (or (featurep 'jupyter) (featurep 'ob-jupyter)
              (and (fboundp 'org-babel-execute:jupyter-python)
                   (not (eq (symbol-function 'org-babel-execute:jupyter-python)
                            'gradients-execute))))
    (defalias 'org-babel-execute:jupyter-python #'gradients-execute)
    ;; Tangling and C-c C-v v expand `:var' through this name too.
    (defalias 'org-babel-variable-assignments:jupyter-python
      #'gradients-variable-assignments)
    (with-eval-after-load 'ob-core
      (add-hook 'org-babel-after-execute-hook #'gradients-drop-empty-result))))

(gradients-install)

(provide 'ob-gradients)
;;; ob-gradients.el ends here
