"""The default pipeline end to end with the real engine (smoke-sized: 1 seed, 1 epoch, every
registered family), and its report opened in a headless browser."""

import copy

import pandas as pd
import pytest
from browser_support import By, headless_chromium
from browser_support import missing as browser_missing
from pipeline_support import (
    load_config,
    run_snakemake,
    write_config,
)

import aol.families

REPORT = "results/smoke-default/report.html"

FIGURES = [
    "certified_accuracy_vs_epsilon",
    "accuracy_vs_training_time",
    "training_curves",
    "time_and_memory",
    "certified_accuracy_vs_training_time",
    "certified_accuracy_vs_memory",
    "orthogonality",  # workflow/scripts/orthogonality.py: the AOL paper's Figures 1-2
]


def smoke_sized_default(path):
    """config/config.yaml with 1 seed, 1 epoch and a small audit: the same experiment, every
    registered family."""
    config = copy.deepcopy(load_config("config.yaml"))
    config["seeds"] = [0]
    config["variants"][0]["epochs"] = 1
    config["certify"] = {"attack_points": 32, "attack_steps": 5, "attack_restarts": 1}
    config["measure"]["repeats"] = 10
    config["measure"]["warmup"] = 1
    return write_config(path, config)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The smoke-sized default pipeline and its report, once for the tests below."""
    tmp_path = tmp_path_factory.mktemp("default")
    config = smoke_sized_default(tmp_path / "smoke-default.yaml")
    workdir = tmp_path / "work"
    result = run_snakemake(workdir, "--cores", "2", "--configfile", str(config), timeout=1500)
    report = None
    if result.returncode == 0:
        report = run_snakemake(
            workdir, "--configfile", str(config), "--report", REPORT, timeout=300
        )
    return workdir, result, report


def test_default_pipeline_end_to_end(default_run):
    workdir, result, report = default_run
    assert result.returncode == 0, result.stderr[-4000:]
    out = workdir / "results/smoke-default"  # the config's outputs: named after its file

    families = set(aol.families.names())
    seeds = [0]
    for name in ("digits", "cost"):
        for extension in ("csv", "md", "tex", "html"):
            assert (out / f"tables/{name}.{extension}").stat().st_size > 0
    digits = pd.read_csv(out / "tables/digits.csv")
    assert set(digits["family"]) == families and len(digits) == len(families)
    assert (digits["status"] == f"{len(seeds)}/{len(seeds)} completed").all(), digits["status"]
    assert digits["clean_mean"].between(0, 100).all()
    cost = pd.read_csv(out / "tables/cost.csv")
    assert set(cost["family"]) == families and (cost["status"] == "completed").all()
    markdown = (out / "tables/digits.md").read_text()
    assert all(f"| {family} |" in markdown for family in families)
    for figure in FIGURES:
        for extension in ("png", "pdf"):
            assert (out / f"figures/{figure}.{extension}").stat().st_size > 1000

    assert report.returncode == 0, report.stderr[-3000:]
    html = (out / "report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "certified_accuracy_vs_epsilon" in html


@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_report_renders_tables_and_figures_in_a_browser(default_run):
    """The report as a reader sees it: headless Chromium opens it, clicks into a table and a
    figure; the table is styled (collapsed borders, padded cells) and lists its columns, the
    figure is a decoded image."""
    workdir, result, report = default_run
    assert result.returncode == 0 and report.returncode == 0, result.stderr[-3000:]
    with headless_chromium() as browser:
        page = workdir / REPORT
        browser.get(page.as_uri())
        open_entry(browser, "Tables", "digits")
        frame = wait_for(browser, lambda: browser.find_element(By.TAG_NAME, "iframe"))
        browser.switch_to.frame(frame)
        table = wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "table.table"))
        header = [cell.text for cell in table.find_elements(By.TAG_NAME, "th")]
        assert header[:4] == ["Architecture", "Family", "Variant", "Runs"] and "Clean" in header
        assert "Clean pub." not in header and "Source" not in header
        assert table.value_of_css_property("border-collapse") == "collapse"
        cell = table.find_element(By.TAG_NAME, "td")
        assert float(cell.value_of_css_property("padding-left").removesuffix("px")) > 2
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert len(rows) == len(aol.families.names())
        terms = [term.text for term in browser.find_elements(By.CSS_SELECTOR, "dl.columns dt")]
        assert terms == header  # every column explained under the table
        browser.switch_to.default_content()

        browser.get(page.as_uri())  # back to the start page, with its menu
        open_entry(browser, "Figures", "certified_accuracy_vs_epsilon")
        image = wait_for(
            browser,
            lambda: browser.find_element(By.CSS_SELECTOR, "img[src^='data:image/png']"),
        )
        width = wait_for(browser, lambda: browser.execute_script(IMAGE_WIDTH, image) or None)
        assert width > 300 and image.size["width"] > 300


IMAGE_WIDTH = "return arguments[0].complete ? arguments[0].naturalWidth : 0"


def open_entry(browser, category: str, name: str) -> None:
    """Click the category in the report's menu, then the eye icon of the entry `name`."""
    wait_for(browser, lambda: browser.find_element(By.LINK_TEXT, category)).click()
    row = wait_for(
        browser, lambda: browser.find_element(By.XPATH, f"//tr[td[normalize-space()='{name}']]")
    )
    row.find_element(By.CSS_SELECTOR, "a[iconname='eye']").click()


def wait_for(browser, find, seconds: float = 20):
    from selenium.common.exceptions import NoSuchElementException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, seconds, ignored_exceptions=(NoSuchElementException,)).until(
        lambda _: find()
    )
