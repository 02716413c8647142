"""The graph page in a real headless browser (Debian's chromium, driven by selenium).

``make browser`` installs chromium when it is missing (``make test`` depends on it). When
chromium cannot start these tests fail with the reason: they never skip silently.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from fxtract.viz import model_graph

CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
def browser(tmp_path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.fail(f"selenium is not installed ({e}): pip install selenium (it is in the 'test' extra).")
    chromium = os.environ.get("FXTRACT_CHROMIUM") or _find("chromium", "chromium-browser", "google-chrome")
    driver_path = os.environ.get("FXTRACT_CHROMEDRIVER") or _find("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail(
            "chromium and chromedriver are needed for the graph page tests; install them with "
            "`make browser` (apt-get install -y chromium chromium-driver)."
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as e:
        pytest.fail(f"could not start headless chromium ({chromium}, {driver_path}): {type(e).__name__}: {e}")
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")).astype(np.int16)


def _assert_not_blank(shot: np.ndarray) -> None:
    dark = (shot.sum(axis=2) < 3 * 160).mean()  # text pixels
    colours = len(np.unique(shot.reshape(-1, 3)[::7], axis=0))
    assert dark > 0.002 and colours > 20, f"the page looks blank: {dark:.4f} dark pixels, {colours} colours"


def _changed(a: np.ndarray, b: np.ndarray) -> float:
    return float((np.abs(a - b).sum(axis=2) > 30).mean())


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _open(driver, graph, tmp_path: Path, depth: int) -> None:
    page = tmp_path / "graph.html"
    page.write_text(graph.to_html(depth=depth))
    driver.get(page.as_uri())


def _rows(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.row')).map(r => r.dataset.name)"
    )


def test_graph_page_expands_on_click_and_searches(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    graph = model_graph(
        torchvision.models.resnet18(), torch.zeros(1, 3, 32, 32), nodes=["layer3.1.conv2", "fc"]
    )
    _open(browser, graph, tmp_path, depth=1)
    top = [i.name for i in graph.items if not i.parent]
    assert _rows(browser) == top  # collapsed to depth 1: only the top level is in the DOM
    before = _screenshot(browser)
    _assert_not_blank(before)

    browser.find_element(By.CSS_SELECTOR, '.row[data-name="layer1"]').click()
    rows = _rows(browser)
    kids = graph.children["layer1"]
    assert rows[rows.index("layer1") + 1 : rows.index("layer1") + 1 + len(kids)] == kids
    assert "layer1.0.conv1" not in rows  # grandchildren stay out of the DOM until expanded
    after_click = _screenshot(browser)
    _assert_not_blank(after_click)
    assert _changed(before, after_click) > 0.01
    details = browser.find_element(By.ID, "details").text
    assert "layer1" in details and "Sequential" in details

    box = browser.find_element(By.ID, "q")
    box.send_keys("layer3.1.conv2")
    box.send_keys(Keys.ENTER)
    hit = browser.find_element(By.CSS_SELECTOR, ".row.hit")
    assert hit.get_attribute("data-name") == "layer3.1.conv2"
    assert "sel" in hit.get_attribute("class").split()  # a selected node is highlighted
    assert {"layer3", "layer3.1"} <= set(_rows(browser))  # its modules were expanded to reveal it
    shape = (
        "[" + ", ".join(map(str, next(i for i in graph.items if i.name == "layer3.1.conv2").shapes[0])) + "]"
    )
    assert shape in hit.text  # shapes from describe annotate the row
    after_search = _screenshot(browser)
    assert _changed(after_click, after_search) > 0.01

    browser.find_element(By.CSS_SELECTOR, '.row[data-name="layer1"]').click()  # collapse again
    assert "layer1.0" not in _rows(browser)
    assert not _errors(browser)


def _big_model(name: str):
    if name == "bert-24":  # a 24-layer transformer, tiny widths (torch.export names its ops)
        import transformers

        config = transformers.BertConfig(
            num_hidden_layers=24, hidden_size=64, num_attention_heads=2, intermediate_size=128, vocab_size=100
        )
        model = transformers.BertModel(config).eval()
        return model, {"input_ids": torch.zeros(1, 16, dtype=torch.long)}
    with torch.device("meta"):  # vit_l_16 has 304M parameters: no memory for them
        model = torchvision.models.get_model(name)
    return model, torch.zeros(1, 3, 224, 224, device="meta")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maxvit_t", "vit_l_16", "bert-24"])
def test_graph_page_stays_responsive_on_big_models(browser, tmp_path, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    model, example = _big_model(name)
    graph = model_graph(model, example, nodes="re:.*attn.*|.*attention.*")
    assert len(graph) > 300
    assert sum(bool(i.shapes) for i in graph.items) > 100  # annotated, even where FX shape inference fails
    start = time.perf_counter()
    _open(browser, graph, tmp_path, depth=2)
    loaded = time.perf_counter() - start
    shown = len(_rows(browser))
    assert shown < len(graph) / 3, "rows must be built lazily, not all at once"
    before = _screenshot(browser)
    _assert_not_blank(before)
    last = [i for i in graph.items if graph.children.get(i.name)][-1].name
    start = time.perf_counter()
    box = browser.find_element(By.ID, "q")
    box.send_keys(last)
    box.send_keys(Keys.ENTER)
    assert browser.find_element(By.CSS_SELECTOR, ".row.hit").get_attribute("data-name") == last
    searched = time.perf_counter() - start
    assert _changed(before, _screenshot(browser)) > 0.01
    assert not _errors(browser)
    print(
        f"{name}: {len(graph)} nodes, page {len(graph.to_html()) / 1e3:.0f} kB, load {loaded:.2f} s, "
        f"{shown} rows at depth 2, search+reveal {searched:.2f} s"
    )
