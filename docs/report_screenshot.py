"""Screenshot of a Snakemake HTML report for the README: its landing page (the findings it opens with), or one
figure with its caption.

    pip install -e '.[docs]'            # playwright; the browser is a local Chromium (Debian: apt install chromium)
    python docs/report_screenshot.py results/report.html landing - docs/report-headline.png
    python docs/report_screenshot.py results/report.html "4 Attribution" periodic_tables.png out.png \
        --subcategory "formation_energy_per_atom omit-O cgcnn seed0"

The report is a single-page app: the script opens it headless at 1400×900 and, for a figure, picks the category,
shows the figure and opens its information view (caption, rule, job parameters), and saves a PNG.
"""

import argparse
import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def screenshot_report_entry(report: Path, category: str, file_suffix: str, out: Path, subcategory: str | None = None,
                            browser: str | None = None, width: int = 1400, height: int = 900) -> None:
    executable = browser or shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses to start as root (containers, CI) otherwise.
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                                                                                 "--disable-background-networking", "--disable-sync"])
        page = chromium.new_page(viewport={"width": width, "height": height})
        page.goto(report.resolve().as_uri())
        if category == "landing":
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(3000)  # the sidebar slides in after load
            _save(page, out)
            chromium.close()
            return
        # the menu's entries (the landing page names the categories too)
        page.locator("nav").get_by_text(category, exact=True).first.click()
        if subcategory:
            page.locator("nav").get_by_text(subcategory, exact=True).first.click()
        # a row shows the result's label where the workflow gives one, else its file name
        shown_as = page.evaluate("""([category, subcategory, suffix]) => {
            const groups = subcategory ? [categories[category][subcategory]] : Object.values(categories[category]);
            const path = groups.flat().find(p => p.endsWith(suffix));
            if (!path) return null;
            const labels = results[path].labels;
            return labels && Object.keys(labels).length ? String(Object.values(labels)[0]) : path.split("/").pop();
        }""", [category, subcategory, file_suffix])
        if shown_as is None:
            raise SystemExit(f"report_screenshot: no result ending in {file_suffix} under {category}")
        row = page.locator("tr").filter(has_text=shown_as).first
        row.wait_for(timeout=10_000)
        # The eye shows the figure on the right; the information view then adds the caption beside it.
        row.locator("a[iconname=eye]").click()
        page.wait_for_timeout(500)
        row.locator("a[iconname=information-circle]").click()  # locators re-query, so the re-rendered row is found
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(1000)  # the figure fades in after the panel opens
        _save(page, out)
        chromium.close()


def _save(page, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp.png")
    page.screenshot(path=str(tmp))
    tmp.replace(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("category", help='the category as the report names it, e.g. "1 Headline"; "landing": the landing page')
    parser.add_argument("file_suffix", help="the end of the file's path, e.g. headline.png (ignored for the landing page)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--subcategory", help="for per-model figures, e.g. \"formation_energy_per_atom omit-O cgcnn seed0\"")
    parser.add_argument("--browser", help="Chromium executable (default: chromium on PATH)")
    args = parser.parse_args(argv)
    if not args.report.is_file():
        print(f"report_screenshot: {args.report}: no such report (run snakemake --report first)", file=sys.stderr)
        return 1
    screenshot_report_entry(args.report, args.category, args.file_suffix, args.out, args.subcategory, args.browser)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
