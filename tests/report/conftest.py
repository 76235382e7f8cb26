"""The browser both pages' tests drive: Debian's chromium, headless, through Playwright."""

import helpers
import pytest


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason='Playwright is missing: pip install "keras-explainer[test]"'
    )
    with sync_api.sync_playwright() as playwright:
        chromium = helpers.launch_chromium(playwright)
        yield chromium
        chromium.close()
