"""The dashboard in a real browser (headless Chromium driven by Selenium) during a run.

Three ``pcq consume`` processes serve a run while the page is open: it shows
three live consumers and a queue length that moves; one consumer is SIGKILLed
and its tile turns dead within the heartbeat TTL (plus one refresh). The page
must pass a basic accessibility check (every chart and control labelled, text
contrast >= 4.5:1) and fit a phone's width (390 px) without horizontal
scrolling. A screenshot goes to the test's tmp dir (and, with
``PCQ_DASHBOARD_SCREENSHOT=PATH``, to PATH too: how docs/dashboard.png is made).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them):
skipped with the reason without them, unless ``PCQ_REQUIRE_BROWSER=1`` (CI).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_redis import RedisServer, free_port
from redis_procs import Proc, env_for, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TTL = 2.0  # PCQ_HEARTBEAT_TTL of the run
INTERVAL = 0.5  # the dashboard's --interval
ITEMS = 600

# Every text's colour against its first opaque background, and every chart or
# control's label; returns what fails, and how many texts were checked.
A11Y_SCRIPT = """
const rgba = (c) => { const p = c.match(/[\\d.]+/g).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                     return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
const background = (el) => { for (let e = el; e; e = e.parentElement) {
    const c = rgba(getComputedStyle(e).backgroundColor); if (c[3] > 0) return c; } return [255, 255, 255, 1]; };
const problems = []; let checked = 0;
for (const el of document.body.querySelectorAll('*')) {
  const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  const r = el.getBoundingClientRect();
  if (!own || r.width === 0 || r.height === 0 || el.closest('.visually-hidden, [hidden]')) continue;
  const fg = lum(rgba(getComputedStyle(el).color)), bg = lum(background(el));
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  checked++;
  if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)}: ${el.tagName} "${el.textContent.trim().slice(0, 30)}"`);
}
for (const el of document.querySelectorAll('input, select, textarea, button, canvas, svg, [role=img]')) {
  const labelled = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') ||
    (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.closest('label') ||
    el.closest('[role=img][aria-label]');
  if (!labelled) problems.push(`no label: ${el.tagName}#${el.id}`);
}
if (!document.querySelector('[role=img][aria-label]')) problems.push('the chart has no label');
if (!document.documentElement.lang) problems.push('no lang on <html>');
return {problems, checked};
"""


def _browser_missing() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    return f"{' and '.join(missing)} not found (apt-get install chromium chromium-driver)" if missing else None


@pytest.fixture
def browser() -> Iterator[Any]:
    why = _browser_missing()
    if why:
        if os.environ.get("PCQ_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PCQ_REQUIRE_BROWSER=1 but {why}", pytrace=False)
        pytest.skip(f"needs a browser: {why} (CI sets PCQ_REQUIRE_BROWSER=1)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return bool(json.load(reply)["healthy"])
    except (OSError, ValueError):
        return False


def tiles(driver: Any, state: str) -> list[str]:
    # Read in the page, in one script: the tiles are re-rendered every tick, and an
    # element found in one call can be gone by the next (StaleElementReferenceException).
    found: list[str] = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), e => e.dataset.consumer)",
        f"#consumers li[data-state={state}]")
    return found


def test_live_run_killed_consumer_accessible_and_phone_sized(
    redis_server: RedisServer, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    settings = redis_server.settings(heartbeat_ttl=TTL)
    env = env_for(settings, PCQ_MAX_DELAY="0.05")
    port = free_port()
    procs = [Proc("core", ["dashboard", "--port", str(port), "--interval", str(INTERVAL)], env,
                  tmp_path)]  # fmt: skip
    try:
        wait_until(lambda: healthy(port), 30, "the dashboard to answer")
        consumers = [Proc("consumer", ["--quiet"], env, tmp_path) for _ in range(3)]
        procs += consumers
        browser.get(f"http://127.0.0.1:{port}/")
        ids = sorted(c.consumer_id for c in consumers)
        WebDriverWait(browser, 30).until(lambda d: sorted(tiles(d, "alive")) == ids)
        producer = Proc("producer", ["--items", str(ITEMS), "--json", "--timeout", "300"], env,
                        tmp_path)  # fmt: skip
        procs.append(producer)

        def length(d: Any) -> str:
            return str(d.execute_script(
                "return document.getElementById('s-length').textContent.trim()"))

        first = WebDriverWait(browser, 30).until(lambda d: length(d) not in ("–", "0") and length(d))
        WebDriverWait(browser, 30).until(lambda d: length(d) not in ("–", first))  # it moves
        victim = consumers[0]
        victim.signal(signal.SIGKILL)
        killed = time.monotonic()
        WebDriverWait(browser, TTL + 3 * INTERVAL + 2).until(
            lambda d: victim.consumer_id in tiles(d, "dead"))
        took = time.monotonic() - killed
        assert took <= TTL + 3 * INTERVAL, f"dead after {took:.1f} s (TTL {TTL} s)"
        assert sorted(tiles(browser, "alive")) == sorted(c.consumer_id for c in consumers[1:])
        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        if os.environ.get("PCQ_DASHBOARD_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["PCQ_DASHBOARD_SCREENSHOT"])

        report = browser.execute_script(A11Y_SCRIPT)
        assert report["problems"] == [] and report["checked"] > 30, report

        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.innerWidth") == 390)
        WebDriverWait(browser, 10).until(lambda d: d.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"))
        browser.save_screenshot(str(tmp_path / "dashboard-phone.png"))
        assert browser.execute_script(A11Y_SCRIPT)["problems"] == []

        assert producer.wait(300) == 0, producer.stderr
        tally = producer.json()
        assert tally["consumed"] == ITEMS and tally["lost"] == 0, tally
    finally:
        for proc in procs:
            proc.stop()
