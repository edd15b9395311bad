"""README.org as GitHub shows it: rendered by GitHub's own library
(github-markup with org-ruby), styled like a repository page, loaded in
headless Chromium through Playwright.

    python tools/preview.py README.org OUTDIR

writes OUTDIR/README.html and OUTDIR/README.png (the whole page) and exits
non-zero, naming them, if any picture failed to load.  The tests use the
same functions.
"""

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import sync_playwright

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

# Debian's Chromium: Playwright never downloads a browser of its own here
# (there is nothing to download it from, and none is needed).
CHROMIUM = "/usr/bin/chromium"

CHROMIUM_ARGS = [
    # The page is a local file and the machines have no network: no
    # updates, sync, or background requests that would only wait and fail.
    "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
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


@contextmanager
def chromium():
    """Headless Chromium, driven by Playwright; one may load many pages."""
    with sync_playwright() as playwright:
        # Without the sandbox, as Chromium will not start with it as root;
        # the only page it opens is the one made here from README.org.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
            args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def load(browser, html_file, screenshot=None, width=1012):
    """Open HTML_FILE in BROWSER; return [(src, naturalWidth)] for its
    pictures, and save a full-page screenshot to SCREENSHOT if given."""
    page = browser.new_page(viewport={"width": width, "height": 800})
    try:
        page.goto(Path(html_file).resolve().as_uri(), wait_until="load")
        images = page.evaluate(
            "[...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
        if screenshot:
            page.screenshot(path=str(screenshot), full_page=True)
        return [tuple(image) for image in images]
    finally:
        page.close()   # and its context: the next page starts clean


def preview(browser, org_file, out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_file = out_dir / "README.html"
    html_file.write_text(page(render(org_file), Path(org_file).parent))
    images = load(browser, html_file, out_dir / "README.png")
    return html_file, out_dir / "README.png", images


def main(org_file, out_dir):
    with chromium() as browser:
        html_file, png, images = preview(browser, org_file, out_dir)
    broken = [src for src, width in images if width == 0]
    print(f"{png}: {len(images)} pictures, {len(broken)} broken")
    if broken:
        print(f"{html_file}: pictures that did not load: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
