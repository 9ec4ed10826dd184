"""The ``/ui`` page in a real headless browser (Debian's chromium + chromedriver, driven by selenium)
against a real ``lmrec serve`` process: load, search, like (without and with the API key), dislike,
similar items, add an item and find it, then a screenshot.

Not skipped when the browser is missing: ``scripts/bootstrap`` installs ``chromium`` and
``chromium-driver`` (apt-get), and this test fails with that hint otherwise. ``LMREC_UI_SCREENSHOT=PATH``
also writes the final screenshot there (how ``docs/ui.png`` is made).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from selenium import webdriver  # the dev extra
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from lmrec.data.dataset import Dataset
from lmrec.models import create_model
from tests.serving.conftest import API_KEY
from tests.serving.procs import ServerProcess

WAIT_S = 30
NEW_TITLE = "Zyzzyva Quantum Detective (2031)"


def _browser_paths() -> tuple[str, str]:
    browser = next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail(
            "the /ui browser test needs chromium and chromedriver: scripts/bootstrap installs them "
            "(apt-get install chromium chromium-driver)"
        )
    return browser, driver


@pytest.fixture(scope="module")
def content_artifact(
    tmp_path_factory: pytest.TempPathFactory, mls_small: tuple[Dataset, pl.DataFrame]
) -> Path:
    """A real content model (the model-free hashing encoder: no download, fit in well under a second)
    with the movies' titles as its catalogue."""
    data, movies = mls_small
    path = tmp_path_factory.mktemp("ui") / "model"
    create_model("content", encoder="hashing").fit(data).save(path)
    movies.write_parquet(path / "catalog.parquet")
    return path


@pytest.fixture()
def browser() -> Iterator[Any]:
    binary, driver_path = _browser_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1280,1000")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _list_id(d: Any) -> str:
    return d.find_element(By.ID, "recs").get_attribute("data-request-id") or ""


def _new_list(d: Any, old: str) -> str:
    """Wait for a freshly drawn recommendation list (its request id changes) and return its id."""
    WebDriverWait(d, WAIT_S).until(lambda d: _list_id(d) not in ("", old))
    return _list_id(d)


def _items(d: Any) -> list[tuple[str, str]]:
    return [
        (li.get_attribute("data-item-id"), li.find_element(By.CSS_SELECTOR, ".title").text)
        for li in d.find_elements(By.CSS_SELECTOR, "#recs li.rec")
    ]


def _status(d: Any) -> str:
    return str(d.find_element(By.ID, "status").text)


def _search(d: Any, text: str) -> str:
    old = _list_id(d)
    box = d.find_element(By.ID, "search")
    box.clear()
    box.send_keys(text)
    d.find_element(By.ID, "go").click()
    return _new_list(d, old)


def _events_logged(url: str) -> int:
    return int(httpx.get(url + "/health", timeout=10).json()["events_logged"])


def test_ui_in_a_headless_browser(browser: Any, content_artifact: Path, tmp_path: Path) -> None:
    d = browser
    started = time.perf_counter()
    with ServerProcess(
        content_artifact,
        tmp_path / "events.db",
        api_key=API_KEY,
        use_cli=True,
        log_path=tmp_path / "server.log",
    ) as srv:
        # 1) the page loads with the first user's list: titles, scores and "because" evidence
        d.get(srv.url + "/ui")
        first = _new_list(d, "")
        assert len(_items(d)) == 10
        assert all(title and not title.startswith("item ") for _, title in _items(d))
        assert len(d.find_elements(By.CSS_SELECTOR, "#recs .score")) == 10
        assert "because you liked" in d.find_element(By.CSS_SELECTOR, "#recs .because").text
        assert d.find_element(By.ID, "key-box").is_displayed()  # the server has a key

        # 2) a new visitor: nothing known, so the most popular items (flagged)
        Select(d.find_element(By.ID, "user")).select_by_visible_text("new visitor (no history yet)")
        _new_list(d, first)
        assert "most popular" in _status(d)

        # 3) a free-text search
        _search(d, "toy story")
        found = _items(d)
        assert "Toy Story" in found[0][1], found
        assert "matching “toy story”" in _status(d)

        # 4) like without the key: refused (401), nothing written, the list stays
        before = _list_id(d)
        d.find_element(By.CSS_SELECTOR, "#recs li.rec .like").click()
        WebDriverWait(d, WAIT_S).until(lambda d: "API key" in _status(d))
        assert _list_id(d) == before and _events_logged(srv.url) == 0

        # 5) with the key: the liked item joins the history and leaves the list
        d.find_element(By.ID, "api-key").send_keys(API_KEY)
        liked_id, liked_title = found[0]
        d.find_element(By.CSS_SELECTOR, "#recs li.rec .like").click()
        after_like = _new_list(d, before)
        ids = [i for i, _ in _items(d)]
        assert liked_id not in ids and len(ids) == 10
        assert ids != [i for i, _ in found]
        assert f"Liked “{liked_title}”" in _status(d)
        assert _events_logged(srv.url) == 1
        # the visitor now has a history, so explanations point at the liked item
        assert liked_title in d.find_element(By.CSS_SELECTOR, "#recs .because").text

        # 6) dislike: hidden from this user
        disliked_id = _items(d)[0][0]
        d.find_element(By.CSS_SELECTOR, "#recs li.rec .dislike").click()
        _new_list(d, after_like)
        assert disliked_id not in [i for i, _ in _items(d)]
        assert _events_logged(srv.url) == 2
        assert len(d.find_elements(By.CSS_SELECTOR, "#liked li")) == 2

        # 7) similar items on click
        _, clicked_title = _items(d)[0]
        d.find_element(By.CSS_SELECTOR, "#recs li.rec .title").click()
        WebDriverWait(d, WAIT_S).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#similar li.sim")) == 8
        )
        assert clicked_title in d.find_element(By.ID, "similar-of").text
        similar_titles = [e.text for e in d.find_elements(By.CSS_SELECTOR, "#similar .title")]
        assert clicked_title not in similar_titles and all(similar_titles)

        # 8) add an item: recommendable at once, found by a search for its words
        d.find_element(By.ID, "new-title").send_keys(NEW_TITLE)
        d.find_element(By.ID, "new-text").send_keys("a detective who solves crimes with quantum physics")
        d.find_element(By.ID, "add").click()
        WebDriverWait(d, WAIT_S).until(
            lambda d: "recommendable now" in d.find_element(By.ID, "add-status").text
        )
        WebDriverWait(d, WAIT_S).until(lambda d: NEW_TITLE in d.find_element(By.ID, "similar-of").text)
        _search(d, "zyzzyva quantum detective")
        titles = [t for _, t in _items(d)]
        assert NEW_TITLE in titles, titles
        print(f"the new item ranks {titles.index(NEW_TITLE) + 1} for a search of its words")

        shot = tmp_path / "ui.png"
        assert d.save_screenshot(str(shot))
        png = shot.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a page, not a blank frame
        if os.environ.get("LMREC_UI_SCREENSHOT"):
            Path(os.environ["LMREC_UI_SCREENSHOT"]).write_bytes(png)

        # no script errors and no blocked (Content-Security-Policy) loads; the one failed request
        # is the 401 of step 4
        severe = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert all("/feedback" in m and "401" in m for m in severe), severe
        assert len(severe) == 1, severe
    print(f"browser test: {time.perf_counter() - started:.1f} s")


def test_ui_shows_posters_and_adds_an_item_by_its_picture(
    browser: Any, data_home: Path, tmp_path: Path
) -> None:
    """ml-100k-posters served by a text + picture content model (model-free encoders): every listed
    movie shows its poster, and an item added with only a picture is recommendable at once."""
    from lmrec.data.loaders import load_dataset
    from lmrec.experiment import save_catalog

    data = load_dataset("ml-100k-posters", data_home, download=False)
    art = tmp_path / "model"
    model = create_model(
        "content", encoder="hashing", modalities=("text", "image"), image_encoder="histogram"
    )
    model.fit(data).save(art)
    save_catalog(data, art)
    poster = next(
        p for p in sorted((data_home / "ml-100k-posters" / "images").iterdir()) if p.suffix == ".jpg"
    )
    d = browser
    with ServerProcess(
        art, tmp_path / "events.db", api_key=API_KEY, use_cli=True, log_path=tmp_path / "s.log"
    ) as srv:
        d.get(srv.url + "/ui")
        _new_list(d, "")
        WebDriverWait(d, WAIT_S).until(
            lambda d: (
                len(d.find_elements(By.CSS_SELECTOR, "#recs img.poster")) == 10
                and all(
                    d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
                    for img in d.find_elements(By.CSS_SELECTOR, "#recs img.poster")
                )
            )
        )
        d.find_element(By.ID, "api-key").send_keys(API_KEY)
        d.find_element(By.ID, "new-id").clear()
        d.find_element(By.ID, "new-id").send_keys("99001")
        d.find_element(By.ID, "new-image").send_keys(str(poster))
        d.find_element(By.ID, "add").click()
        WebDriverWait(d, WAIT_S).until(
            lambda d: "recommendable now" in d.find_element(By.ID, "add-status").text
        )
        got = httpx.get(srv.url + "/items/99001/image", timeout=10)
        assert got.status_code == 200 and got.content == poster.read_bytes()
        # its similar items are the movies whose posters look like it: the poster it copies first
        sim = httpx.get(srv.url + "/items/99001/similar?k=3", timeout=10).json()["items"]
        assert str(sim[0]["item_id"]) == poster.stem, sim
        if os.environ.get("LMREC_UI_POSTERS_SCREENSHOT"):
            d.save_screenshot(os.environ["LMREC_UI_POSTERS_SCREENSHOT"])
        severe = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
