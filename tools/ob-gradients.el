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
;; M-x gradients-interrupt stops the running block and drops the queued
;; ones; M-x gradients-restart starts a fresh kernel.  Batch builds always
;; wait for each block.  In a graphical Emacs a block's picture is redrawn
;; in place each time it runs.

;;; Code:

;; Org itself is not required here: the batch build starts the kernel
;; first and loads Org while it boots.  Everything Org-related below runs
;; only once Org is there.
(require 'cl-lib)
(require 'json)

(defvar org-babel-current-src-block-location)
(defvar org-babel-after-execute-hook)
(defvar org-src-lang-modes)
(defvar org-image-actual-width)
(defvar org-inline-image-overlays)
(defvar python-indent-guess-indent-offset)
(declare-function org-babel-where-is-src-block-head "ob-core")
(declare-function org-babel-get-src-block-info "ob-core")
(declare-function org-babel-where-is-src-block-result "ob-core")
(declare-function org-babel-remove-result "ob-core")
(declare-function org-babel-insert-result "ob-core")
(declare-function org-element-at-point "org-element")
(declare-function org-element-property "org-element")
(declare-function org-current-line "org-macs")
(declare-function org-babel-result-end "ob-core")
(declare-function org-display-inline-images "org")
(declare-function org-remove-inline-images "org")
(declare-function python-mode "python")

(defconst gradients-tools-directory
  (file-name-directory (or load-file-name buffer-file-name))
  "The folder holding this file and the kernel bridge.")

(defconst gradients-project-directory
  (file-name-directory (directory-file-name gradients-tools-directory)))

(defvar gradients-python
  (expand-file-name ".venv/bin/python" gradients-project-directory)
  "The Python whose ipykernel runs the blocks: the project's venv.")

(defvar gradients-kernel-directory nil
  "The folder kernels start in, where a block's relative paths lead; nil
for `default-directory' (interactively, the Org file's folder).  The
batch build sets it to the Org file's folder, whatever folder Emacs was
started from and whichever session a block asks for.")

(defvar gradients-batch-timeout 300
  "Seconds a block may run in a batch build unless it says `:timeout N'.")

(defvar gradients-max-result-lines 1000
  "A block whose result is longer fails: the notes are for people to read.")

(defvar gradients-loose-picture-folder ".build/pictures"
  "Where an interactive run saves the pictures of a block without :file,
relative to the Org file.  It is ignored by git: such pictures are for
looking at, and only a :file under images/ goes on GitHub.")

(defconst gradients-traceback-buffer "*gradients-traceback*")

(defvar gradients--sessions nil
  "Alist of (SESSION-NAME . PROCESS), one bridge per org-babel session.")

(defvar gradients--last-id 0
  "The id of the last request; ids are never reused within an Emacs.")

(cl-defstruct (gradients-request (:constructor gradients--make-request))
  id          ; matches the reply to this request and no other
  json        ; what is sent to the bridge
  where       ; "README.org:LINE: block NAME", for messages
  callback    ; called with the reply; nil while someone waits for it
  reply       ; the reply, once it came
  abandoned)  ; its waiter gave up (C-g): the reply goes nowhere

;;;; The bridge process

(defun gradients--deliver (request reply)
  (setf (gradients-request-reply request) reply)
  (cond ((gradients-request-abandoned request)
         (message "gradients: the result of %s came after its wait was given up; dropped"
                  (gradients-request-where request)))
        ((gradients-request-callback request)
         (funcall (gradients-request-callback request) reply))))

(defun gradients--send-next (process)
  "Send the next queued request to PROCESS, when it is free for one."
  (when (and (process-get process 'ready)
             (null (process-get process 'current))
             (process-live-p process)
             (not (process-get process 'dead)))
    (let ((request (pop (process-get process 'queue))))
      (when request
        (process-put process 'current request)
        (process-send-string process (concat (gradients-request-json request) "\n"))))))

(defun gradients--handle-line (process line)
  (let* ((request (process-get process 'current))
         (reply (condition-case nil
                    (json-parse-string line :object-type 'alist :false-object nil
                                       :null-object nil)
                  ;; Only the running block can have produced it.
                  (error `((id . ,(and request (gradients-request-id request)))
                           (ok . nil) (kind . "output")
                           (error . "made the kernel bridge send a reply Emacs could not read"))))))
    (if (alist-get 'ready reply)
        (progn (process-put process 'ready t)
               (process-put process 'kernel-pid (alist-get 'kernel_pid reply)))
      (when (equal (alist-get 'kind reply) "died")
        ;; The bridge exits after this reply; the next block must not be
        ;; queued on it, but start a fresh one.
        (process-put process 'dead t)
        (setq gradients--sessions (cl-remove process gradients--sessions :key #'cdr)))
      ;; A reply that names another request than the one running has
      ;; nowhere to go: it is never written into some other block.
      (when (and request (equal (alist-get 'id reply) (gradients-request-id request)))
        (process-put process 'current nil)
        (gradients--deliver request reply)))
    (gradients--send-next process)))

(defun gradients--filter (process output)
  "Collect OUTPUT of PROCESS; each complete line is a reply."
  (let ((pending (concat (process-get process 'pending) output)))
    (process-put process 'pending "")
    (while (string-match "\n" pending)
      (let ((line (substring pending 0 (match-beginning 0))))
        (setq pending (substring pending (match-end 0)))
        (gradients--handle-line process line)))
    (process-put process 'pending pending)))

(defun gradients--stderr-tail (process)
  "The end of what the bridge PROCESS wrote to its error output.  Its last
words may still be on their way through their own pipe: a moment is
given for them, never more."
  (let* ((buffer (get-buffer (process-get process 'stderr-buffer)))
         (pipe (and buffer (get-buffer-process buffer)))
         (until (+ (float-time) 0.5)))
    (while (and pipe (process-live-p pipe) (< (float-time) until))
      (accept-process-output pipe 0.05 nil t))
    (if (buffer-live-p buffer)
        (with-current-buffer buffer
          (string-trim (buffer-substring (max (point-min) (- (point-max) 3000))
                                         (point-max))))
      "")))

(defun gradients--sentinel (process _event)
  "When a bridge ends, its running block fails and its queue is dropped."
  (unless (process-live-p process)
    (setq gradients--sessions (cl-remove process gradients--sessions :key #'cdr))
    (let ((current (process-get process 'current))
          (queue (process-get process 'queue))
          (stopped (process-get process 'stopped)))
      (process-put process 'current nil)
      (process-put process 'queue nil)
      (when current
        (gradients--deliver
         current `((ok . nil) (kind . ,(if stopped "stopped" "died"))
                   (error . ,(if stopped "the kernel was stopped"
                               (concat "the kernel bridge stopped:\n"
                                       (gradients--stderr-tail process)))))))
      (gradients--drop queue (if (or stopped (process-get process 'ready))
                                 "its kernel stopped"
                               (gradients--start-failure process))))))

(defun gradients--start-failure (process)
  "Why the bridge PROCESS ended before its kernel was ready: the last
line it wrote, which names the error (a venv without jupyter_client, a
kernel that did not start in time)."
  (let ((last (car (last (cl-remove-if
                          (lambda (line) (string-prefix-p "Process " line))
                          (split-string (gradients--stderr-tail process) "\n" t "[ \t]+"))))))
    (format "its kernel did not start%s (more in the buffer `%s')"
            (if last (concat ": " last) "")
            (process-get process 'stderr-buffer))))

(defun gradients--drop (requests why)
  "Tell every request in REQUESTS that it will not run, because WHY."
  (when requests
    (dolist (request requests)
      (gradients--deliver request `((ok . nil) (kind . "dropped") (error . ,why))))
    (message "gradients: %d queued block%s dropped: %s" (length requests)
             (if (cdr requests) "s" "") why)))

(defun gradients-start-session (name)
  "Start the bridge for session NAME unless it runs; return its process.
It returns at once: the kernel boots while Emacs does other work."
  (let ((process (cdr (assoc name gradients--sessions))))
    (if (process-live-p process)
        process
      (unless (file-executable-p gradients-python)
        (error "No %s: run `make venv' in %s first" gradients-python
               (abbreviate-file-name gradients-project-directory)))
      (let* ((stderr (get-buffer-create (format " *gradients-kernel %s*" name)))
             (default-directory (or gradients-kernel-directory default-directory))
             (process (make-process
                       :name (format "gradients-kernel-%s" name)
                       :command (list gradients-python
                                      (expand-file-name "kernel_bridge.py"
                                                        gradients-tools-directory))
                       :connection-type 'pipe
                       :noquery t
                       :stderr stderr
                       :filter #'gradients--filter
                       :sentinel #'gradients--sentinel)))
        (with-current-buffer stderr (erase-buffer))
        (process-put process 'stderr-buffer (buffer-name stderr))
        (process-put process 'session name)
        (process-put process 'directory default-directory)
        (setf (alist-get name gradients--sessions nil nil #'equal) process)
        process))))

(defun gradients--stop (process &optional no-wait)
  "Stop PROCESS and its kernel: SIGTERM makes the bridge kill the kernel
with everything it started, even in the middle of a block."
  (when (process-live-p process)
    (unless (process-get process 'stopped)
      (process-put process 'stopped t)
      (signal-process process 'SIGTERM))
    (unless no-wait
      (with-timeout (3 (delete-process process))
        (while (process-live-p process)
          (accept-process-output process 0.05))))))

(defun gradients-stop-sessions (&optional no-wait)
  "Stop every bridge and its kernel; the next block starts a fresh one.
With NO-WAIT, only tell them to: each bridge stops its kernel on its
own, so a batch build can exit at once."
  (interactive)
  (dolist (session gradients--sessions)
    (gradients--stop (cdr session) no-wait))
  (setq gradients--sessions nil))

(defun gradients--bridges ()
  "Every bridge process, including those being stopped."
  (cl-remove-if-not (lambda (process) (process-get process 'session)) (process-list)))

(defun gradients--stop-on-exit ()
  ;; A bridge stops its kernel, with whatever the kernel started, on
  ;; SIGTERM, on the SIGHUP Emacs sends its subprocesses as it exits, and
  ;; at the end of its input: Emacs need not wait for it.  Nor could it
  ;; reliably: an Emacs exiting on a signal (Ctrl-C in a batch build) may
  ;; not notice for seconds that a child has finished.
  (dolist (process (gradients--bridges))
    (gradients--stop process 'no-wait)))

(add-hook 'kill-emacs-hook #'gradients--stop-on-exit)

(defun gradients--pending-requests ()
  "Every request running or waiting to run, in every session."
  (cl-loop for (_ . process) in gradients--sessions
           append (and (process-live-p process)
                       (delq nil (cons (process-get process 'current)
                                       (copy-sequence (process-get process 'queue)))))))

(defun gradients--confirm-quit ()
  "Ask before quitting while blocks run or wait: their results would be
lost, and a file saved on the way out would keep their placeholders."
  (let ((pending (length (gradients--pending-requests))))
    (or (zerop pending)
        (yes-or-no-p (format "%d block%s still running or waiting for the kernel; quit anyway? "
                             pending (if (= pending 1) " is" "s are"))))))

(add-hook 'kill-emacs-query-functions #'gradients--confirm-quit)

;;;; Running a block

(defun gradients--block-head ()
  "Where the block being run begins: the source block at point, or else
the line Org runs it from (a #+CALL line).  Org's location names the
block the user ran, which is another one when this block is the value
of its :var."
  (or (save-excursion (org-babel-where-is-src-block-head))
      org-babel-current-src-block-location))

(defun gradients-block-description ()
  "Where the block at point is, for messages: file, line and name."
  (let* ((head (or (gradients--block-head) (point)))
         (name (save-excursion
                 (goto-char head)
                 (org-element-property :name (org-element-at-point)))))
    (format "%s:%d: block %s"
            (file-name-nondirectory (or (buffer-file-name) (buffer-name)))
            (org-current-line head)
            (if name (format "`%s'" name) "(unnamed)"))))

(defun gradients--session-name (params)
  (let ((session (cdr (assq :session params))))
    (if (member session '(nil "none")) "default" session)))

(defun gradients--session-process (params)
  (let* ((name (gradients--session-name params))
         (process (gradients-start-session name)))
    (unless (process-get process 'announced)
      (process-put process 'announced t)
      (unless noninteractive
        (message "gradients: starting a kernel for session %s" name)))
    process))

(defun gradients--submit (process request)
  (if (process-live-p process)
      (progn
        (process-put process 'queue (append (process-get process 'queue) (list request)))
        (gradients--send-next process))
    ;; A bridge that ended at once (a venv without jupyter_client) may
    ;; have had its sentinel run already: nothing would answer a queue.
    (gradients--deliver request `((ok . nil) (kind . "dropped")
                                  (error . ,(gradients--start-failure process))))))

(defun gradients--timeout (params)
  "The seconds PARAMS give the block with `:timeout', or nil for none.
A value that is not a positive number is a typo to point at, not a
reason to fall back on the default in silence."
  (let ((value (cdr (assq :timeout params))))
    (cond ((null value) nil)
          ((and (numberp value) (> value 0)) value)
          ((and (stringp value)
                (string-match-p "\\`\\([0-9]+\\.?[0-9]*\\|\\.[0-9]+\\)\\'" value)
                (> (string-to-number value) 0))
           (string-to-number value))
          (t (error "%s: :timeout %s is not a number of seconds, such as :timeout 60"
                    (gradients-block-description) value)))))

(defun gradients--notes-folder ()
  "The folder of the Org file being worked on, where its links lead."
  (if (buffer-file-name)
      (file-name-directory (buffer-file-name))
    default-directory))

(defvar gradients-picture-destination nil
  "Function of a block's :file (as its header gives it) returning the
absolute file its picture is written to, or nil to write it beside the
notes.  The batch build binds it, to draw into its scratch folder.")

(defun gradients--new-request (body params &optional where)
  "A request to run BODY with PARAMS, from the block at point, or from
the block WHERE names."
  (let* ((file (cdr (assq :file params)))
         (home (gradients--notes-folder))
         (timeout (or (gradients--timeout params)
                      (and noninteractive gradients-batch-timeout)))
         (loose (and (not file) (not noninteractive)
                     `((folder . ,(expand-file-name gradients-loose-picture-folder home))
                       (link . ,gradients-loose-picture-folder))))
         (id (cl-incf gradients--last-id)))
    (gradients--make-request
     :id id
     :where (or where (gradients-block-description))
     :json (json-serialize
            `((id . ,id)
              (code . ,body)
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
              (wrap . ,(if (assq :wrap params) t :false)))))))

(defun gradients--failure-message (request reply)
  "The one line that says why REQUEST failed; the traceback is shown apart."
  (let ((where (gradients-request-where request))
        (kind (alist-get 'kind reply))
        (summary (alist-get 'summary reply))
        (error (alist-get 'error reply)))
    (pcase kind
      ("raised" (format "%s raised %s" where summary))
      ("interrupted" (format "%s was interrupted (KeyboardInterrupt)" where))
      ("died" (format "%s stopped the kernel: %s%s" where (car (split-string error "\n"))
                      (if noninteractive ""
                        ".  Its variables are gone; the next block starts a fresh kernel")))
      ("dropped" (format "%s did not run: %s" where error))
      ("stopped" (format "%s was stopped before it finished: %s" where error))
      (_ (format "%s %s" where error)))))

(defun gradients--show-failure (request reply)
  "Say why REQUEST failed: one line in the echo area, and in batch or in
the traceback buffer the whole story."
  (let ((line (gradients--failure-message request reply))
        (error (alist-get 'error reply)))
    (if noninteractive
        (if (member (alist-get 'kind reply) '("raised" "interrupted"))
            (concat line "\n" error)
          line)
      (when (member (alist-get 'kind reply) '("raised" "interrupted" "died"))
        (with-current-buffer (get-buffer-create gradients-traceback-buffer)
          (let ((inhibit-read-only t))
            (erase-buffer)
            (insert line "\n\n" error "\n"))
          (goto-char (point-min))
          (special-mode))
        (display-buffer gradients-traceback-buffer
                        '(nil (inhibit-same-window . t))))
      line)))

(defun gradients--result-text (request reply)
  "The drawer text of REPLY, or an error for REQUEST's block."
  (if (alist-get 'ok reply)
      (let ((org (alist-get 'org reply)))
        (if (string-empty-p org) nil org))
    (error "%s" (gradients--show-failure request reply))))

(defun gradients--interrupt-process (process)
  "Interrupt the block PROCESS's kernel is running, as Jupyter does."
  (let ((pid (process-get process 'kernel-pid)))
    (when (and pid (process-get process 'current))
      (signal-process pid 'SIGINT))))

(defun gradients--wait (process request)
  "Wait for REQUEST's reply.  C-g interrupts the kernel, so the block
really stops, and its reply, when it comes, is dropped."
  (let ((start (float-time)) (said 0))
    (condition-case quit
        (while (not (gradients-request-reply request))
          (accept-process-output process 0.5)
          ;; Sentinels do not run inside another process's filter (code
          ;; run by emacsclient -e, for one): see to a bridge that ended.
          (unless (or (process-live-p process) (gradients-request-reply request))
            (accept-process-output process 0.1)
            (unless (gradients-request-reply request)
              (gradients--sentinel process nil)))
          (when noninteractive
            (let ((seconds (truncate (- (float-time) start))))
              (when (>= seconds (+ said 10))
                (setq said seconds)
                (let ((inhibit-message nil))
                  (message "%s: still running after %d s"
                           (gradients-request-where request) seconds))))))
      (quit
       (setf (gradients-request-abandoned request) t)
       (if (eq (process-get process 'current) request)
           (gradients--interrupt-process process)
         (process-put process 'queue (delq request (process-get process 'queue))))
       (signal (car quit) (cdr quit))))
    (gradients-request-reply request)))

(defvar gradients--resolving-reference nil
  "Non-nil while Org computes the value of a reference to a block: a
:var, a noweb <<name()>>, `org-sbe'.")

(defun gradients--resolve-reference (resolve &rest arguments)
  "Around `org-babel-ref-resolve': note that a block's value is wanted."
  (let ((gradients--resolving-reference t))
    (apply resolve arguments)))

(defun gradients--own-drawer-p ()
  "Whether Org puts the result below the source block at point, where a
placeholder can wait for it.  A block that is the value of a reference,
a #+CALL line and an inline block want the result itself: they wait."
  (let ((head (save-excursion (org-babel-where-is-src-block-head)))
        (location org-babel-current-src-block-location))
    (and head (not gradients--resolving-reference)
         (or (null location)
             (= head (if (markerp location) (marker-position location) location))))))

(defun gradients--async-p (params)
  (and (not noninteractive)
       (member (cdr (assq :async params)) '("yes" yes t))))

;; A misspelt header argument is ignored by Org without a word: a block
;; with `:fiel images/x.png' would draw nothing where the notes expect it.
(defun gradients-unknown-header-names (arguments language)
  "The names in header ARGUMENTS (a string) that neither Org nor LANGUAGE's
backend knows; LANGUAGE nil stands for arguments given to every language."
  (let* ((specific (intern-soft (format "org-babel-header-args:%s"
                                        (or language "jupyter-python"))))
         (known (append org-babel-header-arg-names
                        (and specific (boundp specific)
                             (mapcar #'car (symbol-value specific))))))
    (cl-loop for (key . _) in (org-babel-parse-header-arguments arguments t)
             for name = (intern (substring (symbol-name key) 1))
             unless (memq name known) collect key)))

(defun gradients-check-header-names (block)
  "Fail on a name in the header of BLOCK, a src-block element, that Org
would ignore."
  (let ((unknown (gradients-unknown-header-names
                  (string-trim
                   (mapconcat #'identity
                              (delq nil (cons (org-element-property :parameters block)
                                              (org-element-property :header block)))
                              " "))
                  (org-element-property :language block))))
    (when unknown
      (error "%s: unknown header argument%s %s; Org would ignore %s (a typo?)"
             (gradients-block-description) (if (cdr unknown) "s" "")
             (mapconcat #'symbol-name unknown ", ") (if (cdr unknown) "them" "it")))))

(defun gradients-variable-assignments (params)
  "Python statements that give each `:var' of PARAMS its value, written
as ob-python writes them, so tables and lists arrive as lists."
  (require 'ob-python)
  (org-babel-variable-assignments:python params))

(defun gradients-execute (body params)
  "Run BODY on the kernel of the session in PARAMS; return the drawer text.
A picture block writes its :file from the display output.  With `:async
yes', interactively, return a placeholder at once and put the result in
its place when it comes."
  (let ((head (gradients--block-head)))
    (when head
      (save-excursion
        (goto-char head)
        (gradients-check-header-names (org-element-at-point)))))
  (let* ((request (gradients--new-request
                   (org-babel-expand-body:generic
                    body params (gradients-variable-assignments params))
                   params))
         (process (gradients--session-process params))
         (own-drawer (gradients--own-drawer-p)))
    (if (and own-drawer (gradients--async-p params))
        (gradients--execute-async process request params)
      (let ((previous (and own-drawer (gradients--drawer-text))))
        (gradients--submit process request)
        (let ((text (gradients--result-text request (gradients--wait process request))))
          (unless (gradients--silent-p params)
            (gradients--forget-loose-pictures previous text))
          text)))))

(defun gradients-run-block (body params where)
  "Run BODY with PARAMS on its session's kernel and wait for it; return
the reply, an alist with the drawer text under `org' and what the block
printed under `printed'.  A block that fails signals an error naming
WHERE.  For callers that read each block once themselves (the build)."
  (let ((request (gradients--new-request
                  (org-babel-expand-body:generic
                   body params (gradients-variable-assignments params))
                  params where))
        (process (gradients--session-process params)))
    (gradients--submit process request)
    (let ((reply (gradients--wait process request)))
      (gradients--result-text request reply)
      reply)))

(defun gradients--silent-p (params)
  "Whether Org writes no drawer for a block with PARAMS."
  (let ((result-params (cdr (assq :result-params params))))
    (and (or (member "silent" result-params) (member "none" result-params)) t)))

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

(defun gradients--drawer-text ()
  "The content of the results drawer of the block at point, or nil."
  (let* ((info (org-babel-get-src-block-info 'light))
         (result (and info (org-babel-where-is-src-block-result nil info))))
    (when result
      (save-excursion
        (goto-char result)
        (forward-line)
        (when (looking-at "[ \t]*:results:[ \t]*\n")
          (let ((start (match-end 0)))
            (when (re-search-forward "^[ \t]*:end:[ \t]*$" nil t)
              (string-trim-right
               (buffer-substring-no-properties start (match-beginning 0))))))))))

(defvar gradients--earlier-results (make-hash-table)
  "The result each pending request's block had before it, by request id:
what a block run again while it waits, and then failing, gets back.")

(defun gradients--earlier-result ()
  "The drawer text of the block at point before it was run, or nil.  A
placeholder is no result: in its place the drawer's text before that
request, if it is still waiting, or nothing (a placeholder saved in the
file by an Emacs that quit before the reply came)."
  (let ((text (gradients--drawer-text)))
    (if (and text (string-match gradients--placeholder-regexp text))
        (gethash (string-to-number (match-string 1 text)) gradients--earlier-results)
      text)))

(defun gradients--execute-async (process request params)
  "Queue REQUEST and return its placeholder.  The reply goes to the block
that asked for it, found again by a marker, and only while its drawer
still holds this request's placeholder.  A block whose result Org does
not write (`:results silent' or `none') only says how it went."
  (let* ((marker (copy-marker (or (org-babel-where-is-src-block-head) (point))))
         (id (gradients-request-id request))
         (previous (gradients--earlier-result))
         (result-params (cdr (assq :result-params params)))
         (silent (gradients--silent-p params)))
    (puthash id previous gradients--earlier-results)
    (setf (gradients-request-callback request)
          (lambda (reply)
            (remhash id gradients--earlier-results)
            (if silent
                (gradients--report-silent request reply result-params marker)
              (gradients--fill-placeholder marker request reply previous result-params))))
    (gradients--submit process request)
    (gradients--placeholder request)))

(defun gradients--report-silent (request reply result-params marker)
  "Say how REQUEST, whose result goes into no drawer, went: its failure,
or with `:results silent' its result, as Org shows it."
  (set-marker marker nil)
  (condition-case failure
      (let ((text (gradients--result-text request reply)))
        (when (and text (member "silent" result-params))
          (message "%s" text)))
    (error (message "%s" (error-message-string failure)))))

(defun gradients--fill-placeholder (marker request reply previous result-params)
  (let ((buffer (marker-buffer marker)))
    (if (not (buffer-live-p buffer))
        (message "gradients: %s finished, but its buffer is gone"
                 (gradients-request-where request))
      (with-current-buffer buffer
        (save-excursion
          (save-restriction
            (widen)
            (goto-char marker)
            (if (not (equal (gradients--drawer-text) (gradients--placeholder request)))
                ;; Not a word when the block was run again meanwhile.
                (unless (string-match-p gradients--placeholder-regexp
                                        (or (gradients--drawer-text) ""))
                  (message "gradients: %s finished, but its results drawer changed meanwhile; not written"
                           (gradients-request-where request)))
              (let ((text (condition-case failure
                              (gradients--result-text request reply)
                            (error (message "%s" (error-message-string failure))
                                   ;; A block that fails keeps its earlier
                                   ;; result, as when Emacs waits for it.
                                   (or previous 'remove))))
                    (info (org-babel-get-src-block-info)))
                (if (memq text '(nil remove))
                    (org-babel-remove-result info)
                  (org-babel-insert-result text result-params info nil "jupyter-python"))
                (gradients--forget-loose-pictures previous (and (stringp text) text))
                (goto-char marker)
                (run-hooks 'org-babel-after-execute-hook)))))
        (set-marker marker nil)))))

;;;; Commands

(defun gradients--current-session ()
  "The process of the session the block at point uses, or the only one."
  (or (and (derived-mode-p 'org-mode)
           (let ((info (ignore-errors (org-babel-get-src-block-info 'light))))
             (and info (equal (car info) "jupyter-python")
                  (cdr (assoc (gradients--session-name (nth 2 info)) gradients--sessions)))))
      (cdr (car gradients--sessions))))

(defun gradients-interrupt ()
  "Interrupt the running block, as Jupyter's interrupt does: it ends with
KeyboardInterrupt and the kernel keeps its variables.  Blocks queued
behind it are dropped."
  (interactive)
  (let ((process (gradients--current-session)))
    (if (not (process-live-p process))
        (message "gradients: no kernel is running")
      (let ((queue (process-get process 'queue)))
        (process-put process 'queue nil)
        (gradients--drop queue "the kernel was interrupted"))
      (if (process-get process 'current)
          (progn (gradients--interrupt-process process)
                 (message "gradients: interrupted %s"
                          (gradients-request-where (process-get process 'current))))
        (message "gradients: no block is running")))))

(defun gradients-restart ()
  "Replace the kernel of the current session with a fresh one."
  (interactive)
  (let* ((process (gradients--current-session))
         (name (if process (process-get process 'session) "gradients"))
         ;; The fresh kernel works where the old one did, whichever
         ;; buffer the command came from.
         (default-directory (or (and process (process-get process 'directory))
                                default-directory)))
    (when process (gradients--stop process))
    (gradients-start-session name)
    (message "gradients: restarted the kernel of session %s; its variables are gone" name)))

;;;; Setting up Emacs for the notes

(defun gradients-drop-empty-result ()
  "Remove the results drawer of a block that printed and returned nothing,
so that definitions carry no empty drawers."
  (let ((info (org-babel-get-src-block-info 'light)))
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

(defun gradients-python-mode ()
  "python-mode for the notes' blocks, without guessing the indentation:
Org fontifies and edits blocks in buffers that have no file, so no
directory setting reaches them, and the guess would say it failed."
  (let ((python-indent-guess-indent-offset nil))
    (python-mode)))

(defun gradients--notes-buffer-p ()
  "Whether the current buffer visits a file of this project."
  (and buffer-file-name
       (file-in-directory-p buffer-file-name gradients-project-directory)))

(defun gradients-fit-pictures ()
  "Show the notes' inline pictures at most 640 pixels wide.
This lives here, not in .dir-locals.el, because Org 9.5 does not mark
`org-image-actual-width' safe, and Emacs would ask about it on opening."
  (when (gradients--notes-buffer-p)
    (setq-local org-image-actual-width '(640))
    ;; `#+STARTUP: inlineimages' showed them before this hook could set
    ;; the width.  No picture is decoded before the next redisplay, so
    ;; showing them again costs next to nothing.
    (when (bound-and-true-p org-inline-image-overlays)
      (org-remove-inline-images)
      (org-display-inline-images))))

(defun gradients-show-result-pictures ()
  "Show the pictures in the results of the block at point, afresh.
Run after each block, including when an asynchronous result arrives.
A block rewrites its picture under the same file name, and Emacs keeps
decoded images keyed by file name: without dropping that file from the
image cache the old picture would stay on screen.  Only this block's
results are redrawn, and only in buffers of the notes: the user's other
Org files keep whatever they show."
  (when (and (display-graphic-p) (gradients--notes-buffer-p))
    (save-excursion
      (let* ((info (org-babel-get-src-block-info 'light))
             (result (and info (org-babel-where-is-src-block-result nil info))))
        (when result
          (goto-char result)
          (let ((end (copy-marker (org-babel-result-end))))
            (dolist (overlay (overlays-in result end))
              (when (memq overlay org-inline-image-overlays)
                (setq org-inline-image-overlays (delq overlay org-inline-image-overlays))
                (delete-overlay overlay)))
            ;; A text result has no picture, and Org 9.6 and later clear
            ;; the whole image cache of the frame on every refresh.
            (when (re-search-forward "\\[\\[" end t)
              ;; Org 9.5 removes every picture of the buffer unless asked
              ;; to refresh; with REFRESH, all releases leave the rest be.
              (org-display-inline-images nil t result end)
              (dolist (overlay (overlays-in result end))
                (when (memq overlay org-inline-image-overlays)
                  (let ((file (plist-get (cdr (overlay-get overlay 'display)) :file)))
                    (when file (clear-image-cache file))))))
            (set-marker end nil)))))))

(defvar org-babel-header-args:jupyter-python
  '((timeout . :any) (async . ((yes no))) (kernel . :any))
  "Header arguments of `jupyter-python' blocks beyond Org's own.")

(defun gradients-install ()
  "Make this file org-babel's `jupyter-python' executor, unless
emacs-jupyter already provides one."
  (with-eval-after-load 'org-src
    (add-to-list 'org-src-lang-modes '("jupyter-python" . gradients-python)))
  (add-hook 'org-mode-hook #'gradients-fit-pictures)
  (with-eval-after-load 'ob-core
    (add-hook 'org-babel-after-execute-hook #'gradients-show-result-pictures))
  (with-eval-after-load 'ob-ref
    (advice-add 'org-babel-ref-resolve :around #'gradients--resolve-reference))
  (dolist (buffer (buffer-list))
    (with-current-buffer buffer
      (when (derived-mode-p 'org-mode) (gradients-fit-pictures))))
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
