"""Draw the README's pictures of ``fxtract.viz`` into docs/images/ (random weights, offline).

    PYTHONPATH=src python examples/viz_gallery.py

Needs torchvision, timm, matplotlib and pillow; the graph page's screenshot also needs
selenium and chromium (``make browser``), else it is skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TIMM_FUSED_ATTN", "0")  # an explicit softmax node: attention maps to draw
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch
from PIL import Image, ImageDraw

import fxtract
from fxtract import viz
from fxtract._data import image_transform

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def scene(size: int = 224, seed: int = 0, tint: tuple[int, int, int] = (70, 120, 200)) -> Image.Image:
    """A synthetic photo-like image: a sky gradient, a sun, hills, a house."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, size)[:, None, None]
    sky = (np.array(tint) * (1 - 0.5 * y) + np.array([230, 230, 240]) * 0.5 * y) * np.ones((size, size, 3))
    image = Image.fromarray(sky.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    cx, cy = rng.integers(40, size - 40), rng.integers(20, 70)
    draw.ellipse((cx - 22, cy - 22, cx + 22, cy + 22), fill=(250, 210, 60))
    draw.polygon([(0, 150), (70, 110), (150, 145), (size, 105), (size, size), (0, size)], fill=(70, 140, 60))
    draw.rectangle((120, 130, 180, 185), fill=(180, 70, 50))
    draw.polygon([(112, 132), (150, 100), (188, 132)], fill=(90, 50, 40))
    draw.rectangle((140, 155, 158, 185), fill=(60, 40, 30))
    return image


def main() -> None:
    import timm
    import torchvision

    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    picture = scene()
    x = image_transform()(picture).unsqueeze(0)

    resnet = torchvision.models.resnet18().eval()
    viz.feature_maps(resnet, x, nodes=["layer1.0.relu_1"], image=picture, max_channels=16, tile_px=88)[
        "layer1.0.relu_1"
    ].save(OUT / "viz_maps_resnet18_layer1.png")

    vit = timm.create_model("vit_tiny_patch16_224").eval()
    heads = viz.feature_maps(vit, x, nodes=["blocks.11.attn.softmax"], image=picture, tile_px=110)
    heads["blocks.11.attn.softmax"].save(OUT / "viz_heads_vit_tiny.png")
    tokens = viz.feature_maps(vit, x, nodes=["blocks.11.add_1"], image=picture, tile_px=80)
    tokens["blocks.11.add_1"].save(OUT / "viz_tokens_vit_tiny.png")

    inputs = [image_transform()(scene(seed=s)).unsqueeze(0) for s in range(4)]
    report = viz.activation_stats(
        resnet, inputs, nodes=["conv1", "layer1", "layer2", "layer3", "layer4.1.relu", "fc"], bins=48
    )
    print(report.table())
    report.histograms(out=OUT / "viz_stats_resnet18.png", columns=3, tile_px=(240, 130))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        tints = {"dawn": (220, 120, 90), "noon": (70, 120, 220), "dusk": (120, 60, 140)}
        for k, (name, tint) in enumerate(tints.items()):
            (folder / name).mkdir(parents=True)
            for i in range(40):
                scene(
                    seed=100 * k + i,
                    tint=tuple(int(c + np.random.default_rng(i).integers(-25, 25)) for c in tint),
                ).save(folder / name / f"{i}.png")
        store = fxtract.extract(
            resnet,
            str(folder),
            Path(tmp) / "features",
            nodes=["layer4"],
            pool="avg",
            batch_size=20,
            progress=False,
        )
        viz.embedding_scatter(store, node="layer4", size=(640, 480), out=OUT / "viz_embed_resnet18.png")

    graph = viz.model_graph(resnet, torch.zeros(1, 3, 224, 224), nodes=["layer3.*.conv2", "fc"])
    page = Path(tempfile.mkdtemp()) / "graph.html"
    page.write_text(graph.to_html(depth=2))
    _screenshot(page, OUT / "viz_graph_resnet18.png", search="layer3.1.conv2")
    for path in sorted(OUT.glob("viz_*.png")):
        if "graph" not in path.name:  # 256 colours: a third of the size, the same look
            Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(
                path, optimize=True
            )
        print(
            f"{path.relative_to(OUT.parents[1])}: {path.stat().st_size / 1e3:.0f} kB, {Image.open(path).size}"
        )


def _screenshot(page: Path, out: Path, search: str) -> None:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
    except ImportError:
        print("selenium is not installed: no screenshot of the graph page")
        return
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        print("chromium is not installed (make browser): no screenshot of the graph page")
        return
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1100,640",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.get(page.as_uri())
            box = driver.find_element(By.ID, "q")
            box.send_keys(search)
            box.send_keys(Keys.ENTER)
            png = driver.get_screenshot_as_png()
        finally:
            driver.quit()
    import io

    Image.open(io.BytesIO(png)).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(
        out, optimize=True
    )


if __name__ == "__main__":
    main()
