"""README.org as GitHub shows it: rendered by GitHub's own library
(github-markup with org-ruby), styled like a repository page, loaded in
headless Chromium.

    python tools/preview.py README.org OUTDIR

writes OUTDIR/README.html and OUTDIR/README.png (the whole page) and exits
non-zero, naming them, if any picture failed to load.  The tests use the
same functions.
"""

import base64
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

# Close to GitHub's README view: an 830-pixel article in its system fonts.
STYLE = """
body { margin: 0; background: #fff; color: #1f2328;
       font: 16px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; }
article { box-sizing: border-box; max-width: 1012px; margin: 0 auto; padding: 32px; }
h1 { font-size: 2em; border-bottom: 1px solid #d1d9e0; padding-bottom: .3em; }
pre { background: #f6f8fa; padding: 16px; overflow: auto; font-size: 85%;
      line-height: 1.45; border-radius: 6px;
      font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
code { background: rgba(129,139,152,.12); padding: .2em .4em; border-radius: 6px; font-size: 85%; }
pre code { background: none; padding: 0; }
img { max-width: 100%; box-sizing: content-box; }
table { border-collapse: collapse; display: block; width: max-content; max-width: 100%; overflow: auto; }
td, th { border: 1px solid #d1d9e0; padding: 6px 13px; }
tr:nth-child(2n) { background: #f6f8fa; }
a { color: #0969da; }
"""

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
    "--remote-debugging-pipe",
]


def render(org_file):
    """The HTML body GitHub makes of ORG_FILE."""
    run = subprocess.run(["github-markup", str(org_file)], capture_output=True,
                         text=True, timeout=60)
    if run.returncode != 0:
        raise RuntimeError(f"github-markup failed on {org_file}:\n{run.stderr}")
    return run.stdout


def page(body, root):
    """A whole page around BODY whose relative links resolve against ROOT,
    as they do against the repository on GitHub."""
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f'<base href="{Path(root).resolve().as_uri()}/">'
            f'<style>{STYLE}</style></head>\n<body><article>{body}</article></body></html>\n')


class Chromium:
    """Headless Chromium driven over its DevTools pipe (file descriptors 3
    and 4 of the child): no driver, no port, no network."""

    def __init__(self):
        self.profile = tempfile.TemporaryDirectory(prefix="gradients-chromium-")
        to_child_read, self.to_child = os.pipe()
        self.from_child, from_child_write = os.pipe()

        def give_pipes():
            # Move both ends out of the way first: either may already sit
            # on 3 or 4, and dup2 onto itself would keep close-on-exec.
            read, write = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
                           for fd in (to_child_read, from_child_write))
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.process = subprocess.Popen(
            ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={self.profile.name}", "about:blank"],
            preexec_fn=give_pipes, close_fds=False, start_new_session=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_read)
        os.close(from_child_write)
        self.buffer = b""
        self.next_id = 0
        self.session = None
        self.events = []
        target = next(t for t in self.call("Target.getTargets")["targetInfos"]
                      if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", targetId=target["targetId"],
                                 flatten=True)["sessionId"]

    def _read(self):
        while b"\0" not in self.buffer:
            chunk = os.read(self.from_child, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, event):
        while True:
            for i, seen in enumerate(self.events):
                if seen.get("method") == event:
                    return self.events.pop(i)
            self.events.append(self._read())

    def close(self):
        # /usr/bin/chromium is a wrapper script: end its whole group.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        os.close(self.to_child)
        os.close(self.from_child)
        self.profile.cleanup()  # no process is left to write to it


def load(html_file, screenshot=None, width=1012):
    """Open HTML_FILE; return [(src, naturalWidth)] for its pictures, and
    save a full-page screenshot to SCREENSHOT if given."""
    browser = Chromium()
    try:
        browser.call("Page.enable")
        browser.call("Emulation.setDeviceMetricsOverride", width=width, height=800,
                     deviceScaleFactor=1, mobile=False)
        browser.call("Page.navigate", url=Path(html_file).resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        images = json.loads(browser.call(
            "Runtime.evaluate", returnByValue=True,
            expression="JSON.stringify([...document.images].map("
                       "i => [i.getAttribute('src'), i.naturalWidth]))")["result"]["value"])
        if screenshot:
            size = browser.call("Page.getLayoutMetrics")["cssContentSize"]
            browser.call("Emulation.setDeviceMetricsOverride", width=width,
                         height=int(size["height"]), deviceScaleFactor=1, mobile=False)
            shot = browser.call("Page.captureScreenshot", format="png",
                                captureBeyondViewport=True)
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        return images
    finally:
        browser.close()


def preview(org_file, out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_file = out_dir / "README.html"
    html_file.write_text(page(render(org_file), Path(org_file).parent))
    images = load(html_file, out_dir / "README.png")
    return html_file, out_dir / "README.png", images


def main(org_file, out_dir):
    html_file, png, images = preview(org_file, out_dir)
    broken = [src for src, width in images if width == 0]
    print(f"{png}: {len(images)} pictures, {len(broken)} broken")
    if broken:
        print(f"{html_file}: pictures that did not load: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
