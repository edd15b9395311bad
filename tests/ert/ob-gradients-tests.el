;;; ob-gradients-tests.el --- the interactive executor, on a real kernel  -*- lexical-binding: t -*-

;; emacs -Q --batch -l tests/ert/ob-gradients-tests.el -f ert-run-tests-batch-and-exit
;;
;; Each test writes small notes of its own into a scratch folder and runs
;; their blocks as C-c C-c does in an interactive Emacs: `noninteractive'
;; is bound to nil around the runs, so `:async yes' blocks return a
;; placeholder at once and their results arrive later.  The tests share
;; one kernel where they can (one scratch folder, one session name), so
;; a test must not rely on a fresh kernel unless it restarts one.

(require 'ert)
(require 'cl-lib)
(require 'subr-x)
(require 'org)
(require 'ob-core)

(defconst obgt-root
  (expand-file-name "../.." (file-name-directory (or load-file-name buffer-file-name)))
  "The project this file tests.")

(setq native-comp-deferred-compilation nil)
;; Found on the load path: `load' would read a `$' or `~' in the
;; checkout's path, were it given the file's absolute name.
(let ((load-path (cons (expand-file-name "tools" obgt-root) load-path)))
  (load "ob-gradients.el" nil t t))
(setq org-confirm-babel-evaluate nil)
(defvar gradients-interrupt-patience)

(defconst obgt-scratch (make-temp-file "ob-gradients-tests-" t)
  "Where the tests' notes live; removed when Emacs exits.")

(add-hook 'kill-emacs-hook
          (lambda ()
            (gradients-stop-sessions)
            (delete-directory obgt-scratch t)))

(defconst obgt-header
  "#+PROPERTY: header-args:jupyter-python :session gradients
#+PROPERTY: header-args:jupyter-python+ :async yes
#+PROPERTY: header-args:jupyter-python+ :results raw drawer
"
  "The notes' own defaults, as README.org sets them.")

(defmacro obgt-with-notes (spec &rest body)
  "Visit notes made of SPEC, (FILE TEXT), under `obgt-scratch', and run
BODY there as an interactive Emacs would; kill the buffer after, unsaved."
  (declare (indent 1))
  `(let* ((file (expand-file-name ,(car spec) obgt-scratch))
          (noninteractive nil))
     (make-directory (file-name-directory file) t)
     (with-temp-file file (insert obgt-header ,(cadr spec)))
     (let ((buffer (find-file-noselect file)))
       (unwind-protect
           (with-current-buffer buffer ,@body)
         (obgt-wait)
         ;; What BODY's last command left to say at once (`run-at-time'
         ;; 0) is said in this test, not in the next one's.
         (accept-process-output nil 0.01)
         ;; BODY may have closed it.
         (when (buffer-live-p buffer)
           (with-current-buffer buffer (set-buffer-modified-p nil))
           (kill-buffer buffer))))))

(defun obgt-busy ()
  "Whether a block runs or waits to run."
  (and (gradients--pending-requests) t))

(defun obgt-wait-until (predicate &optional seconds)
  "Let replies and timers in until PREDICATE returns non-nil, for at most
SECONDS (30); return its last value.  A test waits as long as the thing
it waits for takes, not for a guessed time a loaded machine may exceed."
  (let ((end (+ (float-time) (or seconds 30)))
        value)
    (while (and (not (setq value (funcall predicate))) (< (float-time) end))
      (accept-process-output nil 0.05))
    value))

(defun obgt-wait (&optional seconds)
  "Let replies in until no block runs, for at most SECONDS (30)."
  (obgt-wait-until (lambda () (not (obgt-busy))) seconds))

(defun obgt-run (name)
  "C-c C-c on block NAME."
  (save-excursion
    (org-babel-goto-named-src-block name)
    (org-babel-execute-src-block)))

(defun obgt-drawer (name)
  "The text of block NAME's results drawer, or nil."
  (save-excursion
    (save-restriction
      (widen)
      (org-babel-goto-named-src-block name)
      (gradients--drawer-text))))

(defvar obgt--said nil
  "The messages shown so far inside the innermost `obgt-messages', newest
first: what `obgt-wait-until-said' looks at.")

(defmacro obgt-messages (&rest body)
  "Run BODY; return every message it showed or logged, in order."
  `(let ((obgt--said nil))
     (cl-letf* ((real-message (symbol-function 'message))
                ((symbol-function 'message)
                 (lambda (format-string &rest arguments)
                   (when (and format-string (or (not inhibit-message) message-log-max))
                     (push (apply #'format-message format-string arguments) obgt--said))
                   (apply real-message format-string arguments))))
       ,@body)
     (reverse obgt--said)))

(defun obgt-said-p (regexp messages)
  (cl-some (lambda (text) (string-match-p regexp text)) messages))

(defun obgt-wait-until-said (regexp &optional seconds)
  "Inside `obgt-messages': wait until a message matching REGEXP was
shown, for at most SECONDS (30)."
  (obgt-wait-until (lambda () (obgt-said-p regexp obgt--said)) seconds))

(defun obgt-quit-once-sent (thunk)
  "Call THUNK, typing C-g as soon as a block has gone to its kernel;
return `quit' if THUNK was quit, else its value."
  (let* ((timer nil)
         (quit-when-sent
          (lambda ()
            (when (cl-some (lambda (session) (process-get (cdr session) 'current))
                           gradients--sessions)
              (cancel-timer timer)
              (setq quit-flag t)))))
    (setq timer (run-with-timer 0 0.01 quit-when-sent))
    (unwind-protect
        (condition-case nil (funcall thunk) (quit 'quit))
      (cancel-timer timer))))

(defun obgt-wait-for-file (file &optional seconds)
  "Wait until FILE, under `obgt-scratch', exists, for at most SECONDS
(30): how a block says that it got somewhere."
  (let ((file (expand-file-name file obgt-scratch)))
    (obgt-wait-until (lambda () (file-exists-p file)) seconds)))

;;;; References

(ert-deftest obgt-a-reference-gets-the-value-and-runs-once ()
  (obgt-with-notes ("references.org" "
#+name: ref-count
#+begin_src jupyter-python
import time
time.sleep(0.5)
ref_runs = globals().get('ref_runs', 0) + 1
ref_runs
#+end_src

#+name: uses-ref
#+begin_src jupyter-python :var v=ref-count
print(repr(v), ref_runs)
#+end_src

#+name: ref-list
#+begin_src jupyter-python :results table
[1, 2, 3]
#+end_src

#+name: uses-list
#+begin_src jupyter-python :var xs=ref-list
print(sum(xs))
#+end_src

#+name: runs-so-far
#+begin_src jupyter-python
print(ref_runs)
#+end_src
")
    (obgt-run "uses-ref")
    (obgt-run "uses-list")
    (should (obgt-wait))
    ;; As ob-python gives it: str() of the value, a string under
    ;; `:results raw', a list where the block's results are a table.
    (should (equal (obgt-drawer "uses-ref") ": '1' 1"))
    (should (equal (obgt-drawer "uses-list") ": 6"))
    ;; Writing the result did not run the reference a second time.
    (obgt-run "runs-so-far")
    (should (obgt-wait))
    (should (equal (obgt-drawer "runs-so-far") ": 1"))))

;;;; Where results go

;; Found by probing: a block's own result under :results table was the
;; drawer text in a table of one cell.  As ob-python gives it, the value
;; is read into the table (under the notes' `raw drawer', in a drawer).
(ert-deftest obgt-a-result-org-reshapes-is-the-value-reshaped ()
  (obgt-with-notes ("value-shapes.org" "
#+name: grid
#+begin_src jupyter-python :results value table
print('not part of the value')
[[1, 2], [3, 4]]
#+end_src
")
    (obgt-run "grid")
    (should (obgt-wait))
    (goto-char (point-min))
    (should (search-forward "#+RESULTS: grid\n:results:\n| 1 | 2 |\n| 3 | 4 |\n:end:\n" nil t))))

;; Found by probing: Org put the placeholder of such a block in a table,
;; a list, an example block or fixed-width lines outside a drawer, where
;; it was never found again: the result went to *gradients-unwritten*,
;; the placeholder stayed.  Such a block is waited for instead.
(ert-deftest obgt-a-result-org-records-otherwise-than-in-a-drawer-is-waited-for ()
  (obgt-with-notes ("reshaped.org" "
#+name: as-table
#+begin_src jupyter-python :results table
't'
#+end_src

#+name: as-example
#+begin_src jupyter-python :wrap example
print('x')
#+end_src

#+name: as-pp
#+begin_src jupyter-python :results pp
'p'
#+end_src

#+name: as-link
#+begin_src jupyter-python :file as-link.svg :results file graphics
from IPython.display import SVG
SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\"/>')
#+end_src

#+name: in-drawer
#+begin_src jupyter-python
print('d')
#+end_src
")
    (when (get-buffer gradients-unwritten-buffer)
      (kill-buffer gradients-unwritten-buffer))
    (let ((placeholder "\\[waiting for the kernel: request [0-9]+\\]"))
      (dolist (name '("as-table" "as-example" "as-pp" "as-link"))
        (obgt-run name)
        (should-not (string-match-p placeholder (buffer-string))))
      ;; What Org can find again still returns at once.
      (obgt-run "in-drawer")
      (should (string-match-p placeholder (obgt-drawer "in-drawer")))
      (should (obgt-wait))
      (should (equal (obgt-drawer "in-drawer") ": d")))
    (should-not (get-buffer gradients-unwritten-buffer))
    (should (string-match-p "^| t |$" (buffer-string)))
    (should (string-match-p "^#\\+begin_example\n: x\n#\\+end_example$" (buffer-string)))
    (should (string-match-p "^: 'p'$" (buffer-string)))
    (should (string-match-p "^\\[\\[file:as-link.svg\\]\\]$" (buffer-string)))
    (should (file-exists-p (expand-file-name "as-link.svg" obgt-scratch)))))


(defconst obgt-two-naps "
* One

#+name: first
#+begin_src jupyter-python
import time
time.sleep(1)
'one'
#+end_src

* Two

#+name: second
#+begin_src jupyter-python
import time
time.sleep(0.2)
'two'
#+end_src
")

(ert-deftest obgt-a-result-run-from-an-indirect-buffer-reaches-the-file ()
  (obgt-with-notes ("indirect.org" obgt-two-naps)
    (let ((indirect (make-indirect-buffer (current-buffer) "indirect-notes" t)))
      (with-current-buffer indirect
        (org-babel-goto-named-src-block "first")
        (org-narrow-to-subtree)
        (org-babel-execute-src-block))
      (kill-buffer indirect))
    ;; The file's own buffer, narrowed elsewhere meanwhile.
    (org-babel-goto-named-src-block "second")
    (org-narrow-to-subtree)
    (obgt-run "second")
    (should (obgt-wait))
    (should (equal (obgt-drawer "first") ": 'one'"))
    (should (equal (obgt-drawer "second") ": 'two'"))
    (should (buffer-narrowed-p))))

(defun obgt-kill-block (name)
  "Kill the text of block NAME with its results, from its name to the
next block's name or the next heading."
  (widen)
  (goto-char (point-min))
  (re-search-forward (format "^#\\+name: %s$" name))
  (let ((start (line-beginning-position)))
    (forward-line)
    (re-search-forward "^\\(#\\+name:\\|\\*\\)" nil 'move)
    (beginning-of-line)
    (kill-region start (point))))

(ert-deftest obgt-a-result-whose-block-was-killed-is-reported ()
  ;; No heading between the blocks: the first one's marker falls onto
  ;; the second, which is still waiting when the first one's result comes.
  (obgt-with-notes ("killed.org" (replace-regexp-in-string "^\\* .*\n\n" "" obgt-two-naps))
    (obgt-run "first")
    (obgt-run "second")
    (obgt-kill-block "first")
    (let ((said (obgt-messages (should (obgt-wait)))))
      (should (obgt-said-p "killed\\.org:[0-9]+: block `first' finished, but its placeholder is no longer in killed\\.org"
                           said)))
    (should (equal (obgt-drawer "second") ": 'two'"))
    (should (string-match-p "'one'" (with-current-buffer gradients-unwritten-buffer
                                      (buffer-string))))))

(ert-deftest obgt-a-failing-block-leaves-its-failure-as-the-last-word ()
  ;; Its earlier result goes back through Org, which would say "Code block
  ;; evaluation complete." over the failure.
  (obgt-with-notes ("failing.org" "
* One

#+name: boom
#+begin_src jupyter-python
raise ValueError('bad thing')
#+end_src

#+RESULTS: boom
:results:
: old
:end:
")
    (let ((said (obgt-messages (obgt-run "boom") (should (obgt-wait)))))
      (should (string-match-p "block `boom' raised ValueError: bad thing" (car (last said))))
      (should-not (obgt-said-p "evaluation complete" said)))
    (should (equal (obgt-drawer "boom") ": old"))))

;; Found by probing: a traceback named IPython's cells ("Cell In[3],
;; line 2"), counted from each block's first line.
(ert-deftest obgt-a-traceback-names-the-lines-of-the-notes ()
  (obgt-with-notes ("traceback.org" "
#+name: defines
#+begin_src jupyter-python
def divides(x):
    return x / 0
#+end_src

#+name: calls
#+begin_src jupyter-python
x = 1
divides(x)
#+end_src
")
    (obgt-run "defines")
    (should (obgt-wait))
    (obgt-run "calls")
    (should (obgt-wait))
    (let ((traceback (with-current-buffer "*gradients-traceback*" (buffer-string)))
          (line-of (lambda (text)
                     (save-excursion
                       (goto-char (point-min))
                       (search-forward text)
                       (line-number-at-pos (match-beginning 0))))))
      (should (string-match-p (format "^traceback\\.org:%d$" (funcall line-of "divides(x)\n"))
                              traceback))
      (should (string-match-p (format "^traceback\\.org:%d, in divides(x)$"
                                      (funcall line-of "return x / 0"))
                              traceback))
      (should-not (string-match-p "Cell In\\[" traceback)))))

(ert-deftest obgt-a-failure-names-the-line-the-block-is-on-when-it-fails ()
  ;; Lines typed above a running block move it down.
  (obgt-with-notes ("moved-down.org" "
* One

#+name: late
#+begin_src jupyter-python
import time
time.sleep(1)
raise ValueError('late')
#+end_src
")
    (let ((said (obgt-messages
                 (obgt-run "late")
                 (save-excursion (goto-char (point-min)) (insert "Typed meanwhile.\n\n\n"))
                 (should (obgt-wait)))))
      (should (obgt-said-p (format "moved-down\\.org:%d: block `late' raised ValueError: late"
                                   (save-excursion (org-babel-goto-named-src-block "late")
                                                   (line-number-at-pos)))
                           said)))))

(ert-deftest obgt-a-result-whose-buffer-was-reverted-blames-the-revert ()
  ;; As auto-revert does once another program wrote the file: the author
  ;; edited nothing, and is not told so.
  (obgt-with-notes ("reverted.org" obgt-two-naps)
    (obgt-run "first")
    (revert-buffer t t)
    (let ((said (obgt-messages (should (obgt-wait)))))
      (should (obgt-said-p "reverted\\.org:[0-9]+: block `first' finished, but reverted\\.org was read again from its file while the block ran (a revert)"
                           said))
      (should-not (obgt-said-p "edited" said)))
    (should-not (obgt-drawer "first"))
    (should (string-match-p "'one'" (with-current-buffer gradients-unwritten-buffer
                                      (buffer-string))))))

;; A result that cannot go in without a question from Emacs (made
;; read-only; unmodified and changed on disk; a question answered no)
;; goes to *gradients-unwritten*, named: it was lost in a process filter.
(ert-deftest obgt-a-result-that-cannot-be-written-is-kept-and-named ()
  (pcase-dolist (`(,why ,said-why)
                 '((read-only "was made read-only (C-x C-q) while the block ran")
                   (changed-on-disk "changed on disk since it was saved; revert it")
                   (refused "writing it into unwritable\\.org failed (Denied here)")))
    (obgt-with-notes ("unwritable.org" obgt-two-naps)
      (obgt-run "first")
      (pcase why
        ('read-only (setq buffer-read-only t))
        ('changed-on-disk
         (save-buffer)
         ;; Another program writes the file a second later.
         (set-file-times buffer-file-name (time-add nil 60))))
      (let ((said (obgt-messages
                   (cl-letf (((symbol-function 'org-babel-insert-result)
                              (if (eq why 'refused)
                                  (lambda (&rest _) (error "Denied here"))
                                (symbol-function 'org-babel-insert-result))))
                     (should (obgt-wait))))))
        (should (obgt-said-p (concat "unwritable\\.org:[0-9]+: block `first' finished, but .*"
                                     said-why)
                             said)))
      (should (string-match-p "'one'" (with-current-buffer gradients-unwritten-buffer
                                        (buffer-string))))
      (with-current-buffer gradients-unwritten-buffer
        (let ((inhibit-read-only t)) (erase-buffer)))
      (setq buffer-read-only nil))))

(ert-deftest obgt-a-result-whose-block-was-renamed-leaves-no-placeholder ()
  ;; Its #+RESULTS keeps the old name, which no block has any more.
  ;; An empty drawer gets back no line it did not have.
  (obgt-with-notes ("renamed.org" (concat obgt-two-naps "
#+RESULTS: first
:results:
: 'before'
:end:

#+RESULTS: second
:results:
:end:
"))
    (obgt-run "first")
    (obgt-run "second")
    (save-excursion
      (dolist (name '("first" "second"))
        (goto-char (point-min))
        (re-search-forward (format "^#\\+name: %s$" name))
        (replace-match (format "#+name: %s-renamed" name) t t)))
    (let ((said (obgt-messages (should (obgt-wait)))))
      (should (obgt-said-p "renamed\\.org:[0-9]+: block `first' finished, but its placeholder in renamed\\.org is under a #\\+RESULTS no block is named for any more (was the block renamed\\?)"
                           said)))
    (should-not (string-match-p "waiting for the kernel" (buffer-string)))
    (should (string-match-p "#\\+RESULTS: first\n:results:\n: 'before'\n:end:" (buffer-string)))
    (should (string-match-p "#\\+RESULTS: second\n:results:\n:end:" (buffer-string)))
    (should (string-match-p "'one'" (with-current-buffer gradients-unwritten-buffer
                                      (buffer-string))))))

;; Found by probing: a line typed between a block's #+RESULTS and its
;; drawer while it ran was said to be a renamed block.
(ert-deftest obgt-a-drawer-parted-from-its-results-line-is-said-so ()
  (obgt-with-notes ("parted.org" (concat obgt-two-naps "
#+RESULTS: first
:results:
: 'before'
:end:
"))
    (obgt-run "first")
    (save-excursion
      (goto-char (point-min))
      (re-search-forward "^#\\+RESULTS: first\n")
      (insert "typed here\n"))
    (let ((said (obgt-messages (should (obgt-wait)))))
      (should (obgt-said-p "parted\\.org:[0-9]+: block `first' finished, but its placeholder in parted\\.org is no longer right below the #\\+RESULTS line of its block (was a line typed between them\\?)"
                           said)))
    (should (string-match-p "#\\+RESULTS: first\ntyped here\n:results:\n: 'before'\n:end:"
                            (buffer-string)))))

;; Found by probing: a block with no result before kept the empty drawer
;; its run had made.
(ert-deftest obgt-a-first-result-whose-block-was-renamed-leaves-no-drawer ()
  (let ((notes "
#+name: fresh
#+begin_src jupyter-python
import time
time.sleep(0.5)
'new'
#+end_src

Text after.
"))
    (obgt-with-notes ("renamed-fresh.org" notes)
      (obgt-run "fresh")
      (should (string-match-p "#\\+RESULTS: fresh\n:results:\n: \\[waiting" (buffer-string)))
      (goto-char (point-min))
      (re-search-forward "^#\\+name: fresh$")
      (replace-match "#+name: fresher" t t)
      (let ((said (obgt-messages (should (obgt-wait)))))
        (should (obgt-said-p "renamed-fresh\\.org:[0-9]+: block `fresh' finished, but its placeholder" said)))
      (should (string-suffix-p (replace-regexp-in-string "name: fresh" "name: fresher" notes)
                               (buffer-string))))))

;; Found by probing: the result went into the copy, the first block of
;; that name, and the block that was run kept its placeholder for good.
(ert-deftest obgt-a-block-copied-with-its-drawer-while-it-runs-keeps-no-placeholder ()
  (obgt-with-notes ("copied.org" "
* Below

#+name: nap
#+begin_src jupyter-python
import time
time.sleep(0.5)
'after'
#+end_src

#+RESULTS: nap
:results:
: 'before'
:end:
")
    (obgt-run "nap")
    (let ((copy (save-excursion
                  (goto-char (point-min))
                  (buffer-substring (re-search-forward "^#\\+name: nap$")
                                    (re-search-forward "^:end:\n")))))
      (goto-char (point-min))
      (re-search-forward "^\\* Below")
      (forward-line 0)
      (insert "* Above\n\n#+name: nap" copy "\n"))
    (let ((said (obgt-messages (should (obgt-wait)))))
      (should (obgt-said-p "copied\\.org:[0-9]+: block `nap' finished, and its result went into the first block of that name; the copy of its placeholder at line [0-9]+ got back what the drawer held before"
                           said)))
    (should-not (string-match-p "waiting for the kernel" (buffer-string)))
    (should (string-match-p "\\* Above[^*]*: 'after'\n:end:\n+\\* Below[^*]*: 'before'\n:end:"
                            (buffer-string)))))

;; Found by review: a drawer saved by an Emacs that quit, holding a
;; placeholder of the number this Emacs gives next, and a line typed
;; after it, came back as the earlier result of a failing block, and the
;; search for copies of the placeholder found it again and again.
(ert-deftest obgt-an-earlier-result-holding-a-placeholders-text-is-kept ()
  (let ((next (1+ gradients--last-id)))
    (obgt-with-notes ("earlier-placeholder.org" (format "
#+name: fails
#+begin_src jupyter-python
raise ValueError('no')
#+end_src

#+RESULTS: fails
:results:
: [waiting for the kernel: request %d]
: typed after it
:end:
" next))
      (let ((guard (run-with-timer 20 nil (lambda () (setq quit-flag t)))))
        (unwind-protect
            (progn (obgt-run "fails")
                   (should (obgt-wait)))
          (cancel-timer guard)))
      (should (equal (obgt-drawer "fails")
                     (format ": [waiting for the kernel: request %d]\n: typed after it" next))))))

;; Found by review: at the top of the buffer, the drawer's removal took
;; the author's next line, or left the #+RESULTS line.
(ert-deftest obgt-a-first-result-left-at-the-top-of-the-buffer-goes-whole ()
  (obgt-with-notes ("top.org" "
#+name: top
#+begin_src jupyter-python
import time
time.sleep(0.5)
'new'
#+end_src
")
    (obgt-run "top")
    (goto-char (point-min))
    (re-search-forward "^#\\+RESULTS:")
    ;; The block and all above it deleted while it runs.
    (delete-region (point-min) (line-beginning-position))
    (goto-char (point-max))
    (insert "\nThe author's next line.\n")
    (obgt-wait)
    (should (equal (buffer-string) "\nThe author's next line.\n"))))

(ert-deftest obgt-a-result-whose-block-was-moved-follows-it ()
  (obgt-with-notes ("moved.org" obgt-two-naps)
    (obgt-run "first")
    (obgt-run "second")
    (obgt-kill-block "first")
    (goto-char (point-max))
    (insert "\n")
    (yank)
    ;; As the command loop does after each command.
    (undo-boundary)
    (should (obgt-wait))
    (should (equal (obgt-drawer "first") ": 'one'"))
    (should (equal (obgt-drawer "second") ": 'two'"))
    ;; Each result is an undo step of its own, apart from the move: one
    ;; undo takes back the last result alone.
    (undo-start)
    (undo-more 2)                       ; as `undo': past the boundary first
    (should (equal (obgt-drawer "first") ": 'one'"))
    (should (string-match-p "^#\\+name: second\n\\(?:.*\n\\)*#\\+name: first$"
                            (buffer-string)))))

;; Org indents the results of a block in a list item as far as the
;; block: the placeholder and the result are found there too.
(defconst obgt-list-item-notes "
- an item
  #+name: in-item
  #+begin_src jupyter-python
  print('hi')
  #+end_src
")

(ert-deftest obgt-a-block-in-a-list-item-gets-its-result ()
  (obgt-with-notes ("item.org" obgt-list-item-notes)
    (dotimes (_ 2)              ; into an empty drawer, then over a result
      (should-not (obgt-said-p "unwritten\\|renamed\\|not found"
                               (obgt-messages (obgt-run "in-item") (should (obgt-wait)))))
      (should (equal (obgt-drawer "in-item") ": hi"))
      (should (string-match-p "\n  #\\+RESULTS: in-item\n  :results:\n  : hi\n  :end:\n"
                              (buffer-string))))))

(defconst obgt-deep-item-notes "
- one
  - two
    - three
      - four
        #+name: deep
        #+begin_src jupyter-python
        import time
        time.sleep(0.5)
        print('deep')
        #+end_src
")

(ert-deftest obgt-a-deep-block-gets-its-result-in-spaces-and-may-move ()
  "Found by probing: with `indent-tabs-mode' (Emacs's default, or set by
a hook after .dir-locals.el), Org indented the drawer with tabs, where
the build writes spaces; and indenting the block again while it ran was
said to be an edit of its code."
  (obgt-with-notes ("deep.org" obgt-deep-item-notes)
    (setq-local indent-tabs-mode t)
    (let ((said (obgt-messages
                 (obgt-run "deep")
                 (let ((start (save-excursion (goto-char (point-min))
                                              (search-forward "- one") (line-beginning-position))))
                   ;; In spaces: the test is of the result's.
                   (let ((indent-tabs-mode nil))
                     (indent-rigidly start (point-max) 2)))
                 (should (obgt-wait)))))
      (should-not (obgt-said-p "edited" said)))
    (should (equal (obgt-drawer "deep") ": deep"))
    (should-not (string-match-p "\t" (buffer-string)))
    (should (string-match-p "\n          #\\+RESULTS: deep\n          :results:\n          : deep\n"
                            (buffer-string)))))

;;;; One kernel per session and folder

(defconst obgt-folder-notes "
#+name: where
#+begin_src jupyter-python
import os
os.path.basename(os.getcwd())
#+end_src

#+name: mark
#+begin_src jupyter-python
here = os.path.basename(os.getcwd())
#+end_src

#+name: peek
#+begin_src jupyter-python
print(globals().get('here'))
#+end_src
")

(ert-deftest obgt-notes-in-two-folders-get-a-kernel-each ()
  ;; The first folder is the one every test's notes are in: its kernel is
  ;; the shared one, so that only b's kernels start here.
  (let ((a (file-name-as-directory obgt-scratch))
        (b (expand-file-name "b/" obgt-scratch)))
    (obgt-with-notes ("a-notes.org" obgt-folder-notes)
      (obgt-run "where")
      (obgt-run "mark")
      (should (obgt-wait))
      (should (equal (obgt-drawer "where") (format ": '%s'" (file-name-nondirectory (directory-file-name a)))))
      (obgt-with-notes ("b/notes.org" obgt-folder-notes)
        (obgt-run "where")
        (obgt-run "peek")
        (should (obgt-wait))
        (should (equal (obgt-drawer "where") (format ": '%s'" (file-name-nondirectory (directory-file-name b)))))
        (should (equal (obgt-drawer "peek") ": None"))
        ;; A restart from b's notes restarts b's kernel, in b.
        (org-babel-goto-named-src-block "where")
        (gradients-restart)
        (obgt-run "where")
        (should (obgt-wait))
        (should (equal (obgt-drawer "where") (format ": '%s'" (file-name-nondirectory (directory-file-name b))))))
      ;; a's kernel kept its variables.
      (obgt-run "peek")
      (should (obgt-wait))
      (should (equal (obgt-drawer "peek")
                     (concat ": " (file-name-nondirectory (directory-file-name a))))))))

;;;; Quitting and saving

(defconst obgt-long-nap "
#+name: long
#+begin_src jupyter-python
import time
time.sleep(30)
#+end_src

#+RESULTS: long
:results:
: slept before
:end:
"
  "A block that runs for longer than any test, with a result from before.")

(defun obgt-edit-to-save ()
  "Leave the notes with an edit of the author's to save: Emacs 30 asks
nothing about saving on the way out where no buffer needs it, and notes
whose blocks were stopped are as they were."
  (save-excursion
    (goto-char (point-max))
    (insert "\nA line the author typed.\n")))

(ert-deftest obgt-quitting-asks-about-running-blocks-before-saving ()
  (obgt-with-notes ("quit.org" obgt-long-nap)
    (obgt-edit-to-save)
    (obgt-run "long")
    (should (string-prefix-p ": [waiting for the kernel" (obgt-drawer "long")))
    (let ((steps nil)
          (notes (current-buffer)))
      (cl-letf (((symbol-function 'yes-or-no-p)
                 (lambda (prompt) (push (cons 'asked prompt) steps) t))
                ((symbol-function 'y-or-n-p)
                 (lambda (prompt) (push (cons 'asked prompt) steps) t))
                ((symbol-function 'save-some-buffers)
                 (lambda (&rest _)
                   (push (cons 'save (with-current-buffer notes (buffer-string))) steps)))
                ((symbol-function 'kill-emacs)
                 (lambda (&rest _) (push (list 'kill) steps))))
        (save-buffers-kill-emacs))
      (setq steps (nreverse steps))
      (should (eq (car (nth 0 steps)) 'asked))
      (should (string-match-p "still running" (cdr (nth 0 steps))))
      (should (eq (car (nth 1 steps)) 'save))
      ;; What the file would be saved with: the result it had before.
      (should-not (string-match-p "waiting for the kernel" (cdr (nth 1 steps))))
      (should (string-match-p ": slept before" (cdr (nth 1 steps))))
      (should (equal (car (car (last steps))) 'kill)))
    ;; As Emacs's exit would.
    (gradients-stop-sessions)))

;; Found by probing: the yes stopped every kernel, idle ones too, at once;
;; a quit then called off at a question about saving left them all gone.
(ert-deftest obgt-a-quit-called-off-after-yes-keeps-the-kernels ()
  (obgt-with-notes ("called-off.org" (concat "
#+name: keep
#+begin_src jupyter-python
kept = 41
#+end_src
" obgt-long-nap "
#+name: peek
#+begin_src jupyter-python
kept + 1
#+end_src
"))
    ;; A kernel of its own: one an earlier test left may ignore SIGINT.
    (gradients-stop-sessions)
    (obgt-run "keep")
    (should (obgt-wait))
    (let* ((bridge (gradients--find-session "gradients" (gradients--kernel-folder)))
           (kernel (process-get bridge 'kernel-pid)))
      (obgt-edit-to-save)
      (obgt-run "long")
      (should (string-prefix-p ": [waiting for the kernel" (obgt-drawer "long")))
      (cl-letf (((symbol-function 'yes-or-no-p) (lambda (_prompt) t))
                ((symbol-function 'save-some-buffers) (lambda (&rest _) (signal 'quit nil)))
                ((symbol-function 'kill-emacs) (lambda (&rest _) (error "Emacs exited"))))
        (should (eq (condition-case nil (progn (save-buffers-kill-emacs) 'went-on) (quit 'called-off))
                    'called-off)))
      ;; The running block was stopped and its drawer put back at once.
      (should (equal (obgt-drawer "long") ": slept before"))
      (should (process-live-p bridge))
      (should (equal (process-get bridge 'kernel-pid) kernel))
      (obgt-run "peek")
      (should (obgt-wait))
      (should (equal (obgt-drawer "peek") ": 42"))
      (should (equal (obgt-drawer "long") ": slept before")))
    ;; As Emacs's exit would.
    (gradients-stop-sessions)))

;; Found by review: the yes passed over a bridge that had died a moment
;; before, whose sentinel had not run yet; the notes were then saved with
;; its placeholder.
(ert-deftest obgt-a-quit-puts-back-the-drawer-of-a-bridge-that-just-died ()
  (obgt-with-notes ("just-died.org" obgt-long-nap)
    (obgt-edit-to-save)
    (obgt-run "long")
    (let ((bridge (gradients--find-session "gradients" (gradients--kernel-folder))))
      (should (obgt-wait-until (lambda () (process-get bridge 'current))))
      (signal-process bridge 'SIGKILL)
      ;; Dead, as Emacs's status says, without a chance for its sentinel.
      (let ((end (+ (float-time) 10)))
        (while (and (process-live-p bridge) (< (float-time) end))))
      (should-not (process-live-p bridge))
      (should (string-prefix-p ": [waiting for the kernel" (obgt-drawer "long")))
      (cl-letf (((symbol-function 'yes-or-no-p) (lambda (_prompt) t))
                ((symbol-function 'save-some-buffers) (lambda (&rest _) (signal 'quit nil)))
                ((symbol-function 'kill-emacs) (lambda (&rest _) (error "Emacs exited"))))
        (condition-case nil (save-buffers-kill-emacs) (quit nil)))
      (should (equal (obgt-drawer "long") ": slept before")))))

;; Found by probing: a block interrupted, dropped or failed left its notes
;; marked modified, their text as it was, and quitting asked to save them.
(ert-deftest obgt-notes-whose-text-comes-back-as-it-was-are-unmodified ()
  (obgt-with-notes ("unchanged.org" "
#+name: same
#+begin_src jupyter-python
'same'
#+end_src

#+RESULTS: same
:results:
: 'same'
:end:

#+name: fails
#+begin_src jupyter-python
raise ValueError('no')
#+end_src

#+RESULTS: fails
:results:
: before
:end:

#+name: differs
#+begin_src jupyter-python
'new'
#+end_src
")
    (dolist (name '("same" "fails"))
      (should-not (buffer-modified-p))
      (obgt-run name)
      (should (buffer-modified-p))
      (should (obgt-wait))
      (should (equal (list name (buffer-modified-p)) (list name nil))))
    (obgt-run "differs")
    (should (obgt-wait))
    (should (buffer-modified-p))
    ;; Modified before the run, it stays so, whatever the result.
    (obgt-run "same")
    (should (obgt-wait))
    (should (buffer-modified-p))))

(ert-deftest obgt-saving-a-placeholder-says-so ()
  (obgt-with-notes ("saved.org" "
#+name: nap
#+begin_src jupyter-python
import time
time.sleep(1)
'rested'
#+end_src
")
    (obgt-run "nap")
    (let ((line (save-excursion
                  (goto-char (point-min))
                  (search-forward "[waiting for the kernel")
                  (line-number-at-pos)))
          (said (obgt-messages (save-buffer))))
      (should (obgt-said-p (format "saved\\.org was saved with 1 block waiting for the kernel (line %d)"
                                   line)
                           said))
      ;; What the build refuses.
      (should (equal (gradients-placeholder-lines) (list line))))
    ;; Closed and opened again while the block runs: the result goes to
    ;; the placeholder the file was saved with, in the new buffer.
    (kill-buffer)
    (with-current-buffer (find-file-noselect file)
      (unwind-protect
          (progn
            (should (obgt-wait))
            (should (equal (obgt-drawer "nap") ": 'rested'"))
            (should (null (gradients-placeholder-lines))))
        (set-buffer-modified-p nil)
        (kill-buffer)))))

;; Found by probing: a result holding a line that reads as a placeholder,
;; among others, made every save say a block would never get a result,
;; which the build, reading whole drawers, did not refuse.
(ert-deftest obgt-a-printed-placeholder-line-is-no-placeholder ()
  (obgt-with-notes ("printed-placeholder.org" "
#+name: prints
#+begin_src jupyter-python
print('quick', 1 + 1)
print('[waiting for the kernel: request 5]')
#+end_src
")
    (obgt-run "prints")
    (should (obgt-wait))
    (should (equal (obgt-drawer "prints")
                   ": quick 2\n: [waiting for the kernel: request 5]"))
    (should (null (gradients-placeholder-lines)))
    (should-not (obgt-said-p "waiting for the kernel" (obgt-messages (save-buffer))))))

;; Found by probing: a line written into the drawer of a block waiting for
;; its result was reported as the block renamed.
(ert-deftest obgt-a-drawer-written-in-while-its-block-ran-is-said-so ()
  (obgt-with-notes ("written-in.org" "
#+name: nap
#+begin_src jupyter-python
import time
time.sleep(0.5)
print('rested')
#+end_src
")
    (obgt-run "nap")
    (save-excursion
      (goto-char (point-min))
      (search-forward ":results:\n")
      (insert "note to self\n"))
    (let ((said (obgt-messages (should (obgt-wait)))))
      (should (obgt-said-p "block `nap' finished, but its results drawer in written-in\\.org was written in while the block ran"
                           said))
      (should-not (obgt-said-p "renamed" said)))
    (should (equal (obgt-drawer "nap") "note to self"))))

;; Found by probing: text typed on the placeholder's own line kept the
;; placeholder, which nothing would fill, and the message said it was gone.
(ert-deftest obgt-a-placeholder-line-written-on-while-its-block-ran-gets-the-earlier-result ()
  (obgt-with-notes ("written-on.org" "
#+name: nap
#+begin_src jupyter-python
import time
time.sleep(0.5)
print('rested')
#+end_src

#+RESULTS: nap
:results:
: before
:end:
")
    (obgt-run "nap")
    (save-excursion
      (goto-char (point-min))
      (search-forward "[waiting for the kernel")
      (end-of-line)
      (insert " (checking)"))
    (let ((said (obgt-messages (should (obgt-wait)))))
      (should (obgt-said-p "block `nap' finished, but its results drawer in written-on\\.org was written in while the block ran"
                           said))
      (should-not (obgt-said-p "no longer in" said)))
    (should (equal (obgt-drawer "nap") ": before (checking)"))))

;; Found by probing: an undo right after a result brings back the
;; placeholder, which no result will fill, and nothing said so until the
;; file was saved.
(ert-deftest obgt-an-undo-that-brings-back-a-placeholder-says-so ()
  (obgt-with-notes ("undone.org" "
#+name: quick
#+begin_src jupyter-python
print('quick', 1 + 1)
#+end_src
")
    (buffer-enable-undo)
    (obgt-run "quick")
    (undo-boundary)
    (should (obgt-wait))
    (should (equal (obgt-drawer "quick") ": quick 2"))
    (let ((said (obgt-messages (let ((last-command nil)) (undo))
                               (obgt-wait-until-said "placeholder of a run that has ended"))))
      (should (obgt-said-p (format "line %d holds the placeholder of a run that has ended, brought back by the undo"
                                   (car (gradients-placeholder-lines)))
                           said)))
    (should (string-prefix-p ": [waiting for the kernel" (obgt-drawer "quick")))
    ;; The step before gives back the drawer as it was: none.
    (let ((last-command 'undo)) (undo))
    (should (null (obgt-drawer "quick")))))

;; Found by probing: C-c C-c in a block's edit buffer (C-c ') was
;; python-mode's, which asked for a Python shell of its own.
(ert-deftest obgt-c-c-c-c-in-a-blocks-edit-buffer-runs-the-block ()
  (obgt-with-notes ("edited-here.org" "
#+name: edited
#+begin_src jupyter-python
print('before')
#+end_src
")
    (org-babel-goto-named-src-block "edited")
    (let ((notes (current-buffer)))
      (org-edit-special)
      (unwind-protect
          (progn
            (goto-char (point-min))
            (search-forward "before")
            (replace-match "after edit" t t)
            (should (eq (key-binding (kbd "C-c C-c")) #'gradients-run-edited-block))
            (call-interactively #'gradients-run-edited-block))
        (org-edit-src-exit))
      (with-current-buffer notes
        (should (obgt-wait))
        (should (equal (obgt-drawer "edited") ": after edit"))
        ;; As C-c C-c in the notes: the file is not saved.
        (should (buffer-modified-p))
        (should-not (string-match-p "after edit"
                                    (with-temp-buffer (insert-file-contents file)
                                                      (buffer-string))))))))

;;;; C-c C-v b

(ert-deftest obgt-queuing-every-block-of-the-notes-is-cheap ()
  "C-c C-v b on README.org: Org is asked about ten times for the element
at each block's head, and each place of unchanged text is parsed once
all the same, its drawer's too, which leaves a few parses a block; one
message, not one a block, says what was queued; and no garbage
collection runs."
  (let* ((folder (expand-file-name "readme/" obgt-scratch))
         (file (expand-file-name "README.org" folder))
         (noninteractive nil)
         (looks 0)
         (parsed (make-hash-table :test #'equal))
         (parsed-again 0)
         ;; Innermost, so it sees what reaches Org's parser.
         (count-parse (lambda (parse &rest arguments)
                        (let ((key (list (current-buffer) (point)
                                         (buffer-chars-modified-tick) arguments)))
                          (when (gethash key parsed) (cl-incf parsed-again))
                          (puthash key t parsed))
                        (apply parse arguments)))
         ;; Outermost, so it sees every look.
         (count-look (lambda (&rest _) (cl-incf looks))))
    (make-directory folder t)
    (copy-file (expand-file-name "README.org" obgt-root) file t)
    (let ((buffer (find-file-noselect file))
          (blocks 0))
      (unwind-protect
          (with-current-buffer buffer
            (org-babel-map-src-blocks nil
              (when (equal lang "jupyter-python") (cl-incf blocks)))
            ;; The blocks are queued behind a session whose kernel never
            ;; gets ready, as behind one still starting: what is counted
            ;; is Emacs's work, and a real kernel would only be started to
            ;; run the notes' imports and be stopped again.
            (let ((gradients-python (expand-file-name "never-ready-python" obgt-scratch)))
              (with-temp-file gradients-python (insert "#!/bin/sh\nexec cat >/dev/null\n"))
              (set-file-modes gradients-python #o755)
              (gradients-start-session "gradients"))
            (garbage-collect)
            (let ((collections nil) said)
              ;; Counted inside the command: the collection that the
              ;; garbage calls for comes after it, when Emacs is idle.
              (advice-add 'org-babel-execute-buffer :around
                          (lambda (run &rest arguments)
                            (advice-add 'org-element-at-point :around count-parse
                                        '((name . obgt-parse) (depth . 100)))
                            (advice-add 'org-element-at-point :before count-look
                                        '((name . obgt-look) (depth . -100)))
                            (let ((before gcs-done))
                              (unwind-protect (apply run arguments)
                                (setq collections (- gcs-done before))
                                (advice-remove 'org-element-at-point 'obgt-parse)
                                (advice-remove 'org-element-at-point 'obgt-look))))
                          '((name . obgt-gc) (depth . 100)))
              (unwind-protect
                  ;; Emacs's own threshold, as the author has it: the
                  ;; build's (loaded by build-tests.el) would hide the cost.
                  (let ((gc-cons-threshold 800000))
                    (setq said (obgt-messages (org-babel-execute-buffer))))
                (advice-remove 'org-babel-execute-buffer 'obgt-gc))
              (should (equal collections 0))
              (should (> blocks 20))
              ;; What makes the test mean something: Org looks again and again.
              (should (> looks (* 5 blocks)))
              (should (equal parsed-again 0))
              ;; The element at the head of the block, and at its
              ;; results; a drawer Org writes anew is looked at again.
              ;; (Org 9.6 and later also ask about given places, which
              ;; their cache answers.)
              (should (<= (cl-count-if #'null (hash-table-keys parsed) :key #'cadddr)
                          (* 3 blocks)))
              (should (equal (cl-count-if (lambda (text)
                                            (string-match-p "queued\\|is running" text))
                                          said)
                             1))
              (should (obgt-said-p "\\`gradients: [0-9]+ blocks queued; each result" said))))
        (let ((directory (with-current-buffer buffer default-directory)))
          (dolist (session gradients--sessions)
            (when (equal (process-get (cdr session) 'directory) directory)
              (gradients--stop (cdr session)))))
        (with-current-buffer buffer (set-buffer-modified-p nil))
        (kill-buffer buffer)))))

;;;; Messages

(ert-deftest obgt-a-queued-block-is-not-said-to-be-complete ()
  (obgt-with-notes ("queued.org" "
#+name: nap
#+begin_src jupyter-python
import time
time.sleep(0.5)
#+end_src
")
    (let ((said (obgt-messages (obgt-run "nap"))))
      (should-not (obgt-said-p "evaluation complete" said))
      (should (obgt-said-p "queued\\.org:[0-9]+: block `nap' is \\(running\\|queued\\)" said)))))

(ert-deftest obgt-stopping-the-kernels-says-what-it-stopped ()
  (obgt-with-notes ("stop.org" "
#+name: one
#+begin_src jupyter-python
1
#+end_src
")
    (obgt-run "one")
    (should (obgt-wait))
    ;; With those an earlier test left running, if any.
    (let ((said (obgt-messages (gradients-stop-sessions))))
      (should (obgt-said-p
               "stopped the kernels? of sessions? \\(?:.* \\)?gradients\\_>" said)))
    (let ((said (obgt-messages (gradients-stop-sessions))))
      (should (obgt-said-p "no kernel was running" said)))))

;; Found by a CI run on a loaded machine: ipykernel ignores SIGINT until
;; it has begun a block, and an interrupt that came before then was lost;
;; the block ran its 30 s, and the blocks after it waited.  Each way of
;; interrupting, as soon as the block is sent.
(ert-deftest obgt-an-interrupt-as-the-block-is-sent-stops-it ()
  (obgt-with-notes ("at-once.org" (concat "
#+name: warm
#+begin_src jupyter-python
'warm'
#+end_src
" obgt-long-nap "
#+name: waited-long
#+begin_src jupyter-python :async no
import time
time.sleep(30)
#+end_src

#+name: after-long
#+begin_src jupyter-python
'after'
#+end_src
"))
    (obgt-run "warm")
    (should (obgt-wait))
    (pcase-dolist (`(,way . ,interrupt)
                   `(("gradients-interrupt" . gradients-interrupt)
                     ("the quit's yes" . ,(lambda () (gradients--stop-blocks "a test quits")))
                     ("C-g" . nil)))
      (if interrupt
          (progn (obgt-run "long") (funcall interrupt))
        ;; C-g as soon as a block under :async no is sent.
        (should (eq (obgt-quit-once-sent (lambda () (obgt-run "waited-long") 'waited))
                    'quit)))
      ;; Queued behind the interrupted block: done long before its 30 s.
      (obgt-run "after-long")
      (should (equal (list way (obgt-wait 15)) (list way t)))
      (should (equal (obgt-drawer "after-long") ": 'after'"))
      (should (equal (obgt-drawer "long") ": slept before")))))

(ert-deftest obgt-an-interrupt-that-does-not-stop-the-block-says-so ()
  (obgt-with-notes ("stubborn.org" "
#+name: stubborn
#+begin_src jupyter-python
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
open('stubborn-ignores-interrupts', 'w').close()
time.sleep(30)
#+end_src
")
    (delete-file (expand-file-name "stubborn-ignores-interrupts" obgt-scratch))
    (obgt-run "stubborn")
    ;; Until the block ignores SIGINT: an interrupt that came before would
    ;; stop it.
    (should (obgt-wait-for-file "stubborn-ignores-interrupts"))
    (let* ((gradients-interrupt-patience 0.5)
           (said (obgt-messages
                  (org-babel-goto-named-src-block "stubborn")
                  (gradients-interrupt)
                  (obgt-wait-until-said "is still running" 10))))
      (should (obgt-said-p "stubborn\\.org:[0-9]+: block `stubborn' is still running .*gradients-restart"
                           said)))
    (gradients-restart)
    (should (obgt-wait 10))))

;; Found by probing: C-g said "Quit" alone of a block that caught the
;; KeyboardInterrupt and ran on; and a second interrupt did nothing.
(ert-deftest obgt-each-interrupt-is-sent-and-one-that-did-not-stop-the-block-is-said ()
  (obgt-with-notes ("catches.org" "
#+name: catches
#+begin_src jupyter-python :async no
import time
try:
    time.sleep(30)
except KeyboardInterrupt:
    open('caught-the-interrupt', 'w').close()
    time.sleep(30)
    'slept on'
#+end_src
")
    (delete-file (expand-file-name "caught-the-interrupt" obgt-scratch))
    (let* ((gradients-interrupt-patience 0.5)
           (said (obgt-messages
                  (should (eq (obgt-quit-once-sent (lambda () (obgt-run "catches") 'waited))
                              'quit))
                  (should (obgt-wait-for-file "caught-the-interrupt"))
                  (obgt-wait-until-said "is still running" 10))))
      (should (obgt-said-p "catches\\.org:[0-9]+: block `catches' is still running 0.5s after the interrupt .*gradients-restart stops it, losing the kernel.s variables"
                           said))
      (org-babel-goto-named-src-block "catches")
      (gradients-interrupt)
      (should (obgt-wait 10)))))

;; Found by probing: a block run again while it ran, then interrupted,
;; caught the interrupt and finished; the run queued behind it was dropped,
;; and the drawer went back to what it held before both runs.  Either may
;; come first: the dropped run's answer, or the first run's result.
(ert-deftest obgt-a-run-whose-second-run-was-dropped-keeps-its-result ()
  (dolist (first-ends-after '(0 2))
    (obgt-with-notes ("run-twice.org" (format "
#+name: twice
#+begin_src jupyter-python
import time
try:
    open('twice-sleeps', 'w').close()
    time.sleep(30)
except KeyboardInterrupt:
    time.sleep(%s)
'finished'
#+end_src

#+RESULTS: twice
:results:
: before
:end:
" first-ends-after))
      (delete-file (expand-file-name "twice-sleeps" obgt-scratch))
      (obgt-run "twice")
      (should (obgt-wait-for-file "twice-sleeps"))
      (obgt-run "twice")
      (org-babel-goto-named-src-block "twice")
      (gradients-interrupt)
      (should (obgt-wait 20))
      (should (equal (obgt-drawer "twice") ": 'finished'")))))

;; Found by probing: the answer of a block a quit had stopped came as
;; Emacs asked whether to save, and its message hid the question.
(ert-deftest obgt-a-stopped-blocks-late-answer-keeps-out-of-the-echo-area ()
  (obgt-with-notes ("late-answer.org" obgt-long-nap)
    (obgt-edit-to-save)
    (obgt-run "long")
    (let ((shown nil)
          (bridge (gradients--find-session "gradients" (gradients--kernel-folder))))
      (should (obgt-wait-until (lambda () (process-get bridge 'current))))
      (cl-letf* ((real-message (symbol-function 'message))
                 ((symbol-function 'yes-or-no-p) (lambda (_prompt) t))
                 ((symbol-function 'save-some-buffers)
                  (lambda (&rest _)
                    ;; As the question waits: the bridge's answer comes.
                    (cl-letf (((symbol-function 'message)
                               (lambda (format-string &rest arguments)
                                 (unless inhibit-message
                                   (push (apply #'format-message format-string arguments) shown))
                                 (apply real-message format-string arguments))))
                      (should (obgt-wait-until
                               (lambda () (null (process-get bridge 'current))) 10)))
                    (signal 'quit nil)))
                 ((symbol-function 'kill-emacs) (lambda (&rest _) (error "Emacs exited"))))
        (condition-case nil (save-buffers-kill-emacs) (quit nil)))
      (should-not shown)
      (should (equal (obgt-drawer "long") ": slept before")))))

(defconst obgt-crash-notes "
#+name: crash
#+begin_src jupyter-python
import os
os._exit(1)
#+end_src

#+name: after-crash
#+begin_src jupyter-python
1 + 1
#+end_src
")

(ert-deftest obgt-a-block-queued-behind-a-crash-runs-on-a-fresh-kernel ()
  (obgt-with-notes ("crash.org" obgt-crash-notes)
    (let ((said (obgt-messages
                 (obgt-run "crash")
                 (obgt-run "after-crash")
                 (should (obgt-wait)))))
      (should (obgt-said-p "block `crash' stopped the kernel.*the block queued behind it runs on a fresh kernel"
                           said))
      (should-not (obgt-said-p "dropped" said)))
    (should (equal (obgt-drawer "after-crash") ": 2"))))

;; As Jupyter aborts the cells queued behind one that raised: those behind
;; may need what it did not do, and their own failures would bury its.
(ert-deftest obgt-the-blocks-queued-behind-one-that-raised-do-not-run ()
  (obgt-with-notes ("raises.org" "
#+name: boom
#+begin_src jupyter-python
import time; time.sleep(0.5); raise ValueError('root cause')
#+end_src

#+name: behind
#+begin_src jupyter-python
open('behind-ran', 'w').close()
#+end_src

#+RESULTS: behind
:results:
: before
:end:
")
    (let ((said (obgt-messages
                 (obgt-run "boom")
                 (obgt-run "behind")
                 (should (obgt-wait)))))
      (should (obgt-said-p "raises\\.org:[0-9]+: block `boom' raised ValueError: root cause" said))
      (should (obgt-said-p "1 queued block dropped: raises\\.org:[0-9]+: block `boom' raised before them"
                           said)))
    (should-not (file-exists-p (expand-file-name "behind-ran" obgt-scratch)))
    (should (equal (obgt-drawer "behind") ": before"))
    (should (string-match-p "root cause" (with-current-buffer "*gradients-traceback*"
                                           (buffer-string))))))

;; A block Org waits for (:async no; a :var, append, a table alike) follows
;; its request to the fresh bridge; waiting on the dead one would spin.
(ert-deftest obgt-a-waited-block-queued-behind-a-crash-runs-on-a-fresh-kernel ()
  (obgt-with-notes ("crash.org" "
#+name: crash-soon
#+begin_src jupyter-python
import os, time
time.sleep(1)
os._exit(1)
#+end_src

#+name: waited
#+begin_src jupyter-python :async no
2 + 3
#+end_src
")
    (obgt-run "crash-soon")
    ;; C-g, were the wait never to end.
    (let ((guard (run-with-timer 30 nil (lambda () (setq quit-flag t)))))
      (unwind-protect
          (should (equal (condition-case nil (progn (obgt-run "waited") 'done)
                           (quit 'quit))
                         'done))
        (cancel-timer guard)))
    (should (equal (obgt-drawer "waited") ": 5"))))

;; Found by probing: Emacs waited for a block a :var names without a word,
;; the placeholders already written unseen until the wait ended.
(ert-deftest obgt-a-waited-block-says-which-it-waits-for ()
  (obgt-with-notes ("waited.org" "
#+name: slow-value
#+begin_src jupyter-python
import time
time.sleep(2.5)
7
#+end_src

#+name: uses-it
#+begin_src jupyter-python :var v=slow-value
int(v) * 6
#+end_src
")
    (let ((echoed nil))
      (cl-letf* ((message (symbol-function 'message))
                 ((symbol-function 'message)
                  (lambda (format-string &rest arguments)
                    (when format-string
                      (push (apply #'format format-string arguments) echoed))
                    (apply message format-string arguments))))
        (obgt-run "uses-it")
        (should (obgt-wait)))
      (should (obgt-said-p "waited\\.org:[0-9]+: block `slow-value': running, [1-9][0-9]* s (C-g stops it)"
                           echoed)))
    (should (equal (obgt-drawer "uses-it") ": 42"))))

;; Found by probing: a first block, its kernel still starting, was said
;; to wait for the blocks before it, though there were none.
(ert-deftest obgt-a-wait-for-a-starting-kernel-says-so ()
  (obgt-with-notes ("slow-start.org" "
#+name: first
#+begin_src jupyter-python :session slowstart :async no
1
#+end_src
")
    (let ((python (expand-file-name "slow-python" obgt-scratch)))
      (with-temp-file python
        (insert (format "#!/bin/sh\nsleep 2.5\nexec %s \"$@\"\n"
                        (shell-quote-argument gradients-python))))
      (set-file-modes python #o755)
      (let ((echoed (let ((gradients-python python))
                      (obgt-messages (obgt-run "first") (should (obgt-wait))))))
        (should (obgt-said-p "slow-start\\.org:[0-9]+: block `first': waiting for the kernel to start, [1-9] s (C-g stops it)"
                             echoed))
        (should-not (obgt-said-p "waiting for the blocks before it" echoed)))
      (should (equal (obgt-drawer "first") ": 1")))))

(ert-deftest obgt-a-block-queued-behind-a-killed-bridge-runs-on-a-fresh-kernel ()
  (obgt-with-notes ("bridge.org" "
#+name: nap
#+begin_src jupyter-python
import time
time.sleep(30)
#+end_src

#+name: after-bridge
#+begin_src jupyter-python
3 * 3
#+end_src
")
    (obgt-run "nap")
    (obgt-run "after-bridge")
    (let ((process (obgt-wait-until
                    (lambda ()
                      (car (cl-remove-if-not
                            (lambda (process) (process-get process 'current))
                            (mapcar #'cdr gradients--sessions)))))))
      (should process)
      (let ((said (obgt-messages
                   (signal-process process 'SIGKILL)
                   (should (obgt-wait)))))
        (should (obgt-said-p "block `nap' lost its kernel: the kernel bridge was killed by signal 9\\.  Its variables are gone; the block queued behind it runs on a fresh kernel"
                             said))))
    (should (equal (obgt-drawer "after-bridge") ": 9"))))

(ert-deftest obgt-a-bridge-that-never-answers-is-killed-past-its-time-limit ()
  ;; A stopped bridge (SIGSTOP) enforces no time limit, whether its kernel
  ;; starts or a block runs: a build would wait for ever.  `sleep' answers
  ;; nothing, as it does.
  (dolist (ready '(t nil))
    (let* ((gradients-bridge-patience 0)
           (process (make-process :name "obgt-silent-bridge" :command '("sleep" "600")
                                  :noquery t :sentinel #'gradients--sentinel))
           (request (gradients--make-request :id 1 :where "obgt" :timeout 0
                                             :sent (- (float-time) 1))))
      (unwind-protect
          (progn
            (process-put process 'session "obgt")
            (if ready
                (process-put process 'current request)
              (process-put process 'queue (list request)))
            (process-put process 'ready ready)
            (process-put process 'started
                         (- (float-time) gradients--kernel-start-limit 1))
            (let ((reply (gradients--wait process request)))
              (should-not (process-live-p process))
              (should (equal (alist-get 'kind reply) (if ready "died" "dropped")))
              (should (string-match-p (if ready "no answer 0 s past the block's time limit of 0 s"
                                        "no answer 0 s past the 60 s its kernel has to start")
                                      (alist-get 'error reply)))))
        (delete-process process)))))

(ert-deftest obgt-a-batch-build-names-no-buffer-it-takes-with-it ()
  ;; The kernel's last line is all a batch build leaves of its failure.
  (let ((process (make-pipe-process :name "obgt-bridge" :noquery t)))
    (unwind-protect
        (progn
          (process-put process 'stderr-buffer " *obgt-bridge-errors*")
          (cl-letf (((symbol-function 'gradients--stderr-tail)
                     (lambda (_) "Traceback (most recent call last):\nRuntimeError: no thread\n")))
            (should noninteractive)
            (should (equal (gradients--start-failure process)
                           "its kernel did not start: RuntimeError: no thread"))))
      (delete-process process))))

;; What bridges said as they died, and the line of it named as why.
(defconst obgt-last-words
  '(("Traceback (most recent call last):\n  File \"b.py\", line 9, in <module>\nImportError: no zmq\n  File \"t.py\", line 1045, in _bootstrap_inner\n"
     . "ImportError: no zmq")
    ("RuntimeError: Kernel died\nException in thread reader:\n" . "RuntimeError: Kernel died")
    ("OSError: [Errno 24]\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n"
     . "OSError: [Errno 24]")
    ("ValueError: x\n\nProcess obgt-bridge stderr finished\n" . "ValueError: x")
    ("  File \"b.py\", line 9\n" . "File \"b.py\", line 9")))

(ert-deftest obgt-a-bridge-that-did-not-start-is-named-by-the-line-that-says-why ()
  ;; Not its last line: a thread's traceback cut by the process's end,
  ;; its heading, a chained exception's, Emacs's own line.
  (let ((process (make-pipe-process :name "obgt-bridge" :noquery t)))
    (unwind-protect
        (dolist (case obgt-last-words)
          (cl-letf (((symbol-function 'gradients--stderr-tail) (lambda (_) (car case))))
            (should (equal (gradients--start-failure process)
                           (concat "its kernel did not start: " (cdr case))))))
      (delete-process process))))

(ert-deftest obgt-the-dead-kernel-buffer-says-it-once ()
  (obgt-with-notes ("dead.org" obgt-crash-notes)
    (obgt-run "crash")
    (should (obgt-wait))
    (with-current-buffer gradients-traceback-buffer
      (let ((text (buffer-string)) (start 0) (count 0))
        (while (string-match "the kernel died while running it" text start)
          (cl-incf count)
          (setq start (match-end 0)))
        (should (= count 1))))))

(ert-deftest obgt-a-picture-without-file-is-only-its-link ()
  (obgt-with-notes ("picture.org" "
#+name: graph
#+begin_src jupyter-python
import graphviz
graph = graphviz.Digraph()
graph.edge('a', 'b')
graph
#+end_src
")
    (obgt-run "graph")
    (should (obgt-wait))
    (should (string-match-p "\\`\\[\\[file:\\.build/pictures/[0-9a-f]+\\.svg\\]\\]\\'"
                            (obgt-drawer "graph")))))

(ert-deftest obgt-a-file-changed-while-its-block-ran-is-said ()
  "Renamed, or removed: not \"changed from one.svg to nil\"."
  (dolist (case '(("renamed-file.org" ":file two.svg"
                   "its :file changed from one\\.svg to two\\.svg while it ran")
                  ("removed-file.org" ""
                   "its :file one\\.svg was removed while it ran")))
    (obgt-with-notes ((car case) "
#+name: graph
#+begin_src jupyter-python :file one.svg
import time, graphviz
time.sleep(0.5)
graph = graphviz.Digraph()
graph.edge('a', 'b')
graph
#+end_src
")
      (obgt-run "graph")
      (save-excursion
        (goto-char (point-min))
        (re-search-forward " ?:file one\\.svg")
        (replace-match (if (string-empty-p (nth 1 case)) "" (concat " " (nth 1 case))) t t))
      (let ((said (obgt-messages (should (obgt-wait)))))
        (should (obgt-said-p (concat "block `graph': " (nth 2 case)
                                     "; the picture went to one\\.svg")
                             said)))
      (should (equal (obgt-drawer "graph") "[[file:one.svg]]")))))

;; Found by probing: a block whose code was edited while it waited behind
;; another got the result of its code as it was, without a word.
(ert-deftest obgt-code-edited-while-its-block-waited-is-said ()
  (obgt-with-notes ("edited-code.org" "
#+name: slow
#+begin_src jupyter-python
import time
time.sleep(0.5)
#+end_src

#+name: quick
#+begin_src jupyter-python
print('quick', 2)
#+end_src
")
    (obgt-run "slow")
    (obgt-run "quick")
    (save-excursion
      (goto-char (point-min))
      (re-search-forward "'quick', 2")
      (replace-match "'quick', 100" t t))
    (let ((said (obgt-messages (should (obgt-wait)))))
      (should (obgt-said-p "block `quick': its code was edited after it was run, and the drawer holds what the code made before: run the block again"
                           said))
      (should-not (obgt-said-p "block `slow': its code was edited" said)))
    (should (equal (obgt-drawer "quick") ": quick 2"))))

;; Found by probing: with the venv gone (`make clean'), restarting stopped
;; the working kernel, then failed to start another.
(ert-deftest obgt-a-restart-without-a-python-keeps-the-kernel ()
  (obgt-with-notes ("restart.org" "
#+name: one
#+begin_src jupyter-python
x = 1
#+end_src
")
    (obgt-run "one")
    (should (obgt-wait))
    (org-babel-goto-named-src-block "one")
    (let ((process (gradients--current-session))
          (gradients-python (expand-file-name "no-such-python" obgt-scratch)))
      (should (process-live-p process))
      (should (string-match-p "\\`No .*no-such-python: run `make venv' in "
                              (cadr (should-error (gradients-restart) :type 'user-error))))
      (should (process-live-p process)))))

;; Found by probing: with point on a block of an idle session, the
;; interrupt said "no block is running" while another session ran one.
(ert-deftest obgt-the-interrupt-finds-the-one-session-running-a-block ()
  (obgt-with-notes ("interrupt-other.org" "
#+name: other
#+begin_src jupyter-python :session other
y = 2
#+end_src

#+name: sleeps
#+begin_src jupyter-python
import time
open('sleeping', 'w').close()
time.sleep(60)
#+end_src
")
    (obgt-run "other")
    (should (obgt-wait))
    (obgt-run "sleeps")
    (should (obgt-wait-for-file "sleeping"))
    (org-babel-goto-named-src-block "other")
    (let ((said (obgt-messages (gradients-interrupt) (should (obgt-wait 20)))))
      (should (obgt-said-p "interrupted .*block `sleeps'" said))
      (should (obgt-said-p "block `sleeps' was interrupted (KeyboardInterrupt)" said)))))

;; Found by probing: with its bridge held stopped (kill -STOP), a block
;; waits unsent; the interrupt dropped it "as the kernel was interrupted",
;; and its last word was that no block was running.  And a kernel held
;; stopped takes no interrupt: the block was said to perhaps catch
;; KeyboardInterrupt.

(defmacro obgt-with-a-warm-session (session &rest body)
  "Run BODY in notes of two blocks of SESSION, `warm' (x = 1), which has
run, and `next' (x + 1), with BRIDGE and KERNEL bound to its processes'
ids; stop the session after, whatever BODY held stopped."
  (declare (indent 1))
  `(obgt-with-notes (,(concat session ".org")
                     ,(format "
#+name: warm
#+begin_src jupyter-python :session %s
x = 1
#+end_src

#+name: next
#+begin_src jupyter-python :session %s
x + 1
#+end_src
" session session))
     (obgt-run "warm")
     (should (obgt-wait))
     (let* ((bridge (cdr (assoc ,session gradients--sessions)))
            (kernel (process-get bridge 'kernel-pid)))
       (unwind-protect
           (progn ,@body)
         (signal-process kernel 'SIGCONT)
         (signal-process bridge 'SIGCONT)
         (gradients--stop bridge)))))

;; Found by probing: a kernel killed while no block ran was found dead by
;; the next block, which was said to have lost it though it never ran on
;; it; only the block after that ran, on a fresh kernel.
(ert-deftest obgt-a-kernel-killed-between-blocks-is-said-at-once-and-replaced ()
  (obgt-with-a-warm-session "idle"
    (let ((said (obgt-messages
                 (signal-process kernel 'SIGKILL)
                 ;; Its sentinel run, not the process dead alone: CI caught
                 ;; the test between the two, on Emacs 30, nothing said yet.
                 (should (obgt-wait-until (lambda () (not (rassq bridge gradients--sessions)))
                                          10)))))
      (should (obgt-said-p (concat "session idle lost its kernel while no block ran: the kernel"
                                   " was killed by signal 9 .*; the next block starts a fresh one")
                           said)))
    (let ((said (obgt-messages (obgt-run "next") (should (obgt-wait)))))
      (should (obgt-said-p "block `next' raised NameError" said))
      (should-not (obgt-said-p "lost its kernel" said)))))

(ert-deftest obgt-an-interrupt-with-a-block-queued-on-a-stopped-bridge-says-what-it-dropped ()
  (obgt-with-a-warm-session "held"
    (signal-process bridge 'SIGSTOP)
    (should (obgt-wait-until (lambda () (eq (process-status bridge) 'stop))))
    (obgt-run "next")
    (org-babel-goto-named-src-block "next")
    (let ((said (obgt-messages (gradients-interrupt))))
      (should (obgt-said-p (concat "no block was running in session held; the block queued"
                                   " was dropped (its kernel bridge is held stopped from"
                                   " outside: kill -CONT [0-9]+ lets it go on)")
                           said))
      (should-not (obgt-said-p "the kernel was interrupted" said)))))

(ert-deftest obgt-an-interrupt-a-stopped-kernel-cannot-take-says-why ()
  (obgt-with-a-warm-session "heldkernel"
    (let ((gradients-interrupt-patience 0.5))
      (signal-process kernel 'SIGSTOP)
      (obgt-run "next")
      (should (obgt-wait-until (lambda () (process-get bridge 'current))))
      (org-babel-goto-named-src-block "next")
      (obgt-messages
       (gradients-interrupt)
       (should (obgt-wait-until-said
                (format "still running 0.5s after the interrupt (its kernel is held stopped from outside: kill -CONT %d lets it go on)"
                        kernel)))))))

;; Found by probing: a block that raised KeyboardInterrupt itself was said
;; to have been interrupted, when nobody had.
(ert-deftest obgt-a-keyboardinterrupt-no-one-sent-is-raised ()
  (obgt-with-notes ("raises-interrupt.org" "
#+name: raises
#+begin_src jupyter-python
raise KeyboardInterrupt('on its own')
#+end_src
")
    (let ((said (obgt-messages (obgt-run "raises") (should (obgt-wait)))))
      (should (obgt-said-p "block `raises' raised KeyboardInterrupt: on its own" said))
      (should-not (obgt-said-p "was interrupted" said)))))

;; Notes with a byte that is not UTF-8, visited as UTF-8 (as Emacs in a
;; UTF-8 locale does): the byte stays in the buffer as a raw byte, which
;; no request can carry.  C-c C-c said "Wrong type argument:
;; utf-8-string-p", naming neither the notes nor the block.  Refused
;; before any kernel starts.
(ert-deftest obgt-a-byte-that-is-not-utf-8-is-named-by-its-block ()
  (let* ((folder (expand-file-name "latin-1/" obgt-scratch))
         (file (expand-file-name "notes.org" folder))
         (noninteractive nil)
         ;; Org 9.6 files each buffer's element cache under a hash of its
         ;; text, and for text holding a raw byte, Emacs asks which coding
         ;; system to hash it in: Org's question, not the executor's.
         (select-safe-coding-system-function nil))
    (make-directory folder t)
    (let ((coding-system-for-write 'no-conversion))
      (write-region (concat obgt-header
                            "\n#+name: in-code\n#+begin_src jupyter-python\nx = 1\nprint('caf\351')\n#+end_src\n"
                            "\n#+name: in-file\n#+begin_src jupyter-python :file caf\351.png\n1\n#+end_src\n")
                    nil file nil 'silent))
    (let ((buffer (let ((coding-system-for-read 'utf-8-unix)) (find-file-noselect file)))
          (sessions gradients--sessions))
      (unwind-protect
          (with-current-buffer buffer
            (should (equal (cadr (should-error (obgt-run "in-code")))
                           "notes.org:6: block `in-code': byte #xE9 in its code (line 2) is not UTF-8; the notes must be saved as UTF-8"))
            (should (equal (cadr (should-error (obgt-run "in-file")))
                           "notes.org:12: block `in-file': byte #xE9 in its :file is not UTF-8; the notes must be saved as UTF-8"))
            (should (equal gradients--sessions sessions)))
        (with-current-buffer buffer (set-buffer-modified-p nil))
        (kill-buffer buffer)))))

;; Notes visited read-only (a read-only file, C-x C-q): Org fails as it
;; writes a result, which with :async no was once the block had run, and
;; with :async yes as it wrote the placeholder of a block sent all the
;; same, whose result then went to *gradients-unwritten*.  Refused before
;; anything is sent, by the block's line.
(ert-deftest obgt-notes-visited-read-only-refuse-a-block-before-it-runs ()
  (obgt-with-notes ("read-only/notes.org"
                    "\n#+name: waited\n#+begin_src jupyter-python :async no\n1\n#+end_src\n\n#+name: queued\n#+begin_src jupyter-python\n2\n#+end_src\n")
    (setq buffer-read-only t)
    (let ((sessions gradients--sessions)
          (text (buffer-string)))
      (pcase-dolist (`(,name ,line) '(("waited" 6) ("queued" 11)))
        (should (equal (cadr (should-error (obgt-run name)))
                       (format "notes.org:%d: block `%s': notes.org is read-only, so its result would have nowhere to go; make the buffer writable (C-x C-q) and run the block again"
                               line name))))
      (should-not (obgt-busy))
      (should (equal gradients--sessions sessions))
      (should (equal (buffer-string) text)))))

(provide 'ob-gradients-tests)
;;; ob-gradients-tests.el ends here
