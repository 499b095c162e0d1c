"""The HTML report as a reader sees it: the report of the tiny run that the end-to-end test checks (conftest's tiny_run,
made once per session) opened in headless Chromium through Playwright at 1400×900. Fails on a console error, a
landing page without the findings table, a figure shown at less than half its native width, or an interactive view
that renders empty. Under CI=true it always runs (Chromium installed from the distribution's packages when
missing, as the SLURM tests install theirs); elsewhere it skips with one line naming what is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest


# the first test builds the tiny run's report (a few minutes on two cores) inside its own time limit
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

VIEWPORT = {"width": 1400, "height": 900}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def chromium_executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _install_chromium() -> None:
    """Debian's chromium package: Playwright's own browser download cannot be fetched on CI."""
    if not shutil.which("apt-get"):
        pytest.fail("CI=true: Chromium is missing and there is no apt-get to install it")
    for command in (["apt-get", "install", "-y", "--no-install-recommends", "chromium"], ["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if command[1] == "install" and done.returncode == 0:
            return
    pytest.fail(f"CI=true: apt-get install chromium failed: {done.stderr[-2000:]}")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if in_ci():
            pytest.fail("CI=true: the playwright package is missing (pip install -e '.[test]')")
        pytest.skip("the report browser test needs the playwright package (pip install -e '.[test]')")
    executable = chromium_executable()
    if executable is None:
        if not in_ci():
            pytest.skip("the report browser test needs Chromium on PATH (Debian: apt-get install chromium)")
        _install_chromium()
        executable = chromium_executable()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def report(browser, request) -> Path:
    """The tiny run's report, or the report that MATPROBE_REPORT_HTML names (e.g. the demo's results/report.html)."""
    given = os.environ.get("MATPROBE_REPORT_HTML")
    if given:
        if not Path(given).is_file():
            pytest.fail(f"MATPROBE_REPORT_HTML={given}: no such report")
        return Path(given)
    return request.getfixturevalue("tiny_run").workdir / "results" / "report.html"


def _open(browser, report: Path):
    page = browser.new_page(viewport=VIEWPORT)
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    # offline: the report and its views must not fetch anything (clusters and air-gapped nodes)
    page.route(re.compile(r"^https?://"), lambda route: (errors.append(f"fetched {route.request.url}"), route.abort()))
    page.goto(report.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, errors


def test_landing_page_states_the_findings_first(browser, report):
    page, errors = _open(browser, report)
    findings = page.locator("#matprobe-findings")
    findings.wait_for(timeout=10_000)
    rows = findings.locator("table.findings-table tbody tr")
    if os.environ.get("MATPROBE_REPORT_HTML"):
        assert rows.count() >= 1
    else:
        assert rows.count() == 2  # omit-Fe with CGCNN and SchNet; controls are a column, not rows
    header = findings.locator("table.findings-table thead").inner_text()
    assert "held-out / control" in header and "control's held-out MAE" in header
    assert "held-out error" in findings.inner_text()
    assert "Configuration: {" not in page.content()  # no raw config dict
    box = findings.bounding_box()
    assert box is not None and box["y"] < VIEWPORT["height"] / 2  # the answer is above the fold
    page.wait_for_timeout(1500)  # the sidebar slides in after load
    box, sidebar = findings.bounding_box(), page.locator("nav").first.bounding_box()
    assert box["x"] >= sidebar["x"] + sidebar["width"], (box, sidebar)  # not under the sidebar
    assert box["x"] + box["width"] <= VIEWPORT["width"], box
    assert not errors, errors
    page.close()


def _categories(page) -> dict[str, dict[str, list[str]]]:
    """The report's own index: category -> subcategory -> result paths."""
    return page.evaluate("categories")


def _check_image(page, path: str, too_small: list) -> None:
    image = page.locator("img[src^='data:image/png']").last
    image.wait_for(timeout=10_000)
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=image.element_handle(), timeout=10_000)
    natural, shown = image.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().width]")
    if shown < natural / 2:
        too_small.append(f"{path}: shown {shown:.0f} px of its {natural} px")


def _check_html(page, path: str) -> int:
    """An HTML result: a table page has rows; an interactive page draws every view its menu offers. Returns the views."""
    frame = page.locator("iframe").last.element_handle().content_frame()
    frame.wait_for_load_state("load")
    if not frame.locator("#picker").count():
        assert frame.locator("table tbody tr").count() > 0, f"{path}: an HTML result with neither a table nor views"
        return 0
    options = frame.locator("#picker option").evaluate_all("options => options.map(o => o.value)")
    assert options, f"{path}: an interactive page without views"
    for option in options:
        frame.select_option("#picker", option)
        # the viewer counts the marks it drew (cells, points, curves, surface quads): an empty view has none
        frame.wait_for_function("name => document.getElementById('plot').dataset.view === name", arg=option, timeout=10_000)
        marks = int(frame.evaluate("() => document.getElementById('plot').dataset.marks"))
        assert marks > 0, f"{path}: view {option!r} draws nothing"
        drawn = frame.locator("#plot svg .mark").count()
        assert drawn > 0, f"{path}: view {option!r} has no visible mark"
        box = frame.locator("#plot").bounding_box()
        assert box["width"] > 400 and box["height"] > 300, f"{path}: view {option!r} is drawn at {box}"
    return len(options)


def test_every_category_figure_and_interactive_view_is_readable(browser, report):
    page, errors = _open(browser, report)
    categories = _categories(page)
    assert {"1 Headline", "2 Training", "3 Loss landscapes", "4 Attribution", "6 Interactive"} <= set(categories)
    images, views, too_small = 0, 0, []
    for category, subcategories in sorted(categories.items()):
        page.evaluate("app.setView({navbarMode: 'menu'})")  # back to the top menu
        page.locator("a").filter(has_text=category).first.click()  # the menu entry, as a reader clicks it
        # overviews first: a category with run folders lists "All runs" before them
        names = [name for name in subcategories if name != "Other"]
        if len(names) > 1 and "All runs" in names:
            menu = page.locator("a").filter(has_text="All runs").first.bounding_box()
            first_run = page.locator("a").filter(has_text=[n for n in sorted(names) if n != "All runs"][0]).first.bounding_box()
            assert menu["y"] < first_run["y"], f"{category}: the overviews are not listed first"
        for subcategory, paths in subcategories.items():
            if subcategory != "Other" or len(subcategories) > 1:
                page.evaluate("category => app.showCategory(category)", category)  # what the breadcrumb does
                page.get_by_text(subcategory, exact=True).first.click()
            eyes = page.locator("a[iconname=eye]")
            try:  # React renders the new list after the call returns
                page.wait_for_function("n => document.querySelectorAll('a[iconname=eye]').length === n", arg=len(paths), timeout=10_000)
            except Exception:
                pytest.fail(f"{category} / {subcategory}: {eyes.count()} results listed, {len(paths)} expected")
            for index in range(eyes.count()):
                eyes.nth(index).click()
                path = page.evaluate("app.state.resultPath")
                page.wait_for_timeout(200)
                if path.endswith(".png"):
                    _check_image(page, path, too_small)
                    images += 1
                elif path.endswith(".html"):
                    views += _check_html(page, path)
    # the tiny run's views: 4 landscapes and 4 parity plots; a knob view only where some knob passes its checks (the
    # tiny run's 400-step knob models rarely have one), so at least 8
    assert images >= 20 and views >= 8, (images, views)
    assert not too_small, too_small
    assert not errors, errors
    page.close()


def test_report_stays_small(report):
    assert report.stat().st_size < 40e6
