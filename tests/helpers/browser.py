"""A real browser: Debian's chromium, headless, for the report page (and its benchmark)."""

from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright):
    """Debian's chromium through Playwright (no downloaded browser), offline flags."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


class OpenedPage:
    """A page opened from disk, with its console errors and any network request recorded.

    Waits for ``window.kxReady`` (set by the report's and SpRAy's pages when drawn);
    requests that leave the disk are aborted and kept in :attr:`requests`.
    """

    def __init__(self, browser, path):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors, self.requests = [], []
        self.page.on(
            "console", lambda m: m.type in ("error", "warning") and self.errors.append(m.text)
        )
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.route("**/*", self._route)
        self.page.goto(f"file://{path}")
        self.page.wait_for_function("() => window.kxReady === true")

    def _route(self, route):
        if route.request.url.startswith(("file://", "data:")):
            route.continue_()
        else:
            self.requests.append(route.request.url)
            route.abort()
