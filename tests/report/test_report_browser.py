"""report.html as a person sees it: headless Chromium renders it, the plots have a size, nothing is
fetched from the network, nothing is logged to the console.

Needs Debian's chromium + chromium-driver (`make test` installs them when missing and running as root);
skipped, with the reason, only when no chromium can be found at all.
"""

from __future__ import annotations

import json
import shutil

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


@pytest.fixture(scope="module")
def browser():
    binary = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if binary is None:
        pytest.skip("no chromium found (looked for " + ", ".join(BROWSERS) + "): install Debian's chromium and "
                    "chromium-driver (`make test` does when running as root)")
    driver_path = shutil.which("chromedriver")
    assert driver_path, f"chromium is installed ({binary}) but chromedriver is not: apt-get install chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,2000", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


def load(browser, path) -> tuple[str, list[str], list[dict]]:
    """Open a file; return its URL, every URL the page requested, and the console errors/warnings."""
    url = path.resolve().as_uri()
    browser.get_log("performance"), browser.get_log("browser")  # start both logs empty
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"
    requests = [json.loads(e["message"])["message"] for e in browser.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    return url, urls, [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def test_the_harness_sees_requests_and_console_errors(browser, tmp_path):
    """The negative control: a page that fetches an image and logs an error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<img src="http://example.invalid/x.png"><script>console.error("boom")</script>')
    url, urls, errors = load(browser, bad)
    assert "http://example.invalid/x.png" in urls and any("boom" in e["message"] for e in errors)


def test_report_renders_offline_with_visible_plots_and_no_errors(browser, report_dir):
    from selenium.webdriver.common.by import By

    url, urls, errors = load(browser, report_dir / "report.html")
    assert browser.title == "llmprep prepare report"
    assert urls == [url]  # the page itself, and nothing else
    assert errors == []

    plots = browser.find_elements(By.CSS_SELECTOR, "figure svg")
    assert len(plots) == 2
    for svg in plots:
        assert svg.size["width"] > 300 and svg.size["height"] > 100
        bars = svg.find_elements(By.CSS_SELECTOR, "path")
        assert any(p.size["height"] > 5 for p in bars)  # the histogram itself, not only axes

    assert browser.find_elements(By.CSS_SELECTOR, "#samples mark.t")[0].is_displayed()
    findings = browser.find_element(By.ID, "findings").text
    assert "duplicates" in findings and "leakage" in findings
