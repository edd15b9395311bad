;;; Settings for working on README.org in Emacs.
;;
;; Only variables Emacs knows to be safe, so opening the notes asks nothing.
;; Two settings Org 9.5 does not mark safe come with the executor instead,
;; when you load it (M-x load-file RET tools/ob-gradients.el RET):
;; `jupyter-python' blocks edited in python-mode (without guessing the
;; indentation, which no directory setting can tell the buffers Org edits
;; blocks in), and inline pictures scaled to the window
;; (`org-image-actual-width').  Evaluation is never switched on from
;; here: Emacs asks before running each block.

((nil . ((indent-tabs-mode . nil)
         (fill-column . 78)))
 (org-mode . ((org-adapt-indentation . nil)
              (org-edit-src-content-indentation . 0)
              (org-hide-emphasis-markers . nil)))
 (python-mode . ((python-indent-offset . 4)
                 (python-indent-guess-indent-offset . nil))))
