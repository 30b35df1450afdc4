"""Headless Chromium through selenium for the report test: Debian's `chromium` and
`chromium-driver` (what .ci/run installs) and PyPI's selenium (the dev extra). Without
them the test that asks for a browser skips and says what is missing."""

import contextlib
import shutil

import pytest

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # the skip below says so
    webdriver = None
    By = None

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def missing() -> str | None:
    if webdriver is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    if CHROMIUM is None or DRIVER is None:
        return "no headless browser: apt-get install chromium chromium-driver (what .ci/run does)"
    return None


@contextlib.contextmanager
def headless_chromium():
    """A headless Chromium (no sandbox: CI runs as root), closed afterwards."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    browser = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()
