"""README.org as most people who run Org blocks see it: in a graphical
Emacs, here Debian's emacs-gtk in a real X window on Xvfb, with the
project's executor loaded.  Every picture shows on opening and a block run
from the keyboard redraws its own.  Screenshots go to .build/graphical/
for a person to look at.

The window is always $GUI_EMACS (emacs-gtk), with the Org on EMACSLOADPATH,
so the matrix's Org releases are drawn too.  The Emacs under test ($EMACS)
may be built without X, as /opt/emacs30 is: with EMACS=/opt/emacs30/bin/emacs
this file still checks Debian's Emacs 28 and its Org 9.5, since only a
graphical Emacs can show pictures."""

import os
import shutil
import subprocess

import pytest

from conftest import ROOT, TEST_BUSY, Daemon, copy_project, wait_for

# NumPy and Pillow are imported by the functions that use them: every
# worker of `make check` collects this file, and one runs its tests.

# Its tests share fixtures made once for the module: one worker runs them all.
pytestmark = pytest.mark.xdist_group(__name__)

GUI_EMACS = os.environ.get("GUI_EMACS", "emacs-gtk")
SCREENSHOTS = ROOT / ".build" / "graphical"

# Run once Emacs has its frame on the X display.  The server starts first:
# whatever goes wrong after it is then seen by the test's first question.
SETUP = (r"""
(progn
  (setq server-socket-dir default-directory server-name "emacs-server")
  (server-start)
  ;; Compiling the libraries -Q loads to native code would keep both cores
  ;; busy in the background, and write under ~/.emacs.d.
  (setq native-comp-deferred-compilation nil)
  (setq org-modules nil)
  ;; As for someone whose Org opens files folded: the notes' own #+STARTUP
  ;; has to win over it.
  (setq org-startup-folded 'content)
  (tool-bar-mode -1)
  (set-frame-size nil 1400 800 t)
  (load-file "tools/ob-gradients.el")
  ;; The kernel boots meanwhile, as in the build.
  (gradients-start-session "gradients")
  (setq org-confirm-babel-evaluate nil)
  (find-file "README.org")

  (defun test-goto-block (name)
    "Point to block NAME.  Not with `org-babel-goto-named-src-block': on
Org 9.5 it folds the drawers of the entry it shows."
    (goto-char (point-min))
    (re-search-forward (format "^#\\+name: %s$" (regexp-quote name)))
    (forward-line 1))
  (defun test-result-link (name)
    "Where the first link in block NAME's results starts."
    (save-excursion
      (test-goto-block name)
      (goto-char (org-babel-where-is-src-block-result))
      (re-search-forward "\\[\\[" (org-babel-result-end))
      (match-beginning 0)))
  (defun test-overlay (position)
    (cl-find-if (lambda (overlay) (overlay-get overlay 'org-image-overlay))
                (overlays-at position)))
  (defun test-pictures ()
    "For each link to images/: the file, the file shown over it, the width
asked for, the width drawn before Emacs's own scaling for large fonts
(`image-scaling-factor', which Org 9.5 leaves on), and whether the link
is hidden."
    (with-current-buffer "README.org"
      (save-excursion
        (goto-char (point-min))
        (let (pictures)
          (while (re-search-forward "\\[\\[file:\\(images/[^]]+\\)\\]\\]" nil t)
            (let* ((overlay (test-overlay (match-beginning 0)))
                   (spec (and overlay (overlay-get overlay 'display))))
              (push (vector (match-string-no-properties 1)
                          (and spec (file-relative-name (image-property spec :file)))
                          (and spec (image-property spec :width))
                          (and spec (round (car (image-size spec t))
                                           (or (image-property spec :scale) 1)))
                          (invisible-p (match-beginning 0)))
                    pictures)))
          (vconcat (nreverse pictures))))))
  (defun test-drawers ()
    "The line of each results drawer, and whether its content is hidden."
    (with-current-buffer "README.org"
      (save-excursion
        (goto-char (point-min))
        (let (drawers)
          (while (re-search-forward "^:results:$" nil t)
            (push (vector (line-number-at-pos) (and (invisible-p (point)) t)) drawers))
          (vconcat (nreverse drawers))))))
"""
    + TEST_BUSY + r"""
  (defun test-show (left right)
    "Block LEFT at the top of the left window, block RIGHT of the right."
    (delete-other-windows)
    (switch-to-buffer "README.org")
    (let ((other (split-window-right)))
      (test-goto-block left)
      (forward-line -1)
      (recenter 0)
      (with-selected-window other
        (test-goto-block right)
        (forward-line -1)
        (recenter 0)))
    ;; Xvfb keeps bits of rows scrolled away beside tall images otherwise.
    (redraw-frame)
    (redisplay t)
    t)
  (defun test-picture-on-screen (name)
    "Block NAME's picture, its line scrolled to the top of the only window:
the file shown, and two rectangles on the screen, which the frame's X
window fills, each as x, y, width and height in pixels: the whole
picture as drawn and the part of the window that shows text and
pictures.  The picture's line goes to the top, in a window as wide as
the frame, so that where it lands owes nothing to the fonts installed:
not to the height of the lines above it, nor to Emacs's scaling of
pictures for large fonts."
    (delete-other-windows)
    (let* ((window (selected-window))
           (link (with-current-buffer "README.org" (test-result-link name)))
           (overlay (with-current-buffer "README.org" (test-overlay link)))
           (spec (and overlay (overlay-get overlay 'display))))
      (with-current-buffer "README.org"
        ;; It would frame the picture, and a cursor after a picture taller
        ;; than the window makes Emacs scroll the picture's top away.
        (setq-local cursor-type nil))
      (with-selected-window window
        (goto-char link)
        (recenter 0))
      ;; Xvfb keeps bits of rows scrolled away beside tall images otherwise.
      (redraw-frame)
      (redisplay t)
      (let* ((corner (pos-visible-in-window-p link window t))
             (inside (window-inside-pixel-edges window))
             (left (+ (nth 0 (frame-edges nil 'native-edges)) (nth 0 inside)))
             (top (+ (nth 1 (frame-edges nil 'native-edges)) (nth 1 inside)))
             (size (and spec (image-size spec t))))
        (vector (and spec (file-relative-name (image-property spec :file)))
                (and spec corner
                     (vector (+ left (nth 0 corner)) (+ top (nth 1 corner))
                             (car size) (cdr size)))
                (vector left top (- (nth 2 inside) (nth 0 inside))
                        (- (nth 3 inside) (nth 1 inside)))))))
  t)
""")


@pytest.fixture(scope="module")
def display(tmp_path_factory):
    """An X server of its own, on the first free display."""
    assert shutil.which("Xvfb"), "no Xvfb: `make check` installs it (package xvfb)"
    read, write = os.pipe()
    log = tmp_path_factory.mktemp("xvfb") / "stderr.log"
    # -noreset: each time its last client leaves, Xvfb resets, and under
    # load Emacs would find the display gone ("cannot open display").
    with open(log, "w") as stderr:
        server = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", "1440x900x24",
             "-nolisten", "tcp", "-noreset"],
            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=stderr)
    os.close(write)
    with os.fdopen(read) as numbers:
        number = numbers.readline().strip()
    try:
        assert number, f"Xvfb did not start:\n{log.read_text()}"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("graphical"))


@pytest.fixture(scope="module")
def el(display, project):
    assert shutil.which(GUI_EMACS), \
        f"no {GUI_EMACS}: `make check` installs it (package emacs-gtk)"
    env = dict(os.environ, DISPLAY=display)
    emacs = Daemon(project, emacs=shutil.which(GUI_EMACS),
                   args=["--eval", SETUP], env=env)
    try:
        # Anything the set-up could not do shows here.
        assert emacs("(and (get-buffer \"README.org\") (display-graphic-p))") is True
        # What the plot needs runs on the kernel while the first test looks.
        for name in ("imports", "define-f", "xs", "ys"):
            emacs(f'(with-current-buffer "README.org" (save-excursion'
                  f' (test-goto-block "{name}") (org-babel-execute-src-block)))')
        yield emacs
    finally:
        emacs.close()


def screenshot(display, name):
    """The whole screen, saved under .build/graphical/ for people to see."""
    from PIL import ImageGrab
    picture = ImageGrab.grab(xdisplay=display)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    picture.save(SCREENSHOTS / name)
    return picture


def test_opening_shows_every_picture_with_every_drawer_open(el, display):
    pictures = el("(test-pictures)")
    links = [picture[0] for picture in pictures]
    assert sorted(links) == sorted(f"images/{name}" for name in os.listdir(ROOT / "images"))
    for link, shown, width, drawn, hidden in pictures:
        assert shown == link, f"{link} is not shown as a picture"
        assert width == 640, link
        assert 0 < drawn <= 640, (link, drawn)
        assert not hidden, f"{link} is folded away"
    drawers = el("(test-drawers)")
    assert len(drawers) > 10
    assert [line for line, folded in drawers if folded] == []
    el('(test-show "plot" "graph")')
    screenshot(display, "opened.png")


def test_a_block_run_from_the_keyboard_redraws_its_picture_in_place(el, display, project):
    assert wait_for(lambda: el("(not (test-busy))"), 60), "the first blocks did not finish"
    # Pictures that must stay as they are: those of other blocks, and one of
    # another Org file, outside the project, showing the same picture.
    elsewhere = project.parent / f"{project.name}-elsewhere.org"
    elsewhere.write_text(f"[[file:{project / 'images' / 'plot.png'}]]\n")
    el(f'(with-current-buffer (find-file-noselect "{elsewhere}") (org-display-inline-images)'
       ' (setq test-elsewhere (car org-inline-image-overlays)) t)')
    el('(with-current-buffer "README.org" (setq test-others (cl-remove'
       ' (test-overlay (test-result-link "plot")) org-inline-image-overlays)) t)')

    el('(test-show "plot" "graph")')
    el('(progn (select-window (frame-first-window)) (search-forward "plt.title(\\"")'
       ' (delete-region (point) (save-excursion (search-forward "\\"") (1- (point)))))')
    def xdotool(*args):
        subprocess.run(["xdotool", *args], env=dict(os.environ, DISPLAY=display), check=True)
    xdotool("windowfocus", "--sync", el("(frame-parameter nil 'outer-window-id)"))
    xdotool("type", "--delay", "5", "Redrawn after a run")
    xdotool("key", "--delay", "20", "ctrl+c", "ctrl+c")

    new = project / "images" / "plot.png"
    old = ROOT / "images" / "plot.png"

    def redrawn():
        """The plot's drawer once its new picture is in: before that, the
        old drawer and an idle executor would answer as well, for as long
        as the keys wait their turn on a busy machine."""
        return new.read_bytes() != old.read_bytes() and el(
            '(with-current-buffer "README.org" (and (not (test-busy))'
            ' (save-excursion (test-goto-block "plot") (gradients--drawer-text))))')
    assert wait_for(redrawn, 60) == "[[file:images/plot.png]]", \
        "the plot did not run again, or its drawer is not its link"
    assert 'plt.title("Redrawn after a run")' in el(
        '(with-current-buffer "README.org" (buffer-string))')

    shown_file, picture, window = el('(test-picture-on-screen "plot")')
    assert shown_file == "images/plot.png", "the plot is not shown as a picture after its run"
    assert picture, "the plot's line is not in its window"
    shot = screenshot(display, "redrawn.png")
    assert distance(shot, picture, window, new, new) < \
        distance(shot, picture, window, old, new) / 3, "the picture on screen is the old one"

    assert el('(with-current-buffer "README.org" (cl-every (lambda (overlay)'
              ' (and (overlay-buffer overlay) (memq overlay org-inline-image-overlays) t))'
              ' test-others))') is True
    assert el("(and (eq (overlay-buffer test-elsewhere) (get-file-buffer"
              f' "{elsewhere}")) t)') is True
    assert all(link == shown for link, shown, *_ in el("(test-pictures)"))
    assert [line for line, folded in el("(test-drawers)") if folded] == []


def distance(shot, picture, window, png, title_from):
    """How far the picture drawn at PICTURE in the screenshot SHOT is from
    PNG, where the title is: above the plot's frame, as TITLE_FROM (a PNG
    of the same plot) shows; the rest of the plot is the same whatever the
    title says.  Only the part inside WINDOW counts: with a large default
    font Emacs scales pictures up (Org 9.5 lets it), maybe past the
    window's edges.  Rectangles are x, y, width and height on the screen."""
    import numpy as np
    from PIL import Image
    x, y, width, height = picture
    left, top, window_width, window_height = window
    layout = np.asarray(Image.open(title_from).convert("L"))
    frame = next(row for row, line in enumerate(layout < 100) if line.mean() > 0.5)
    # A pixel short of the frame: resampling blurs its line by about one.
    title_height = frame * height // layout.shape[0] - 2
    shown_left, shown_top = max(x, left), max(y, top)
    shown_right = min(x + width, left + window_width)
    shown_bottom = min(y + title_height, top + window_height)
    assert shown_right > shown_left and shown_bottom > shown_top, \
        f"no part of the plot's title is in its window {window}"
    drawn = np.asarray(Image.open(png).convert("L").resize((width, height)), dtype=float)
    expected = drawn[shown_top - y: shown_bottom - y, shown_left - x: shown_right - x]
    on_screen = np.asarray(
        shot.crop((shown_left, shown_top, shown_right, shown_bottom)).convert("L"), dtype=float)
    return np.abs(on_screen - expected).mean()
