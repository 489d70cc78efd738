"""The console in a real browser: Debian's Chromium driven by Playwright, against the real
stack of tests/integration (the uvicorn API, a Celery worker, the run's Redis, the tiny
model). Playwright's own browser download cannot be reached here, so the browser is
``/usr/bin/chromium`` (``apt-get install chromium``; .ci/run installs it).

Every page a test opens is watched: a console error (a CSP refusal among them), an uncaught
exception or a dialog fails the test when it ends, unless the test expected it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.integration.conftest import (  # noqa: F401 - fixtures
    Worker,
    api_url,
    cpu_worker,
    service_env,
)

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
#: axe impacts that fail a page.
FAILING_IMPACTS = {"serious", "critical"}


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One Chromium for this package's tests, closed when they are done: Playwright's sync
    API keeps an asyncio loop running on the main thread while it is open, and every later
    test that calls ``asyncio.run`` (the client's) would fail beside it."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests drive Debian's Chromium ({CHROMIUM}): apt-get install chromium"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@dataclass
class Console:
    """A page of the console in a fresh browser context, and what it reported."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def sign_in(self, key: str, path: str = "/ui/") -> None:
        """Open ``path`` and sign in with ``key``."""
        self.page.goto(path)
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()

    def expect_errors(self, match: str) -> None:
        """Take the console errors containing ``match`` as expected (a 401 the test asked
        for, say), and fail if there is none."""
        expected = [e for e in self.errors if match in e]
        assert expected, f"no console error with {match!r}: {self.errors}"
        self.errors = [e for e in self.errors if match not in e]

    def axe_violations(self) -> list[str]:
        """axe-core's serious and critical violations on the page as it is now. axe is put
        in through the DevTools protocol (evaluate), which the page's CSP does not govern: a
        <script> tag would be refused by it, as it should be."""
        self.page.evaluate(AXE.read_text())
        result = self.page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        return [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + ", ".join(str(node["target"]) for node in v["nodes"])
            for v in result["violations"]
            if v["impact"] in FAILING_IMPACTS
        ]


@pytest.fixture
def console(
    browser: Browser,
    api_url: str,  # noqa: F811 - the fixture
    cpu_worker: Worker,  # noqa: F811 - the fixture: the jobs the pages show are trained
) -> Iterator[Console]:
    context = browser.new_context(base_url=api_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    watched = Console(page)
    page.on("console", lambda m: m.type == "error" and watched.errors.append(m.text))
    page.on("pageerror", lambda e: watched.errors.append(f"uncaught: {e}"))

    def dismiss(dialog) -> None:  # noqa: ANN001 - playwright's Dialog
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", dismiss)
    yield watched
    context.close()
    assert watched.errors == [], f"the console logged errors: {watched.errors}"
    assert watched.dialogs == [], f"the page opened dialogs: {watched.dialogs}"


def wait_until(
    reached: Callable[[], object],
    what: str,
    hopeless: Callable[[], str | None] = lambda: None,
    timeout: float = 120,
    state: Callable[[], str] = lambda: "",
) -> object:
    """Poll ``reached`` until it returns something truthy, and return that. Stop at once
    when ``hopeless`` names a reason (a job reached a terminal state it was not waited for),
    or at the deadline, and say which, with what was waited for and ``state()``."""
    deadline = time.monotonic() + timeout
    while True:
        value = reached()
        if value:
            return value
        reason = hopeless()
        if reason:
            raise AssertionError(f"gave up waiting for {what}: {reason}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}: {timeout:.0f} s passed {state()}")
        time.sleep(0.2)
