"""The live page in a real browser (Debian's Chromium driven by Playwright): pick a video
file, watch the top-5 bars, the frame counter and the timeline update."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from .serve_helpers import CLASSES, write_test_video

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("MOVINET_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _browser_or_skip():
    """Playwright's sync API and a Chromium binary; absent -> skip, or fail under CI=true
    (`make test` installs Debian's chromium where apt is usable)."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright (Python) is not installed"
    if reason is None and not CHROMIUM.exists():
        reason = (f"no Chromium at {CHROMIUM} (`make browser` installs Debian's chromium; "
                  "MOVINET_CHROMIUM names another binary)")
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return sync_playwright


def test_page_streams_a_file_and_shows_live_predictions(serve_url, tmp_path):
    sync_playwright = _browser_or_skip()
    video = write_test_video(tmp_path / "clip.webm", n=30, fps=10, seed=4, codec="libvpx")
    before = httpx.get(f"{serve_url}/v1/stats").json()
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{serve_url}/")
            page.wait_for_function(
                "document.getElementById('model').textContent.includes('motion-a0')")
            page.set_input_files("#file", str(video))
            page.wait_for_function("Number(document.getElementById('frames').textContent) >= 2",
                                   timeout=60_000)
            early = int(page.text_content("#frames"))
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('done')",
                timeout=90_000)
            final = int(page.text_content("#frames"))
            labels = page.locator("#bars .label").all_text_contents()
            widths = page.locator("#bars .fill").evaluate_all(
                "els => els.map(e => parseFloat(e.style.width))")
            painted = page.evaluate("""() => {
                const c = document.getElementById('timeline');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }""")
        finally:
            browser.close()
    after = httpx.get(f"{serve_url}/v1/stats").json()
    assert not errors
    # 3 s at the model's 5 fps: frames at t = 0, 0.2, ..., 2.8
    assert early < final == 15
    assert len(labels) == 5 and len(set(labels)) == 5 and set(labels) <= set(CLASSES)
    assert widths == sorted(widths, reverse=True) and 0 < sum(widths) <= 100.5
    assert painted > 0
    assert after["frames_streamed"] - before["frames_streamed"] == 15
    assert after["sessions_opened"] - before["sessions_opened"] == 1
