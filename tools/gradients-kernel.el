;;; gradients-kernel.el --- the kernel client: one bridge per session  -*- lexical-binding: t -*-

;; Each session is one tools/kernel_bridge.py process, which runs a Jupyter
;; kernel from the project's venv.  Requests go to it one JSON line each
;; and replies come back the same way (the protocol is in the bridge's
;; docstring).  This file starts and stops bridges, queues requests, and
;; waits for replies; it knows nothing of Org, so the batch build can
;; start a kernel before Org has loaded.

;;; Code:

(require 'cl-lib)
(require 'json)

(defconst gradients-tools-directory
  (file-name-directory (or load-file-name buffer-file-name))
  "The folder holding this file and the kernel bridge.")

(defconst gradients-project-directory
  (file-name-directory (directory-file-name gradients-tools-directory)))

(defgroup gradients nil
  "Running the notes' `jupyter-python' blocks on the project's kernel."
  :group 'org-babel
  :prefix "gradients-")

(defcustom gradients-python
  (expand-file-name ".venv/bin/python" gradients-project-directory)
  "The Python whose ipykernel runs the blocks: the project's venv."
  :type 'file)

(defvar gradients-kernel-directory nil
  "The folder kernels start in, where a block's relative paths lead; nil
for `default-directory' (interactively, the Org file's folder).  The
batch build sets it to the Org file's folder, whatever folder Emacs was
started from and whichever session a block asks for.")

(defcustom gradients-interrupt-patience 3
  "Seconds after an interrupt (`gradients-interrupt', C-g in a wait, a
quit that stops the blocks) before saying that a block which has not
stopped (one that catches KeyboardInterrupt, or is stuck in C code)
needs `gradients-restart'."
  :type 'number)

(defcustom gradients-stop-patience 3
  "Seconds `gradients-stop-sessions' and `gradients-restart' give a bridge
to stop its kernel, with whatever the kernel started, before killing the
bridge: its kernel's supervisor then ends them all."
  :type 'number)

(defvar gradients-chatty t
  "Whether to say when a kernel starts or stops, and what a user can do
next.  The batch build binds it to nil: its log names each block.")

(defvar gradients-bridge-patience 60
  "Seconds a bridge holding a block may say nothing, or be past the
block's time limit without answering for it.  A bridge busy with its
kernel says it is alive every second, and answers for a block past its
limit itself: it interrupts the block, then kills the kernel and all it
started, each with patience of its own.  One silent or late for longer
is stopped or stuck (SIGSTOP, a debugger), and would keep the block, and
the blocks queued behind it, waiting for ever: it is killed, and its
kernel with it.")

(defconst gradients--kernel-start-limit 60
  "Seconds a bridge gives its kernel to start (`wait_for_ready' in
kernel_bridge.py) before it gives up, saying so.")

(defvar gradients-progress-interval nil
  "Seconds between lines saying that a block waited for still runs, or
nil for none.  The batch build, whose log is all a person sees, sets it.")

;; Not `file-in-directory-p': it takes a folder to be itself only when two
;; looks at it, made one after the other, find every attribute equal,
;; times included, so any process reading or writing in the folder at
;; that moment (a kernel importing from it updates its access time) can
;; make a file of the folder seem to lie outside it.
(defun gradients-file-inside-p (file folder)
  "Whether FILE is FOLDER or lies under it, symbolic links followed;
decided by the names they resolve to."
  (string-prefix-p (file-name-as-directory (file-truename (expand-file-name folder)))
                   (file-name-as-directory (file-truename (expand-file-name file)))))

(defvar gradients--sessions nil
  "Alist of (SESSION-NAME . PROCESS): a bridge per session name and per
folder (the process property `directory'), newest first.")

(defvar gradients--last-id
  ;; A placeholder saved in the file by an Emacs that quit (or crashed)
  ;; stays there with its id; were ids to start at 1 in every Emacs, the
  ;; next one's request of that id would take that drawer for its own.
  ;; Each Emacs starts its own range instead, from its process id and
  ;; start time, above the ids a test or a reader would write by hand.
  (* 1000 (+ 1000 (mod (+ (emacs-pid) (* 7919 (truncate (float-time)))) 1000000)))
  "The id of the last request; ids are never reused within an Emacs, nor
met again from another in practice.")

(cl-defstruct (gradients-request (:constructor gradients--make-request))
  id          ; matches the reply to this request and no other
  json        ; what is sent to the bridge
  where       ; "README.org:LINE: block NAME", for messages
  callback    ; called with the reply; nil while someone waits for it
  reply       ; the reply, once it came
  abandoned   ; its waiter gave up (C-g): the reply goes nowhere
  value-of    ; the result params of a block whose value Org wants, or nil
  timeout     ; its time limit in seconds, or nil
  source      ; the block's code as written when it was asked for, or nil
  interrupted ; whether Emacs interrupted it (a block may raise KeyboardInterrupt itself)
  sent)       ; when it went to the bridge, or nil while it waits its turn

(defconst gradients--raise
  (lambda (text) (signal 'user-error (list text)))
  "Signal TEXT as an error from a function without a name.  Emacs logs an
error in *Messages* behind the name of the function that signalled it,
which is a special form (\"progn: README.org:12: ...\") when this file
is loaded as source; a closure has no name to show.")

(defun gradients--fail (format-string &rest arguments)
  "Fail with the message FORMAT-STRING makes of ARGUMENTS, as the block's
own words: no Lisp function name before it, no debugger."
  (funcall gradients--raise (apply #'format format-string arguments)))

;;;; The bridge process

(defvar gradients-reply-functions nil
  "Functions called with each request and its reply as it comes, before
anything else is done with it: `make run' gathers its replies so.")

(defun gradients--deliver (request reply)
  (run-hook-with-args 'gradients-reply-functions request reply)
  (setf (gradients-request-reply request) reply)
  (cond ((and (gradients-request-abandoned request)
              (equal (alist-get 'kind reply) "died"))
         ;; No result came: the kernel went, and the variables with it.
         (message "gradients: the kernel of %s was lost after its wait was given up (%s); its variables are gone"
                  (gradients-request-where request)
                  (car (split-string (or (alist-get 'error reply) "") "\n"))))
        ;; Its interrupt worked: said in *Messages* alone, as nothing
        ;; waits for it, and the echo area may hold a question (the save
        ;; of a quit that stopped it).
        ((and (gradients-request-abandoned request)
              (member (alist-get 'kind reply) '("interrupted" "stopped")))
         (let ((inhibit-message t))
           (message "gradients: %s stopped after its wait was given up"
                    (gradients-request-where request))))
        ((gradients-request-abandoned request)
         (message "gradients: the result of %s came after its wait was given up; dropped"
                  (gradients-request-where request)))
        ((gradients-request-callback request)
         (funcall (gradients-request-callback request) reply))))

(defun gradients--note-held-stopped (process)
  "Note when PROCESS was first seen held stopped (SIGSTOP from outside),
and forget it once it runs again.  Emacs calls no sentinel for either
change when it happens to read the status in between, so the watch
\(`gradients--watch-bridges') looks."
  (if (eq (process-status process) 'stop)
      (unless (process-get process 'stopped-at)
        (process-put process 'stopped-at (float-time)))
    (process-put process 'stopped-at nil)))

(defun gradients--send-next (process)
  "Send the next queued request to PROCESS, when it is free for one."
  (gradients--note-held-stopped process)
  (when (and (process-get process 'ready)
             (null (process-get process 'current))
             ;; Emacs writes nothing to a bridge it saw stop (SIGSTOP from
             ;; outside): the block stays queued, and the watch sends it
             ;; once the bridge goes on.
             (eq (process-status process) 'run)
             ;; Nor is a block sent to one told to stop: it goes with its
             ;; queue, which the sentinel drops.
             (not (process-get process 'stopped))
             (not (process-get process 'dead)))
    (let ((request (pop (process-get process 'queue))))
      (when request
        (process-put process 'current request)
        (setf (gradients-request-sent request) (float-time))
        ;; Nor to one that has just ended: the block counts as running,
        ;; and the sentinel answers it.
        (condition-case nil
            (process-send-string process (concat (gradients-request-json request) "\n"))
          (error nil))))))

(defun gradients--handle-line (process line)
  ;; A busy bridge's word that it is alive (Replies in kernel_bridge.py),
  ;; which `gradients--filter' has noted: nothing to answer.
  (unless (equal line "{\"alive\": true}")
    (gradients--handle-reply process line)))

(defun gradients--handle-reply (process line)
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
      (let ((queue (and (equal (alist-get 'kind reply) "died")
                        (process-get process 'queue))))
        (when (equal (alist-get 'kind reply) "died")
          ;; The bridge exits after this reply; no block may be sent to
          ;; it, and those queued behind go to a fresh one.
          (process-put process 'dead t)
          (process-put process 'queue nil)
          (setq gradients--sessions (cl-remove process gradients--sessions :key #'cdr))
          (push (cons 'requeued (length queue)) reply))
        ;; A reply that names another request than the one running has
        ;; nowhere to go: it is never written into some other block.
        (when (and request (equal (alist-get 'id reply) (gradients-request-id request)))
          (process-put process 'current nil)
          (gradients--deliver request reply)
          ;; As Jupyter aborts the cells queued behind one that raised
          ;; (C-c C-v b, several C-c C-c): they may need what it did not
          ;; do, and their failures would bury its own.
          (when (and (equal (alist-get 'kind reply) "raised")
                     (process-get process 'queue))
            (let ((behind (process-get process 'queue)))
              (process-put process 'queue nil)
              (gradients--drop behind (format "%s raised before them; run them again once it is fixed"
                                              (gradients-request-where request))))))
        (when queue
          (gradients--requeue process queue))))
    (gradients--send-next process)))

(defun gradients--requeue (process requests)
  "Send REQUESTS, queued on PROCESS whose kernel died, to a fresh kernel
of the same session, in the same folder."
  (let* ((default-directory (process-get process 'directory))
         (gradients-kernel-directory nil)
         (fresh (condition-case failure
                    (gradients-start-session (process-get process 'session))
                  (error (gradients--drop requests (error-message-string failure))
                         nil))))
    (when fresh
      (process-put fresh 'announced t)
      (dolist (request requests)
        (gradients--submit fresh request)))))

(defun gradients--filter (process output)
  "Collect OUTPUT of PROCESS; each complete line is a reply.  A long reply
comes in many pieces: they are kept in a list and joined once its line
is complete, so that its cost stays linear in its length."
  (process-put process 'heard (float-time))
  (let ((start 0))
    (while (string-match "\n" output start)
      (let ((line (apply #'concat (nreverse (cons (substring output start (match-beginning 0))
                                                  (process-get process 'pending))))))
        (setq start (match-end 0))
        (process-put process 'pending nil)
        (gradients--handle-line process line)))
    (when (< start (length output))
      (process-put process 'pending (cons (substring output start)
                                          (process-get process 'pending))))))

(defun gradients--stderr-tail (process)
  "The end of what the bridge PROCESS wrote to its error output.  Its last
words may still be on their way through their own pipe: a moment is
given for them, never more."
  (let* ((buffer (get-buffer (process-get process 'stderr-buffer)))
         (pipe (and buffer (get-buffer-process buffer)))
         (until (+ (float-time) 0.5)))
    (while (and pipe (process-live-p pipe) (< (float-time) until))
      (gradients--accept-output pipe 0.05 t))
    (if (buffer-live-p buffer)
        (with-current-buffer buffer
          (string-trim (buffer-substring (max (point-min) (- (point-max) 3000))
                                         (point-max))))
      "")))

(defun gradients--sentinel (process _event)
  "When a bridge ends, its running block fails and its queue is dropped."
  (unless (process-live-p process)
    (let ((session (car (rassq process gradients--sessions))))
      ;; Its kernel gone while no block ran: the author learns it now,
      ;; not from a later block's "NameError".
      (when (and session (process-get process 'ready) (not (process-get process 'stopped))
                 (not (process-get process 'current)))
        (message "gradients: session %s lost its kernel while no block ran: %s; the next block starts a fresh one, without the variables"
                 session (or (gradients--reason-in (gradients--stderr-tail process))
                             (gradients--bridge-end process)))))
    (setq gradients--sessions (cl-remove process gradients--sessions :key #'cdr))
    (let ((current (process-get process 'current))
          (queue (process-get process 'queue))
          (stopped (process-get process 'stopped)))
      (process-put process 'current nil)
      (process-put process 'queue nil)
      (let ((requeue (and queue (not stopped) (process-get process 'ready))))
        (when current
          (gradients--deliver
           current `((ok . nil) (kind . ,(if stopped "stopped" "died"))
                     (requeued . ,(if requeue (length queue) 0))
                     ;; From outside (kill -9 or the like), not by Emacs
                     ;; for its silence: no doing of the block's.  A
                     ;; bridge exits 0 only when told to stop (SIGTERM,
                     ;; SIGHUP), which Emacs did not do here.
                     (killed . ,(and (not stopped)
                                     (or (process-get process 'held-stopped)
                                         (and (not (process-get process 'unanswered))
                                              (or (eq (process-status process) 'signal)
                                                  (eql (process-exit-status process) 0))))))
                     (error . ,(if stopped "the kernel was stopped"
                                 (or (process-get process 'unanswered)
                                     (gradients--bridge-end process)))))))
        ;; A bridge that ended of itself is replaced, as a kernel that
        ;; died is; one that was told to stop takes its queue with it.
        (if requeue
            (gradients--requeue process queue)
          (gradients--drop queue (cond ((process-get process 'unanswered))
                                       ((or stopped (process-get process 'ready))
                                        "its kernel stopped")
                                       (t (gradients--start-failure process)))))))))

(defun gradients--bridge-end (process)
  "How the bridge PROCESS ended of itself: by a signal (kill -9, the
kernel's memory), or with an exit status, and its last words if any."
  (let ((tail (gradients--stderr-tail process)))
    (concat (if (eq (process-status process) 'signal)
                (format "the kernel bridge was killed by signal %d"
                        (process-exit-status process))
              (if (eql (process-exit-status process) 0)
                  "the kernel bridge was told to stop from outside (SIGTERM or SIGHUP)"
                (format "the kernel bridge ended (exit status %d)"
                        (process-exit-status process))))
            ;; On lines of their own: the first line is said alone.
            (if (string-empty-p tail) "" (concat "\n" tail)))))

(defconst gradients--traceback-headings
  (concat "\\`\\(?:Traceback (most recent call last):\\|Exception in thread .*:"
          "\\|During handling of the above exception"
          "\\|The above exception was the direct cause\\)")
  "Lines that open or join a Python traceback, none of which says why.")

(defun gradients--reason-in (said)
  "The line of SAID, a dying process's error output, that names why:
the last line a traceback ends with, or one outside any, as the bridge
finds its kernel's (kernel_bridge.reason_in).  Its last line may be a
frame of a traceback cut by the process's end, or Emacs's own \"Process
... exited\" line."
  (let ((lines (reverse (split-string said "\n" t "[ \t\r]*\\'"))))
    (or (cl-find-if (lambda (line)
                      (not (or (string-match-p "\\`[ \t]" line)
                               (string-match-p gradients--traceback-headings line)
                               (string-prefix-p "Process " line))))
                    lines)
        (car lines))))

(defun gradients--start-failure (process)
  "Why the bridge PROCESS ended before its kernel was ready: the line of
its error output that names the error (a venv without pyzmq, a kernel
that did not start in time)."
  (let ((reason (gradients--reason-in (gradients--stderr-tail process))))
    ;; A batch build's Emacs, and that buffer, end right after it says so.
    (format "its kernel did not start%s%s"
            (if reason (concat ": " (string-trim reason)) "")
            (if noninteractive ""
              (format " (more in the buffer `%s')" (process-get process 'stderr-buffer))))))

(defun gradients--drop (requests why)
  "Tell every request in REQUESTS that it will not run, because WHY."
  (when requests
    (dolist (request requests)
      (gradients--deliver request `((ok . nil) (kind . "dropped") (error . ,why))))
    (message "gradients: %d queued block%s dropped: %s" (length requests)
             (if (cdr requests) "s" "") why)))

(defun gradients--kernel-folder ()
  "The folder a kernel started from here works in: where the Org file's
relative paths lead."
  (file-name-as-directory
   (expand-file-name (or gradients-kernel-directory default-directory))))

(defun gradients--find-session (name folder)
  "The live bridge of session NAME working in FOLDER, or nil.  A session
is a name and a folder: notes in two folders that both say `:session
gradients' get a kernel each, so neither runs in the other's folder or
sees the other's variables."
  (cdr (cl-find-if (lambda (session)
                     (and (equal (car session) name)
                          (process-live-p (cdr session))
                          (equal (process-get (cdr session) 'directory) folder)))
                   gradients--sessions)))

(defun gradients--check-python ()
  "Fail unless the venv's Python, which runs every bridge, is there."
  (unless (file-executable-p gradients-python)
    (gradients--fail "No %s: run `make venv' in %s first" gradients-python
                     (abbreviate-file-name gradients-project-directory))))

(defun gradients-start-session (name)
  "Start the bridge for session NAME in this folder unless it runs;
return its process.  It returns at once: the kernel boots while Emacs
does other work."
  (let ((folder (gradients--kernel-folder)))
    (or (gradients--find-session name folder)
        (progn
          (gradients--check-python)
          (let* ((stderr (get-buffer-create
                          (format " *gradients-kernel %s in %s*" name
                                  (abbreviate-file-name folder))))
                 (default-directory folder)
                 (process (make-process
                           :name (format "gradients-kernel-%s" name)
                           ;; Isolated (-I): no PYTHONPATH, PYTHONHOME or
                           ;; user site of the caller changes the bridge;
                           ;; the kernel's environment is the bridge's to
                           ;; make (kernel_environment).
                           :command (list gradients-python "-I"
                                          (expand-file-name "kernel_bridge.py"
                                                            gradients-tools-directory))
                           ;; The bridge reads UTF-8 whatever the locale.
                           :coding 'utf-8-unix
                           :connection-type 'pipe
                           :noquery t
                           :stderr stderr
                           :filter #'gradients--filter
                           :sentinel #'gradients--sentinel)))
            (with-current-buffer stderr (erase-buffer))
            (process-put process 'stderr-buffer (buffer-name stderr))
            (process-put process 'session name)
            (process-put process 'directory folder)
            (process-put process 'started (float-time))
            (setq gradients--sessions
                  (cons (cons name process)
                        (cl-remove-if-not (lambda (session) (process-live-p (cdr session)))
                                          gradients--sessions)))
            process)))))

(defun gradients--session-label (process)
  "How messages name the session of PROCESS: its name, and its folder
when another session of that name works elsewhere."
  (let ((name (process-get process 'session))
        (folder (process-get process 'directory)))
    (if (cl-some (lambda (session)
                   (and (equal (car session) name)
                        (not (eq (cdr session) process))
                        (process-live-p (cdr session))))
                 gradients--sessions)
        (format "%s (in %s)" name (abbreviate-file-name folder))
      name)))

(defun gradients--accept-output (process seconds &optional just-this-one)
  "Wait up to SECONDS for output from PROCESS, a bridge or its error pipe;
JUST-THIS-ONE as for `accept-process-output'.  Every wait of the
executor's is this one.  A bridge held stopped (SIGSTOP, a shell's
Ctrl-Z) is a process `accept-process-output' returns for at once: a loop
waiting on it spun, a processor's worth, and Emacs, stopped by Ctrl-C in
that state, aborted.  It is waited for as any process then.  A sentinel
or a timer runs with quit inhibited, and a wait there put \"Blocking call
to accept-process-output with quit inhibited!!\" in the echo area over
the block's own message: quit is let in for the wait alone, and a C-g
during it takes effect once the sentinel has done its work."
  (with-local-quit
    (accept-process-output (unless (eq (process-status process) 'stop) process) seconds
                           nil just-this-one)))

(defun gradients--stop (process &optional no-wait)
  "Stop PROCESS and its kernel: SIGTERM makes the bridge kill the kernel
with everything it started, even in the middle of a block."
  (when (process-live-p process)
    (unless (process-get process 'stopped)
      (process-put process 'stopped t)
      (signal-process process 'SIGTERM)
      ;; One held stopped acts on it only once it runs again.
      (signal-process process 'SIGCONT))
    (unless no-wait
      (with-timeout (gradients-stop-patience (delete-process process))
        (while (process-live-p process)
          (gradients--accept-output process 0.05)))
      ;; A process can be seen to have ended before its sentinel ran;
      ;; whoever stops it counts on its blocks' drawers being restored
      ;; (before a save, on the way out).  The sentinel does nothing twice.
      (gradients--sentinel process nil))))

(defun gradients-stop-sessions (&optional no-wait)
  "Stop every bridge and its kernel; the next block starts a fresh one.
With NO-WAIT, only tell them to: each bridge stops its kernel on its
own, so a batch build can exit at once."
  (interactive)
  (let* ((processes (cl-remove-if-not #'process-live-p (mapcar #'cdr gradients--sessions)))
         ;; A bridge whose kernel died leaves the sessions at once, and
         ;; exits once it has cleaned up: it is waited for too, for until
         ;; then it holds a build's lock (one-build-at-a-time).
         (leaving (cl-set-difference (cl-remove-if-not #'process-live-p (gradients--bridges))
                                     processes))
         (labels (mapcar #'gradients--session-label processes))
         (unfinished (length (gradients--pending-requests))))
    (dolist (process (append processes leaving))
      (gradients--stop process no-wait))
    (setq gradients--sessions nil)
    (when gradients-chatty
      (message "gradients: %s"
               (if (null processes)
                   "no kernel was running"
                 (format "stopped the kernel%s of session%s %s%s"
                         (if (cdr processes) "s" "") (if (cdr processes) "s" "")
                         (mapconcat #'identity labels ", ")
                         (if (zerop unfinished) ""
                           (format "; %d block%s did not finish" unfinished
                                   (if (= unfinished 1) "" "s")))))))))

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
  "Every request running or waiting to run, in every session.  A bridge
that has just ended still counts until its sentinel has run: then its
requests are answered, or sent to a fresh kernel."
  (cl-loop for (_ . process) in gradients--sessions
           append (delq nil (cons (process-get process 'current)
                                  (copy-sequence (process-get process 'queue))))))

(defvar gradients--quit-confirmed nil
  "Non-nil while Emacs quits after the user agreed to stop the blocks.")

(defun gradients--confirm-quit ()
  "Ask before quitting while blocks run or wait, and if the answer is
yes, stop them: each drawer goes back to what it held before, so that a
file saved on the way out keeps no placeholder.  The kernels stay until
Emacs exits (`gradients--stop-on-exit'): the quit may still be called
off, at a question about saving or one of Emacs's own, and every
kernel, idle ones too, had lost its variables."
  (let ((pending (length (gradients--pending-requests))))
    (or (zerop pending)
        gradients--quit-confirmed
        (and (yes-or-no-p
              (format "%d block%s still running or waiting for the kernel; stop %s and quit? "
                      pending (if (= pending 1) " is" "s are")
                      (if (= pending 1) "it" "them")))
             (progn (gradients--stop-blocks "Emacs was asked to quit") t)))))

(defun gradients--stop-blocks (why)
  "Stop every block, saying WHY: those queued are dropped, those running
interrupted, as `gradients-interrupt' does, and given up, so that each
drawer goes back to what it held before now, and a result that comes
after all is dropped.  The kernels, and their variables, stay."
  ;; A bridge that has just died too: its sentinel, which would put its
  ;; drawers back, may not have run before the files are saved.
  (dolist (session gradients--sessions)
    (let* ((process (cdr session))
           (queue (process-get process 'queue))
           (running (process-get process 'current)))
      (process-put process 'queue nil)
      (gradients--drop queue why)
      (when (and running (not (gradients-request-abandoned running)))
        (gradients--interrupt-process process)
        (gradients--deliver running `((ok . nil) (kind . "stopped") (error . ,why)))
        (setf (gradients-request-abandoned running) t)))))

(add-hook 'kill-emacs-query-functions #'gradients--confirm-quit)

(defun gradients--ask-before-saving-on-quit (quit &rest arguments)
  "Around `save-buffers-kill-emacs': ask about running blocks before
Emacs offers to save files.  Asked after, as `kill-emacs-query-functions'
is, the question came too late: a file saved first kept the blocks'
placeholders."
  (when (gradients--confirm-quit)
    (let ((gradients--quit-confirmed t))
      (apply quit arguments))))

(advice-add 'save-buffers-kill-emacs :around #'gradients--ask-before-saving-on-quit)

;;;; Waiting for a reply

(defun gradients--submit (process request)
  (if (process-live-p process)
      (progn
        (process-put process 'queue (append (process-get process 'queue) (list request)))
        (gradients--watch)
        (gradients--send-next process))
    ;; A bridge that ended at once (a venv without pyzmq) may
    ;; have had its sentinel run already: nothing would answer a queue.
    (gradients--deliver request `((ok . nil) (kind . "dropped")
                                  (error . ,(gradients--start-failure process))))))

(defun gradients--interrupt-process (process)
  "Interrupt the block PROCESS's kernel is running.  The bridge sends
the kernel SIGINT, as Jupyter does, once the kernel has begun the block:
sent from here, a SIGINT that came before then was lost, and the block
ran to its end.  A block still running `gradients-interrupt-patience'
seconds later is named, with the way out, however it was interrupted."
  (let ((current (process-get process 'current)))
    (when current
      (setf (gradients-request-interrupted current) t)
      ;; A bridge that has just ended answers no more: its sentinel does.
      (condition-case nil
          (process-send-string process (format "{\"interrupt\": %d}\n"
                                               (gradients-request-id current)))
        (error nil))
      (run-at-time gradients-interrupt-patience nil
                   #'gradients--check-interrupted process current 1))))

(defun gradients--held-stopped-p (pid)
  "Whether process PID is held stopped (SIGSTOP from outside, a debugger)."
  (member (alist-get 'state (and pid (process-attributes pid))) '("T" "t")))

(defun gradients--check-interrupted (process request times)
  "Say so while REQUEST still runs on PROCESS after an interrupt, TIMES
`gradients-interrupt-patience' since it, and once more a patience later:
M-x, once its command has run, names a shorter way to it and then puts
back what the echo area said before, over the first saying.  *Messages*
gets the first alone.  Nothing is said over the questions of a quit,
which stopped the block and may still exit: it is said once the quit is
called off."
  (when (and (process-live-p process) (eq (process-get process 'current) request))
    (if gradients--quit-confirmed
        (run-at-time gradients-interrupt-patience nil
                     #'gradients--check-interrupted process request times)
      (let ((kernel (process-get process 'kernel-pid))
            (message-log-max (and (= times 1) message-log-max)))
        (message "gradients: %s is still running %gs after the interrupt (%s); M-x gradients-restart stops it, losing the kernel's variables"
                 (gradients-request-where request) (* times gradients-interrupt-patience)
                 (if (gradients--held-stopped-p kernel)
                     (format "its kernel is held stopped from outside: kill -CONT %d lets it go on"
                             kernel)
                   "it may catch KeyboardInterrupt, or be stuck outside Python")))
      (when (= times 1)
        (run-at-time gradients-interrupt-patience nil
                     #'gradients--check-interrupted process request 2)))))

(defun gradients--kill-if-unanswered (process request)
  "Kill PROCESS when REQUEST, which it runs or holds queued, is past its
time limit and `gradients-bridge-patience' with no answer, or PROCESS
has said nothing for that patience since it was last asked something:
its sentinel then fails the block, saying so.  The kernel's supervisor
ends all the kernel started as the bridge dies."
  (gradients--note-held-stopped process)
  (let* ((ready (process-get process 'ready))
         ;; Before its kernel is ready, the bridge has a time limit too.
         (since (if ready (gradients-request-sent request) (process-get process 'started)))
         (limit (if ready (gradients-request-timeout request) gradients--kernel-start-limit))
         (current (process-get process 'current))
         ;; Held stopped from outside, it holds the next block unsent.
         (held (eq (process-status process) 'stop))
         ;; An idle bridge says nothing, rightly: silence counts from
         ;; its start, the block it was last given, or when it was
         ;; stopped, whichever is latest.
         (silent (- (float-time)
                    (max (or (process-get process 'heard) 0)
                         (process-get process 'started)
                         (or (and current (gradients-request-sent current)) 0)
                         (or (and held (process-get process 'stopped-at)) 0)))))
    (when (and (process-live-p process)
               (if ready
                   (or (eq current request)
                       (and held (null current)
                            (eq request (car (process-get process 'queue)))))
                 (memq request (process-get process 'queue)))
               (not (process-get process 'unanswered)))
      (let ((why (cond ((and since limit
                             (> (- (float-time) since) (+ limit gradients-bridge-patience)))
                        (format "gave no answer %g s past %s"
                                gradients-bridge-patience
                                (format (if ready "the block's time limit of %g s"
                                          "the %g s its kernel has to start")
                                        limit)))
                       ((> silent gradients-bridge-patience)
                        (format "said nothing for %g s while it held a block"
                                gradients-bridge-patience)))))
        (when why
          (process-put process 'unanswered
                       (format "the kernel bridge %s (%s), and was killed" why
                               ;; Which no block can do: SIGSTOP from outside.
                               (if (eq (process-status process) 'stop)
                                   "held stopped from outside"
                                 "stopped, or stuck")))
          (process-put process 'held-stopped held)
          ;; The block it held unsent fails as the running one would;
          ;; those behind it go to a fresh kernel.
          (when (and ready held (null current))
            (process-put process 'current (pop (process-get process 'queue))))
          (signal-process process 'SIGKILL))))))

(defvar gradients-watch-interval 1
  "Seconds between two looks for a bridge that has not answered in time
(`gradients--watch-bridges'), while some block runs or waits.")

(defvar gradients--watch-timer nil
  "The timer of `gradients--watch-bridges', or nil while no block runs or
waits to run.")

(defun gradients--watch ()
  "Look for silent bridges from now until no block runs or waits.  A block
nobody waits for (`:async yes'), or queued behind one, has no
`gradients--wait' to notice that its bridge was stopped: it would wait
for ever, and its placeholder with it."
  (unless (memq gradients--watch-timer timer-list)
    (setq gradients--watch-timer (run-at-time gradients-watch-interval gradients-watch-interval
                                              #'gradients--watch-bridges))))

(defun gradients--watch-bridges ()
  "Kill each bridge that has not answered a block it runs, or holds
queued, in time (`gradients--kill-if-unanswered'), and send the next
block to one that goes on after it was held stopped; stop looking once
no bridge holds a block."
  (let ((pending nil))
    (dolist (process (gradients--bridges))
      (gradients--send-next process)
      (dolist (request (cons (process-get process 'current)
                             (copy-sequence (process-get process 'queue))))
        (when request
          (setq pending t)
          (gradients--kill-if-unanswered process request))))
    (when (and (not pending) gradients--watch-timer)
      (cancel-timer gradients--watch-timer)
      (setq gradients--watch-timer nil))))

(defun gradients--bridge-holding (request)
  "The live bridge running REQUEST or holding it in its queue, or nil."
  (cl-loop for (_ . process) in gradients--sessions
           when (and (process-live-p process)
                     (or (eq (process-get process 'current) request)
                         (memq request (process-get process 'queue))))
           return process))

(defun gradients--wait (process request)
  "Wait for REQUEST's reply, which PROCESS was sent.  C-g interrupts the
kernel, so the block really stops, and its reply, when it comes, is
dropped."
  (let ((start (float-time)) (said 0))
    (condition-case quit
        (while (not (gradients-request-reply request))
          ;; A request queued behind a block that ended its kernel goes to
          ;; a fresh bridge: the wait follows it there, as a dead one
          ;; would never answer, and waiting on it returns at once.
          (setq process (or (gradients--bridge-holding request) process))
          (gradients--accept-output process 0.5)
          ;; Sentinels do not run inside another process's filter (code
          ;; run by emacsclient -e, for one): see to a bridge that ended.
          (unless (or (process-live-p process) (gradients-request-reply request))
            (gradients--accept-output process 0.1)
            (unless (gradients-request-reply request)
              (gradients--sentinel process nil)))
          (gradients--kill-if-unanswered process request)
          ;; Not once the reply came in this pass: the block, no longer
          ;; the bridge's current one, read as waiting for blocks before it.
          (let ((seconds (and (not (gradients-request-reply request))
                              (truncate (- (float-time) start)))))
            (cond
             ((null seconds))
             (gradients-progress-interval
              (when (>= seconds (+ said gradients-progress-interval))
                (setq said seconds)
                (let ((inhibit-message nil))
                  (message "%s: still running after %d s"
                           (gradients-request-where request) seconds))))
             ;; Interactively, Emacs waits without a word or a redisplay
             ;; (a block a :var names, one under :async no): each second
             ;; says which block, and shows the placeholders written so far.
             ((and (not noninteractive) (> seconds said))
              (setq said seconds)
              (let ((message-log-max nil))
                (message "%s: %s, %d s (C-g stops it)"
                         (gradients-request-where request)
                         (cond ((eq (process-get process 'current) request) "running")
                               ((process-get process 'ready) "waiting for the blocks before it")
                               (t "waiting for the kernel to start"))
                         seconds))
              (redisplay)))))
      (quit
       (setf (gradients-request-abandoned request) t)
       (if (eq (process-get process 'current) request)
           (gradients--interrupt-process process)
         (process-put process 'queue (delq request (process-get process 'queue))))
       (signal (car quit) (cdr quit))))
    (gradients-request-reply request)))

(provide 'gradients-kernel)
;;; gradients-kernel.el ends here
