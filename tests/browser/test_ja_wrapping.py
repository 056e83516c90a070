"""Japanese table cells do not wrap inside a word (issue 11 point 10), checked in Chromium.

Japanese has no spaces, so a browser may break a line between any two characters: a narrow
column showed 作成|済み or 一部|成功 on two lines. app.css keeps a Japanese phrase whole
(`word-break: keep-all`) and still lets a long value break rather than overflow
(`overflow-wrap: anywhere`). The pages are rendered by the Flask test client (runs and
conflicts made by the real functions, see test_i18n_crawl) and shown in Chromium with the
app's stylesheet, in a phone-sized window; the screenshots are kept for people to look at.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from playwright.sync_api import Browser

from tests.browser.conftest import ROOT, screenshot
from tests.helpers import signed_in
from tests.web.test_i18n_crawl import _seed_alerts_and_conflicts, _seed_runs, ja_app  # noqa: F401

CSS = [ROOT / "static" / "css" / name for name in ("app.css", "wizard.css")]

ONE_LINE = """() => {
  const broken = [];
  for (const cell of document.querySelectorAll('td, th')) {
    if (cell.querySelector('form, button, ul')) continue;  // a button wraps on its own terms
    const text = cell.innerText.trim();
    // a short phrase with no space: one word to a Japanese reader
    if (!text || text.length > 14 || /\\s/.test(text) || !/[\\u3040-\\u30ff\\u4e00-\\u9fff]/.test(text)) continue;
    // the line boxes of its text (a badge's padding moves a box, not a line: 8 px apart)
    const tops = [];
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const range = document.createRange();
      range.selectNodeContents(node);
      for (const rect of range.getClientRects()) if (rect.width) tops.push(rect.top);
    }
    if (tops.length && Math.max(...tops) - Math.min(...tops) > 8) broken.push(text);
  }
  return broken;
}"""


def _show(browser: Browser, html: str, name: str) -> list[str]:
    context = browser.new_context(locale="ja-JP", viewport={"width": 360, "height": 800})
    try:
        page = context.new_page()
        page.set_content(html.replace('<script src="/static/vendor/', '<script data-off="'))
        for path in CSS:
            page.add_style_tag(path=str(path))
        screenshot(page, name)
        assert page.evaluate("getComputedStyle(document.querySelector('td')).wordBreak") == (
            "keep-all"
        )
        return list(page.evaluate(ONE_LINE))
    finally:
        context.close()


def test_japanese_cells_keep_their_words_whole(browser: Browser, ja_app: Flask) -> None:  # noqa: F811
    database = ja_app.extensions["mailbox_sync.database"]
    _seed_runs(database)
    _seed_alerts_and_conflicts(database)
    client = signed_in(ja_app)
    client.get("/?lang=ja")
    for path, name in (("/log", "ja-wrapping-log"), ("/conflicts", "ja-wrapping-conflicts")):
        html = client.get(path).get_data(as_text=True)
        assert 'lang="ja"' in html
        assert _show(browser, html, name) == [], path
        assert Path(ROOT / "test-artifacts" / "screenshots" / f"{name}.png").exists()
