"""The console in a real browser: headless Debian Chromium driven by Playwright.

Log in, open the top case, label it, see the queue update; a prompt carrying an HTML/JS payload
renders as inert text. With DG_CONSOLE_SHOTS=DIR it also saves screenshots of the main pages.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium)", allow_module_level=True)
pytest.importorskip("fastapi")
pytest.importorskip("multipart")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

from console_util import ADMIN_PW, APPEAL_TOKEN, PAYLOAD, LiveServer, make_scan  # noqa: E402
from distillguard.console.app import create_app  # noqa: E402
from distillguard.console.store import build_store  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    scan_dir = Path(os.environ["DG_CONSOLE_SCAN"]) if os.environ.get("DG_CONSOLE_SCAN") else make_scan(tmp_path_factory.mktemp("scan"))
    db = tmp_path_factory.mktemp("db") / "console.duckdb"
    build_store(scan_dir, db, log=lambda *a: None)
    app = create_app(db, env={"DISTILLGUARD_ADMIN_PASSWORD": ADMIN_PW, "DISTILLGUARD_APPEAL_TOKEN": APPEAL_TOKEN})
    with LiveServer(app) as s:
        yield s


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith(server.url) else route.abort())
        pg = ctx.new_page()
        pg.set_default_timeout(15000)
        yield pg
        browser.close()


def shot(page, name: str) -> None:
    d = os.environ.get("DG_CONSOLE_SHOTS")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(d) / f"console-{name}.png"), full_page=name != "case")


def test_login_label_queue_updates(server, page):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(server.url + "/")
    assert page.url.endswith("/login")
    assert page.locator("table").count() == 0  # nothing but the login form
    shot(page, "login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", ADMIN_PW)
    page.click("button[type=submit]")
    page.wait_for_selector("#queue")
    shot(page, "queue")
    top = page.locator("#queue tbody tr").first
    acct = top.get_attribute("data-account")
    assert top.locator(".label").inner_text().strip() == ""
    top.locator("a.case").click()
    page.wait_for_selector("#decide")
    assert page.locator("#target").inner_text() == acct
    assert page.locator("svg[aria-label='activity timeline'] rect.bar").count() > 0
    shot(page, "case")
    page.check("#decide input[value=confirm]")
    page.fill("#decide textarea[name=comment]", "reasoning-trace sweep, confirmed")
    page.click("#decide button[type=submit]")
    page.wait_for_selector("#label.lab-attack")
    page.click("header nav >> text=Queue")
    page.wait_for_selector("#queue")
    row = page.locator(f"#queue tbody tr[data-account='{acct}']")
    assert "attack" in row.locator(".label").inner_text()
    assert "admin" in row.locator(".label").inner_text()
    page.goto(server.url + "/audit")
    assert "decision.confirm" in page.locator("#audit").inner_text()
    shot(page, "audit")
    assert dialogs == []


def test_prompt_payload_is_inert_text(server, page):
    if os.environ.get("DG_CONSOLE_SCAN"):
        pytest.skip("payload fixture only in the built-in scan")
    page.goto(server.url + "/account/acct_top")
    page.wait_for_selector("pre.prompt")
    texts = page.locator("pre.prompt").all_inner_texts()
    assert PAYLOAD in texts  # shown verbatim, as text
    assert page.evaluate("() => window.__pwned === undefined")
    assert page.locator("pre.prompt script, pre.prompt img").count() == 0
    # the evil account id too
    page.goto(server.url + "/")
    assert page.locator("#queue b").count() == 0
    assert 'acct_<b>evil</b>' in page.locator("#queue").inner_text()
