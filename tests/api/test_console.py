"""The web console's serving (lpft_api.routers.console), in process: its pages need no key,
every answer carries the security headers, it stays out of the OpenAPI document, and its
files are what the wheel ships. The pages themselves are driven in tests/browser."""

from __future__ import annotations

import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lpft_api.main import create_app
from lpft_api.openapi import openapi_document
from lpft_api.routers.console import STATIC
from lpft_api.settings import ApiSettings

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    "/ui/",
    "/ui/jobs/job-0123456789abcdef0123",
    "/ui/datasets",
    "/ui/new",
    "/ui/predict?job=job-0123456789abcdef0123",
    "/ui/compare?jobs=job-0123456789abcdef0123",
]


@pytest.fixture()
def anonymous() -> TestClient:
    """A client without a key, of a server that wants one."""
    return TestClient(create_app(ApiSettings(api_keys="alice:key-alice")))


def assert_secured(response) -> None:  # noqa: ANN001 - an httpx response
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_served_without_a_key_with_the_security_headers(
    anonymous: TestClient, path: str
) -> None:
    response = anonymous.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert_secured(response)
    # The API itself still wants the key, and so does a path that only starts like /ui.
    assert anonymous.get("/jobs").status_code == 401
    assert anonymous.get("/uix").status_code == 401


def test_ui_redirects_to_the_jobs_page_and_unknown_paths_are_404_with_headers(
    anonymous: TestClient,
) -> None:
    redirect = anonymous.get("/ui", follow_redirects=False)
    assert redirect.status_code == 308 and redirect.headers["location"] == "/ui/"
    assert_secured(redirect)
    for missing in (
        "/ui/nothing",
        "/ui/assets/js/nothing.js",
        "/ui/assets/%2e%2e/%2e%2e/routers/console.py",
    ):
        response = anonymous.get(missing)
        assert response.status_code == 404, missing
        assert_secured(response)


def test_scripts_are_served_as_javascript(anonymous: TestClient) -> None:
    scripts = ("jobs", "job", "predict", "compare", "results", "files")
    for asset in (*(f"js/{name}.js" for name in scripts), "vendor/uplot/uPlot.esm.js"):
        response = anonymous.get(f"/ui/assets/{asset}")
        assert response.status_code == 200, asset
        assert response.headers["content-type"].startswith("text/javascript")
        assert_secured(response)


def test_the_console_says_whether_this_server_wants_a_key_and_its_upload_limit(
    anonymous: TestClient,
) -> None:
    default = ApiSettings().max_upload_bytes
    config = anonymous.get("/ui/config.json").json()
    assert config == {"keys_required": True, "max_upload_bytes": default}
    settings = ApiSettings(api_keys="", open_mode=True, max_upload_bytes=1234)
    open_app = TestClient(create_app(settings))
    config = open_app.get("/ui/config.json").json()
    assert config == {"keys_required": False, "max_upload_bytes": 1234}


def test_the_console_is_not_in_the_openapi_document() -> None:
    paths = openapi_document()["paths"]
    assert "/jobs" in paths
    assert not [p for p in paths if p == "/ui" or p.startswith("/ui/")]


class _Markup(HTMLParser):
    """What of a page could run or style itself inline."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("an inline <script>")
        if tag == "style":
            self.found.append("a <style> element")
        self.found += [f"a {name}= attribute" for name in names if name.startswith("on")]
        self.found += ["a style= attribute"] if "style" in names else []
        self.in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self.in_script and data.strip():
            self.found.append("script text")

    def handle_endtag(self, tag: str) -> None:
        self.in_script = False


@pytest.mark.parametrize("page", sorted(p.name for p in STATIC.glob("*.html")))
def test_pages_hold_no_inline_script_or_style(page: str) -> None:
    parser = _Markup()
    parser.feed((STATIC / page).read_text())
    assert parser.found == []


def test_the_console_scripts_never_write_html_or_eval() -> None:
    """Strings reach the page as text only (the browser tests try hostile ones); the
    vendored library is uPlot's own file, checked by its pinned version instead."""
    scripts = sorted((STATIC / "assets" / "js").glob("*.js"))
    assert scripts
    sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"
    )
    for script in scripts:
        assert not sinks.findall(script.read_text()), script.name


def test_every_console_file_is_shipped_in_the_package() -> None:
    """pyproject's package-data globs cover every file the console serves, so that
    ``pip install .`` (the images) has them all."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["lpft_api"]
    package = STATIC.parent.parent
    shipped = {path for pattern in globs for path in package.glob(pattern) if path.is_file()}
    files = {path for path in STATIC.rglob("*") if path.is_file()}
    assert files and files == shipped
