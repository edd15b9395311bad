"""README.org as GitHub shows it: rendered by github-markup (org-ruby), then
loaded in headless Chromium."""

import re
from urllib.parse import unquote, urlparse

import pytest

from conftest import README, ROOT

# The browser's driver, Beautiful Soup and Pillow are imported by the
# functions that use them: every worker of `make check` collects this
# file, and one runs its tests.

# Its tests share fixtures made once for the module: one worker runs them all.
pytestmark = pytest.mark.xdist_group(__name__)

REPR = re.compile(r"<[\w.]+ (object )?at 0x[0-9a-f]+>")


@pytest.fixture(scope="module")
def html():
    import preview
    return preview.render(README)


@pytest.fixture(scope="module")
def soup(html):
    from bs4 import BeautifulSoup
    return BeautifulSoup(html, "html.parser")


def squeeze(text):
    """Text with each line's trailing blanks and the outer blank lines gone."""
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def test_every_heading_in_order(doc, soup):
    shown = [h.get_text(" ", strip=True) for h in soup.find_all(re.compile("^h[1-6]$"))
             if "title" not in (h.get("class") or [])]
    assert shown == [title for _, title, _ in doc.headings]


def test_every_exported_block_is_shown(doc, soup):
    shown = [squeeze(pre.get_text()) for pre in soup.find_all("pre", class_="src")]
    missing = [b.label for b in doc.blocks
               if b.exported and squeeze(b.code) not in shown]
    assert missing == []


def test_the_hidden_header_block_is_not_shown(doc, soup):
    header = squeeze(doc.block("generated-header").code)
    assert header not in [squeeze(pre.get_text()) for pre in soup.find_all("pre")]


def recorded_parts(block):
    """What a recorded result must show: its text, its table rows, its pictures."""
    text, rows, pictures = [], [], []
    for line in block.recorded.splitlines():
        if line.startswith(":"):
            text.append(line[2:])
        elif re.fullmatch(r"\|[-+]+\|", line):
            continue
        elif line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif m := re.fullmatch(r"\[\[file:(.*)\]\]", line):
            pictures.append(m.group(1))
    return squeeze("\n".join(text)), rows, pictures


def test_every_recorded_result_is_shown(doc, soup):
    examples = [squeeze(pre.get_text()) for pre in soup.find_all("pre", class_="example")]
    table_rows = [[cell.get_text(strip=True) for cell in tr.find_all(["td", "th"])]
                  for tr in soup.find_all("tr")]
    images = [img["src"] for img in soup.find_all("img")]
    missing = []
    for block in doc.blocks:
        if not block.recorded:
            continue
        text, rows, pictures = recorded_parts(block)
        if text and text not in examples:
            missing.append(f"{block.label}: text")
        if any(row not in table_rows for row in rows):
            missing.append(f"{block.label}: table")
        if any(picture not in images for picture in pictures):
            missing.append(f"{block.label}: picture")
    assert missing == []


def test_every_picture_is_a_file_in_the_repository(soup):
    sources = [img["src"] for img in soup.find_all("img")]
    assert sources, "the page shows no pictures"
    assert [s for s in sources if not (ROOT / s).is_file()] == []


def test_every_relative_link_resolves(soup):
    broken = []
    for a in soup.find_all("a", href=True):
        target = urlparse(a["href"])
        if target.scheme or target.netloc or not target.path:
            continue
        if not (ROOT / unquote(target.path)).exists():
            broken.append(a["href"])
    assert broken == []


def test_no_python_repr_appears(html, soup):
    assert not REPR.search(html), REPR.search(html).group(0)
    cells = [td.get_text() for td in soup.find_all("td")]
    assert [c for c in cells if " at 0x" in c or c.startswith("<")] == []


@pytest.fixture(scope="module")
def browser():
    import preview
    with preview.chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def previewed(browser, tmp_path_factory):
    """What `make preview` makes (page, screenshot, the pictures it loaded),
    in a fresh folder so that no earlier screenshot can stand in for it."""
    import preview
    return preview.preview(browser, README, tmp_path_factory.mktemp("preview"))


def test_every_picture_loads_in_chromium(soup, previewed):
    _, _, images = previewed
    assert [src for src, _ in images] == [img["src"] for img in soup.find_all("img")]
    assert [src for src, width in images if width == 0] == []


def test_the_screenshot_holds_the_whole_page(previewed):
    from PIL import Image
    _, screenshot, _ = previewed
    with Image.open(screenshot) as picture:
        assert picture.format == "PNG"
        # Taller than the 800-pixel window: the page below it was taken too.
        assert picture.width == 1012 and picture.height > 800, picture.size
