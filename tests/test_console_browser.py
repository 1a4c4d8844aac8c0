"""The web console in a real headless browser: the distribution's Chromium driven by Selenium
(`apt-get install chromium chromium-driver`; `.ci/run` installs them). Without them the tests
skip, unless EVENTUALI_PG_REQUIRE_BROWSER=1 (set by `.ci/run`), where a skip would hide a
broken console: there they fail.

The dashboard test saves the screenshot the README shows (docs/console.png)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers.cli_dead_letters_data import park_letters
from helpers.console import SCRIPT, CuttingProxy, console_server, write_notes
from test_health import _execute

from eventuali_pg import EventStore
from eventuali_pg.projections import DeadLetterQueue

HANG = 30  # seconds: a hang detector only
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "console.png"

T = TypeVar("T")


def _find(name: str, *candidates: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    return next((path for path in candidates if Path(path).exists()), None)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium under Selenium (root needs --no-sandbox)."""
    chromium = _find("chromium", "/usr/bin/chromium")
    driver_path = _find("chromedriver", "/usr/bin/chromedriver")
    if chromium is None or driver_path is None:
        reason = (
            "needs Chromium and its driver (apt-get install chromium chromium-driver); "
            f"found chromium={chromium}, chromedriver={driver_path}"
        )
        if os.environ.get("EVENTUALI_PG_REQUIRE_BROWSER") == "1":
            pytest.fail(f"EVENTUALI_PG_REQUIRE_BROWSER=1 but the browser is missing: {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


async def _in_thread(call: Callable[[], T]) -> T:
    """Selenium blocks: run each step off the event loop."""
    return await asyncio.to_thread(call)


async def _wait(driver: Any, condition: Callable[[Any], T]) -> T:
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, HANG, poll_frequency=0.05)
    return await asyncio.to_thread(wait.until, condition)


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _dataset(driver: Any, key: str) -> str | None:
    value = driver.execute_script(
        "return document.getElementById('tail-body').dataset[arguments[0]] || null", key
    )
    return str(value) if value is not None else None


async def test_dashboard_stream_browser_and_escaping(dsn: str, browser: Any) -> None:
    await park_letters(dsn, ("order-summary",))
    async with await EventStore.create(dsn) as store:
        await write_notes(store, "notebook-7", ["first note", "second note"])
        (position,) = await write_notes(store, "notebook-7", [SCRIPT])
        head = await store.get_global_position()
    await _execute(
        dsn,
        "INSERT INTO eventuali.checkpoints (subscription_id, position) "
        f"VALUES ('search-index', {head - 3})",
    )
    async with console_server(dsn) as server:
        await _in_thread(lambda: browser.get(f"{server.url}/?refresh=0"))  # no reload meanwhile
        await _wait(browser, lambda d: _css(d, "#head")[0].text == str(head))
        assert _css(browser, "#health")[0].text == "healthy"
        assert int(_css(browser, "#listeners")[0].text) >= 1
        assert len(_css(browser, "#rate-chart rect.bar")) == 20
        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert await _in_thread(lambda: browser.save_screenshot(str(SCREENSHOT)))

        await _in_thread(lambda: browser.get(f"{server.url}/events?after={position - 3}&limit=10"))
        row = (await _wait(browser, lambda d: _css(d, f'tr[data-position="{position}"]')))[0]
        payload = row.find_element("css selector", "pre.payload").text
        assert json.loads(payload) == {"text": SCRIPT}  # the markup, shown as text
        assert _css(browser, "tr.event b") == []  # ...and not parsed as HTML
        assert browser.execute_script("return window.__pwned === undefined")

        await _in_thread(lambda: browser.get(f"{server.url}/events?aggregate_id=notebook-7"))
        rows = await _wait(browser, lambda d: _css(d, "tr.event"))
        assert [int(r.get_attribute("data-position")) for r in rows] == [
            position - 2,
            position - 1,
            position,
        ]
        await _in_thread(lambda: browser.get(f"{server.url}/events?event_type=console.Noted"))
        rows = await _wait(browser, lambda d: _css(d, "tr.event"))
        assert len(rows) == 3


async def test_live_tail_survives_a_cut_connection(dsn: str, browser: Any) -> None:
    async with (
        console_server(dsn) as server,
        CuttingProxy(int(server.url.rsplit(":", 1)[1])) as proxy,
        await EventStore.create(dsn) as store,
    ):
        start = await store.get_global_position()
        await _in_thread(lambda: browser.get(f"{proxy.url}/tail"))
        await _wait(browser, lambda d: _css(d, "#tail-status")[0].text == "live")

        first = await write_notes(store, "tail-1", [*(f"a{i}" for i in range(5)), SCRIPT])
        await _wait(browser, lambda d: _dataset(d, "last") == str(first[-1]))

        proxy.cut()  # the page's stream (and every other connection) is aborted
        second = await write_notes(store, "tail-2", [f"b{i}" for i in range(5)])
        await _wait(
            browser,
            lambda d: (
                _dataset(d, "last") == str(second[-1]) and int(_dataset(d, "connections") or 0) >= 2
            ),
        )

        await _in_thread(lambda: _css(browser, "#pause")[0].click())
        await _wait(browser, lambda d: _css(d, "#tail-status")[0].text.startswith("paused at"))
        third = await write_notes(store, "tail-3", [f"c{i}" for i in range(5)])
        await _in_thread(lambda: _css(browser, "#pause")[0].click())  # resume
        await _wait(browser, lambda d: _dataset(d, "last") == str(third[-1]))

        shown = [int(row.get_attribute("data-position")) for row in _css(browser, "tr.event")]
        assert shown == list(range(start + 1, third[-1] + 1))  # in order, none missing or twice
        assert shown == [*first, *second, *third]
        texts = [row.text for row in _css(browser, "tr.event pre.payload")]
        assert json.loads(texts[len(first) - 1]) == {"text": SCRIPT}
        assert browser.execute_script("return window.__pwned === undefined")
        assert proxy.cuts == 1
    assert "Traceback" not in server.text, server.text


async def test_dead_letter_retried_from_the_page(dsn: str, browser: Any) -> None:
    poisons = await park_letters(dsn, ("retry-demo",))

    def show(position: int) -> str:
        return f"/dead-letters/show?subscription=retry-demo&position={position}"

    async with console_server(
        dsn, "--allow-actions", "--projection", "retry-demo=helpers.console:Forgiving"
    ) as server:
        await _in_thread(lambda: browser.get(f"{server.url}{show(poisons[0])}"))
        retry = (await _wait(browser, lambda d: _css(d, "#retry")))[0]
        assert "cannot digest event" in _css(browser, "#error")[0].text
        await _in_thread(retry.click)
        confirm = (await _wait(browser, lambda d: _css(d, "#confirm")))[0]
        await _in_thread(confirm.click)
        outcome = (await _wait(browser, lambda d: _css(d, "#outcome")))[0]
        assert outcome.get_attribute("data-outcome") == "handled", outcome.text
    async with await EventStore.create(dsn) as store:
        queue = DeadLetterQueue(store)
        assert await queue.get("retry-demo", poisons[0]) is None
        assert await queue.get("retry-demo", poisons[1]) is not None

    async with console_server(dsn) as server:  # actions not allowed: no buttons
        await _in_thread(lambda: browser.get(f"{server.url}{show(poisons[1])}"))
        await _wait(browser, lambda d: _css(d, "#traceback"))
        assert _css(browser, "#retry") == [] and _css(browser, "#discard") == []
