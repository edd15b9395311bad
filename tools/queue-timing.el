;;; queue-timing.el --- how long C-c C-v b keeps Emacs busy  -*- lexical-binding: t -*-

;; emacs -Q --batch -l tools/queue-timing.el
;; TERMINAL=1 emacs -Q --batch -l tools/queue-timing.el
;;
;; Queues every block of a copy of README.org, as C-c C-v b does, on a
;; kernel that is already up, and prints how long each run of the
;; command took and their median.  The first form runs the command in
;; this batch Emacs, as an interactive one would (`noninteractive' nil);
;; with TERMINAL=1 it types C-c C-v b into an `emacs -nw' under tmux,
;; where redisplay, font-lock and the echo area have their share, and
;; times it from the key to the moment Emacs waits for the next one.
;; RUNS=N sets the number of runs (7); PROFILE=1 prints a CPU profile of
;; one run (PROFILE=mem, in batch: of what it allocates).  Emacs's own
;; CPU time is given beside the time that passed, being less sensitive
;; to the rest of the machine's load.  A measurement, not a test: its
;; figures depend on the machine and on what else it does.

(require 'cl-lib)
(require 'org)
(require 'ob-core)
(require 'profiler)

(defconst queue-timing-root
  (expand-file-name ".." (file-name-directory (or load-file-name buffer-file-name))))

;; By its name in each Emacs (Emacs 29 renamed it), set whichever it has.
(dolist (switch '(native-comp-deferred-compilation native-comp-jit-compilation))
  (set switch nil))
;; Found on the load path, as the Makefile finds build.el: `load' would
;; read a `$' or `~' in the checkout's path in an absolute name.
(eval-and-compile
  (let ((load-path (cons (file-name-directory (or (macroexp-file-name) buffer-file-name))
                         load-path)))
    (load "ob-gradients.el" nil t t)))
(setq org-confirm-babel-evaluate nil)

(defvar queue-timing-runs (string-to-number (or (getenv "RUNS") "7")))
(defvar queue-timing-log (getenv "QUEUE_TIMING_LOG")
  "Where the terminal Emacs writes its timings, one run a line.")

(defun queue-timing--wait-idle ()
  "Let the results in, so that the next run starts as the first did."
  (let ((end (+ (float-time) 300)))
    (while (and (gradients--pending-requests) (< (float-time) end))
      (accept-process-output nil 0.05))))

(defun queue-timing--visit-copy ()
  "Visit a copy of README.org in a folder of its own, with its kernel up;
return the folder."
  (let* ((folder (make-temp-file "queue-timing-" t))
         (file (expand-file-name "README.org" folder)))
    (copy-file (expand-file-name "README.org" queue-timing-root) file)
    (find-file file)
    (let ((process (gradients-start-session "gradients")))
      (while (not (process-get process 'ready))
        (accept-process-output process 0.1)))
    folder))

(defun queue-timing--median (times)
  (nth (/ (length times) 2) (sort (copy-sequence times) #'<)))

(defun queue-timing--print-profile ()
  "Print the profile just taken, every branch expanded."
  (let ((report (save-window-excursion
                  (profiler-report)
                  (current-buffer))))
    (with-current-buffer report
      (goto-char (point-min))
      (while (not (eobp))
        (profiler-report-expand-entry t)
        (forward-line))
      (princ (buffer-string)))
    (kill-buffer report)))

(defun queue-timing-batch ()
  "Time the command in this Emacs, as an interactive one runs it."
  (let* ((noninteractive nil)
         (inhibit-message t)
         (folder (queue-timing--visit-copy))
         (original (buffer-string))
         (times nil)
         (cpu-times nil))
    (dotimes (run queue-timing-runs)
      (garbage-collect)
      (let ((profile (and (getenv "PROFILE") (= run (1- queue-timing-runs))))
            (start (float-time))
            (cpu-start (float-time (get-internal-run-time))))
        (when profile (profiler-start (if (equal (getenv "PROFILE") "mem") 'mem 'cpu)))
        (org-babel-execute-buffer)
        (push (- (float-time) start) times)
        (push (- (float-time (get-internal-run-time)) cpu-start) cpu-times)
        (when profile (profiler-stop)))
      (queue-timing--wait-idle)
      (erase-buffer)
      (insert original)
      (set-buffer-modified-p nil))
    (when (getenv "PROFILE")
      (queue-timing--print-profile))
    (gradients-stop-sessions)
    (delete-directory folder t)
    (setq times (nreverse times) cpu-times (nreverse cpu-times))
    (princ (format "batch runs: %s\nof which Emacs's CPU: %s\nmedian: %.3f s, CPU %.3f s\n"
                   (mapconcat (lambda (seconds) (format "%.3f" seconds)) times " ")
                   (mapconcat (lambda (seconds) (format "%.3f" seconds)) cpu-times " ")
                   (queue-timing--median times) (queue-timing--median cpu-times)))))

;;;; In a terminal Emacs

(defvar queue-timing--started nil
  "When the key that runs the command being timed was read: the time,
Emacs's CPU time and `gc-elapsed' then.")

(defun queue-timing--start ()
  (when (eq this-command 'org-babel-execute-buffer)
    ;; The first run only: a profile is written when it ends.
    (when (and (getenv "PROFILE") (not (file-exists-p (concat queue-timing-log ".profile"))))
      (profiler-start 'cpu))
    (setq queue-timing--started (list (float-time) (float-time (get-internal-run-time))
                                      gc-elapsed))))

(defun queue-timing--end ()
  "After the command: time it once Emacs has redisplayed and waits for
input, which is when an idle timer runs."
  (when queue-timing--started
    (pcase-let ((`(,started ,cpu-started ,gc-before) queue-timing--started)
                (command-done (float-time)))
      (setq queue-timing--started nil)
      (run-with-idle-timer
       0 nil
       (lambda ()
         (let ((idle (float-time))
               (cpu (- (float-time (get-internal-run-time)) cpu-started)))
           (when (profiler-cpu-running-p)
             (profiler-stop)
             (with-temp-buffer
               (let ((standard-output (current-buffer)))
                 (queue-timing--print-profile))
               (write-region nil nil (concat queue-timing-log ".profile"))))
           (with-temp-buffer
             (insert (format "%.4f %.4f %.4f %.4f\n" (- command-done started) (- idle started)
                             cpu (- gc-elapsed gc-before)))
             (append-to-file (point-min) (point-max) queue-timing-log))))))))

(defun queue-timing-restore ()
  "Let every result in, put the notes back as they were, and say so."
  (interactive)
  (queue-timing--wait-idle)
  (let ((inhibit-read-only t))
    (erase-buffer)
    (insert (get 'queue-timing-restore 'original))
    (set-buffer-modified-p nil)
    (goto-char (point-min)))
  (garbage-collect)
  (with-temp-buffer
    (insert "restored\n")
    (append-to-file (point-min) (point-max) queue-timing-log)))

(defun queue-timing-terminal-setup ()
  (let ((folder (queue-timing--visit-copy)))
    (put 'queue-timing-restore 'original (buffer-string))
    (add-hook 'kill-emacs-hook (lambda () (delete-directory folder t)))
    (add-hook 'pre-command-hook #'queue-timing--start)
    (add-hook 'post-command-hook #'queue-timing--end)
    (global-set-key (kbd "<f5>") #'queue-timing-restore)
    (queue-timing-restore)))

(defun queue-timing--log-lines ()
  (if (file-exists-p queue-timing-log)
      (with-temp-buffer
        (insert-file-contents queue-timing-log)
        (split-string (buffer-string) "\n" t))
    nil))

(defun queue-timing--until-log-has (count)
  (let ((end (+ (float-time) 300)))
    (while (< (length (queue-timing--log-lines)) count)
      (when (> (float-time) end) (error "queue-timing: the terminal Emacs does not answer"))
      (sleep-for 0.1))))

(defun queue-timing-terminal ()
  "Type C-c C-v b into an `emacs -nw' under tmux, RUNS times."
  (let* ((log (make-temp-file "queue-timing-log-"))
         (queue-timing-log log)
         (socket (format "queue-timing-%d" (emacs-pid)))
         (stop-tmux (lambda () (call-process "tmux" nil nil nil "-L" socket "kill-server")))
         (process-environment (append (list (concat "QUEUE_TIMING_LOG=" log)
                                            "TERM=xterm-256color")
                                      process-environment)))
    (delete-file log)
    ;; Also when this Emacs is killed (a timeout's SIGTERM).
    (add-hook 'kill-emacs-hook stop-tmux)
    (unwind-protect
        (let ((lines 1))
          (call-process "tmux" nil nil nil "-L" socket "new-session" "-d" "-x" "160" "-y" "45"
                        (format "%s -nw -Q -L %s --eval %s -f queue-timing-terminal-setup"
                                (shell-quote-argument (expand-file-name invocation-name
                                                                        invocation-directory))
                                (shell-quote-argument (expand-file-name "tools" queue-timing-root))
                                (shell-quote-argument "(load \"queue-timing.el\" nil t t)")))
          (queue-timing--until-log-has lines)
          (dotimes (_ queue-timing-runs)
            (sleep-for 0.5)
            (call-process "tmux" nil nil nil "-L" socket "send-keys" "C-c" "C-v" "b")
            (queue-timing--until-log-has (cl-incf lines))
            (call-process "tmux" nil nil nil "-L" socket "send-keys" "F5")
            (queue-timing--until-log-has (cl-incf lines)))
          (let ((runs (mapcar (lambda (line) (mapcar #'string-to-number (split-string line)))
                              (cl-remove "restored" (queue-timing--log-lines) :test #'equal))))
            (when (file-exists-p (concat log ".profile"))
              (with-temp-buffer
                (insert-file-contents (concat log ".profile"))
                (princ (buffer-string))))
            (cl-loop for what in '("command" "until idle" "Emacs's CPU" "collecting garbage")
                     for column from 0
                     for times = (mapcar (lambda (run) (nth column run)) runs)
                     do (princ (format "terminal runs (%s): %s, median %.3f s\n" what
                                       (mapconcat (lambda (s) (format "%.3f" s)) times " ")
                                       (queue-timing--median times))))))
      (funcall stop-tmux)
      (dolist (file (list log (concat log ".profile")))
        (when (file-exists-p file) (delete-file file))))))

(when noninteractive
  (if (getenv "TERMINAL")
      (queue-timing-terminal)
    (queue-timing-batch)))
