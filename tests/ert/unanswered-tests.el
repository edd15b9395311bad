;;; unanswered-tests.el --- a silent bridge fails every block it holds  -*- lexical-binding: t -*-

;; emacs -Q --batch -l tests/ert/unanswered-tests.el -f ert-run-tests-batch-and-exit
;;
;; A bridge that stops answering (SIGSTOP, a debugger) is killed once it
;; has said nothing for its patience, or past a block's time limit, or
;; past the time its kernel has to start, and its blocks fail saying so, whether someone waits for them or, as for an
;; `:async yes' block, nobody does.  The bridges here are `sleep', which
;; answers nothing, as a stopped bridge does: no kernel starts.  What a
;; real bridge stopped under an interactive Emacs leaves behind is
;; checked by tests/tooling/test_processes.py.

;;; Code:

(require 'ert)
(require 'cl-lib)

(defconst unanswered-tests--root
  (expand-file-name "../.." (file-name-directory (or load-file-name buffer-file-name)))
  "The project whose kernel client is tested.")

;; Found on the load path: `load' would read a `$' or `~' in the
;; checkout's path, were it given the file's absolute name.
(let ((load-path (cons (expand-file-name "tools" unanswered-tests--root) load-path)))
  (load "gradients-kernel.el" nil t t))

;; Looked at ten times a second: the tests wait for the looks.
(setq gradients-watch-interval 0.1)

(defvar unanswered-tests--bridges nil
  "The silent bridges the running test made, deleted after it.")

(defun unanswered-tests--bridge (ready &optional echo)
  "A bridge that never answers, its kernel READY or not, as far as
Emacs knows; started just now.  With ECHO, a function, it is `cat', and
what it is sent comes back to ECHO."
  (let* ((stderr (generate-new-buffer " *unanswered-silent-bridge*"))
         (process (make-process :name "unanswered-silent-bridge"
                                :command (if echo '("cat") '("sleep" "600"))
                                :filter (and echo (lambda (_ output) (funcall echo output)))
                                :connection-type 'pipe :noquery t :stderr stderr
                                :sentinel #'gradients--sentinel)))
    (push process unanswered-tests--bridges)
    (process-put process 'stderr-buffer (buffer-name stderr))
    (process-put process 'session "unanswered")
    (process-put process 'ready ready)
    (process-put process 'started (float-time))
    process))

(defun unanswered-tests--request (answer)
  "A request with a time limit of 0 s that nobody waits for, as an
`:async yes' block's: its reply goes to the function ANSWER."
  (let ((id (cl-incf gradients--last-id)))
    (gradients--make-request
     :id id :where (format "block %d" id) :timeout 0 :json "{}" :callback answer)))

(defun unanswered-tests--wait-until (predicate)
  "Let replies and timers in until PREDICATE returns non-nil, for at most
a minute; return its last value.  Generous: the things waited for take a
second or two, longer on a loaded machine."
  (let ((end (+ (float-time) 60))
        value)
    (while (and (not (setq value (funcall predicate))) (< (float-time) end))
      (accept-process-output nil 0.05))
    value))

(defun unanswered-tests--watching-p ()
  "Whether a timer looks for silent bridges."
  (and (cl-find #'gradients--watch-bridges timer-list :key #'timer--function) t))

(defmacro unanswered-tests--with-bridges (&rest body)
  "Run BODY, then delete the bridges it made, whatever it did."
  `(unwind-protect (progn ,@body)
     (mapc #'delete-process unanswered-tests--bridges)
     (setq unanswered-tests--bridges nil)))

(defun unanswered-tests--error-of-one-block (timeout stop-first)
  "The error of the one block, of time limit TIMEOUT (nil for none),
given to a silent bridge whose kernel is ready, with no patience; the
bridge first stopped (SIGSTOP) if STOP-FIRST.  The block must have
counted as running, and have failed with the bridge gone."
  (let* ((gradients-bridge-patience 0)
         (replies nil)
         (process (unanswered-tests--bridge t))
         (request (unanswered-tests--request (lambda (reply) (push reply replies)))))
    (setf (gradients-request-timeout request) timeout)
    (when stop-first
      (signal-process process 'SIGSTOP)
      (should (unanswered-tests--wait-until (lambda () (eq (process-status process) 'stop)))))
    (gradients--submit process request)
    ;; Emacs writes nothing to a bridge it knows is stopped: the block
    ;; waits its turn, and fails all the same.
    (if stop-first
        (should (equal (process-get process 'queue) (list request)))
      (should (eq (process-get process 'current) request)))
    (should (unanswered-tests--wait-until (lambda () replies)))
    (should-not (process-live-p process))
    (should (= (length replies) 1))
    (should (equal (alist-get 'kind (car replies)) "died"))
    ;; Held stopped, the bridge was no doing of the block's.
    (should (eq (alist-get 'killed (car replies)) stop-first))
    (alist-get 'error (car replies))))

(ert-deftest unanswered-a-running-block-nobody-waits-for-fails ()
  (unanswered-tests--with-bridges
   (should (string-match-p "no answer 0 s past the block's time limit of 0 s"
                           (unanswered-tests--error-of-one-block 0 nil)))
   (should (unanswered-tests--wait-until
            (lambda () (not (unanswered-tests--watching-p)))))))

(ert-deftest unanswered-blocks-queued-before-the-kernel-is-ready-all-fail ()
  (unanswered-tests--with-bridges
   (let* ((gradients-bridge-patience 0)
          (gradients--kernel-start-limit 0)
          (replies nil)
          (answer (lambda (reply) (push reply replies)))
          (process (unanswered-tests--bridge nil))
          (first (unanswered-tests--request answer))
          (second (unanswered-tests--request answer)))
     (gradients--submit process first)
     (gradients--submit process second)
     (should (equal (process-get process 'queue) (list first second)))
     (should (unanswered-tests--wait-until (lambda () (= (length replies) 2))))
     (should-not (process-live-p process))
     (dolist (reply replies)
       (should (equal (alist-get 'kind reply) "dropped"))
       (should (string-match-p "no answer 0 s past the 0 s its kernel has to start"
                               (alist-get 'error reply))))
     (should (unanswered-tests--wait-until
              (lambda () (not (unanswered-tests--watching-p))))))))

(ert-deftest unanswered-a-block-given-to-a-stopped-bridge-fails ()
  ;; Its time limit is for running, which it never did: the bridge's
  ;; silence since it was stopped is what fails it, said as it is.
  (unanswered-tests--with-bridges
   (should (string-match-p (concat "said nothing for 0 s while it held a block"
                                   " (held stopped from outside), and was killed")
                           (unanswered-tests--error-of-one-block 0 t)))))

(ert-deftest unanswered-a-block-given-to-a-stopped-bridge-is-sent-when-it-goes-on ()
  ;; Emacs refuses to write to a process it saw stop: the block was taken
  ;; from the queue all the same, and never sent once the bridge went on.
  (unanswered-tests--with-bridges
   (let* ((gradients-bridge-patience 60)
          (received "")
          (replies nil)
          (process (unanswered-tests--bridge
                    t (lambda (output) (setq received (concat received output)))))
          (request (unanswered-tests--request (lambda (reply) (push reply replies)))))
     (setf (gradients-request-timeout request) nil)
     (signal-process process 'SIGSTOP)
     (should (unanswered-tests--wait-until (lambda () (eq (process-status process) 'stop))))
     (gradients--submit process request)
     (should (equal (process-get process 'queue) (list request)))
     (signal-process process 'SIGCONT)
     (should (unanswered-tests--wait-until (lambda () (equal received "{}\n"))))
     (should (eq (process-get process 'current) request))
     (should-not (process-get process 'queue))
     (should-not replies)
     (should (process-live-p process)))))

(ert-deftest unanswered-nothing-watches-once-the-blocks-are-answered ()
  ;; The bridge answers here, so it is never killed; the watch must end
  ;; with the last block, not tick on while Emacs idles.
  (unanswered-tests--with-bridges
   (let* ((replies nil)
          (answer (lambda (reply) (push reply replies)))
          (process (unanswered-tests--bridge t))
          (request (unanswered-tests--request answer)))
     (setf (gradients-request-timeout request) nil)
     (should-not (unanswered-tests--watching-p))
     (gradients--submit process request)
     (should (unanswered-tests--watching-p))
     (gradients--handle-line
      process (format "{\"id\": %d, \"ok\": true, \"org\": \"\"}"
                      (gradients-request-id request)))
     (should (equal (alist-get 'ok (car replies)) t))
     (should (unanswered-tests--wait-until
              (lambda () (not (unanswered-tests--watching-p)))))
     (should (process-live-p process)))))

(ert-deftest unanswered-a-silent-bridge-fails-a-block-with-no-time-limit ()
  ;; Blocks run by hand have no time limit: only the bridge's silence
  ;; tells that it is stopped.
  (unanswered-tests--with-bridges
   (should (string-match-p "said nothing for 0 s while it held a block (stopped, or stuck)"
                           (unanswered-tests--error-of-one-block nil nil)))))

(ert-deftest unanswered-a-bridge-that-says-it-is-alive-is-not-silent ()
  ;; Its word counts from when it came, whatever the block's age; what
  ;; comes of it is nothing else: no reply, no block answered.
  (unanswered-tests--with-bridges
   (let* ((gradients-bridge-patience 5)
          (replies nil)
          (process (unanswered-tests--bridge t))
          (request (unanswered-tests--request (lambda (reply) (push reply replies)))))
     (setf (gradients-request-timeout request) nil)
     (process-put process 'current request)
     (process-put process 'started (- (float-time) 60))
     (setf (gradients-request-sent request) (- (float-time) 60))
     (gradients--filter process "{\"alive\": true}\n")
     (gradients--kill-if-unanswered process request)
     (should (process-live-p process))
     (should (eq (process-get process 'current) request))
     (should-not replies)
     (process-put process 'heard (- (float-time) 6))
     (gradients--kill-if-unanswered process request)
     (should (unanswered-tests--wait-until (lambda () replies)))
     (should (string-match-p "said nothing for 5 s" (alist-get 'error (car replies)))))))

(ert-deftest unanswered-a-kernel-lost-after-its-wait-was-given-up-is-said-lost ()
  ;; After C-g, a bridge killed for its silence was said to have sent a
  ;; result that came late: no result came, and the variables were gone.
  (let ((request (unanswered-tests--request nil))
        (said nil))
    (setf (gradients-request-abandoned request) t)
    (cl-letf (((symbol-function 'message)
               (lambda (format-string &rest arguments)
                 (push (apply #'format format-string arguments) said))))
      (gradients--deliver request '((ok . nil) (kind . "died")
                                    (error . "the kernel bridge was killed by signal 9\nits log"))))
    (should (string-match-p (concat "\\`gradients: the kernel of block [0-9]+ was lost after its wait"
                                    " was given up (the kernel bridge was killed by signal 9);"
                                    " its variables are gone\\'")
                            (car said)))))

(ert-deftest unanswered-no-wait-runs-with-quit-inhibited ()
  ;; A sentinel and a timer run with quit inhibited, and a wait there put
  ;; "Blocking call to accept-process-output with quit inhibited!!" in an
  ;; interactive Emacs's echo area over the block's own message (under
  ;; `ulimit -t', whose bridge dies with its last words still in the pipe).
  ;; Batch Emacs says nothing of it: each wait is looked at instead.
  (unanswered-tests--with-bridges
   (let ((inhibited 0)
         (replies nil)
         (holding-the-pipe nil))
     (advice-add 'accept-process-output :before
                 (lambda (&rest _) (when inhibit-quit (cl-incf inhibited)))
                 '((name . unanswered-tests--quit-inhibited)))
     (unwind-protect
         (let* ((dying (unanswered-tests--bridge t))
                (stopped (unanswered-tests--bridge t))
                (request (unanswered-tests--request (lambda (reply) (push reply replies)))))
           ;; Its error pipe stays open after it: the sentinel waits on it.
           (setq holding-the-pipe
                 (make-process :name "unanswered-pipe-holder" :noquery t
                               :command '("sleep" "600")
                               :stderr (process-get dying 'stderr-buffer)))
           (gradients--submit dying request)
           (signal-process dying 'SIGKILL)
           (should (unanswered-tests--wait-until (lambda () replies)))
           (should (equal (alist-get 'kind (car replies)) "died"))
           ;; As a timer would: a bridge stopped, and waited for.
           (let ((inhibit-quit t))
             (gradients--stop stopped))
           (should-not (process-live-p stopped)))
       (advice-remove 'accept-process-output 'unanswered-tests--quit-inhibited)
       (when holding-the-pipe (delete-process holding-the-pipe)))
     (should (= inhibited 0)))))

(provide 'unanswered-tests)
;;; unanswered-tests.el ends here
