"""The ``GET /`` page in headless Chromium: a person uploads an image and sees the result, or
generates from a seed. Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium``
package; skipped where they are missing.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs chromium and chromium-driver")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from serve_bundles import dummy_bundle, serve_in_thread  # noqa: E402

from serve.app import create_app  # noqa: E402
from serve.settings import ServeSettings  # noqa: E402


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("ui")
    bundles = [
        dummy_bundle(root / "pix", "translate", name="pix"),
        dummy_bundle(root / "gen", "generate", name="gen"),
    ]
    app = create_app(ServeSettings(bundles=[str(b) for b in bundles], backend="dummy"))
    with serve_in_thread(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _result_size(driver: object) -> tuple[int, int]:
    WebDriverWait(driver, 20).until(
        lambda d: d.find_element(By.ID, "result").get_attribute("data-done") == "1"
    )
    img = driver.find_element(By.ID, "result")
    return int(img.get_property("naturalWidth")), int(img.get_property("naturalHeight"))


def test_upload_translates_and_shows_the_result(browser: object, base_url: str, tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    Image.new("RGB", (45, 30), (10, 120, 200)).save(path)
    browser.get(base_url + "/")
    WebDriverWait(browser, 20).until(lambda d: "pix (translate)" in d.find_element(By.ID, "status").text)
    browser.find_element(By.ID, "file").send_keys(str(path))
    browser.find_element(By.ID, "translate").click()
    assert _result_size(browser) == (45, 30)
    assert "done: 45x30 image/png" in browser.find_element(By.ID, "status").text
    # the page shows the bytes the API returned: read them back through the blob URL
    data = browser.execute_async_script(
        "const done = arguments[0];"
        "fetch(document.getElementById('result').src).then(r => r.arrayBuffer())"
        ".then(b => done(Array.from(new Uint8Array(b))));"
    )
    shown = Image.open(io.BytesIO(bytes(data))).convert("RGB")
    assert shown.getpixel((5, 5)) == (245, 135, 55)  # the dummy backend inverts colours


def test_generate_from_seed_and_show_errors(browser: object, base_url: str) -> None:
    browser.get(base_url + "/")
    WebDriverWait(browser, 20).until(lambda d: "gen (generate)" in d.find_element(By.ID, "status").text)
    seed = browser.find_element(By.ID, "seed")
    seed.clear()
    seed.send_keys("42")
    browser.find_element(By.ID, "generate").click()
    assert _result_size(browser) == (32, 32)
    count = browser.find_element(By.ID, "count")
    count.clear()
    count.send_keys("999")  # over the server's max_count: the page shows the JSON error
    browser.find_element(By.ID, "generate").click()
    WebDriverWait(browser, 20).until(lambda d: "count" in d.find_element(By.ID, "status").text)
    assert browser.find_element(By.ID, "status").get_attribute("class") == "error"
