"""A real browser for the HTML reports: Debian's headless Chromium, driven by Playwright.

`.ci/run` installs Chromium when it is missing (Debian package ``chromium``).
"""
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

# As the machine notes say: no sandbox as root, and none of Chromium's own
# background traffic (updates, sync), which would be requests the page did not make.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "the report tests need Chromium: `apt-get install chromium` (.ci/run installs it)"
    return path


def load(page_file: Path) -> dict:
    """Open the page; what it requested, what it complained of, and the text of every ``data-key``."""
    url = page_file.resolve().as_uri()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            page = browser.new_page()
            requests, problems = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url, wait_until="load")
            keyed = page.eval_on_selector_all("[data-key]", "els => els.map(e => [e.dataset.key, e.innerText])")
            title = page.title()
        finally:
            browser.close()
    return {"requests": [r for r in requests if r != url], "problems": problems, "keyed": dict(keyed),
            "title": title}


def value_at(data: dict, dotted: str):
    """``totals.both`` or ``cost.0.machine_hours`` in a JSON object."""
    for part in dotted.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data
