"""Size and render time of the HTML explorer (``rfgraph.report.to_html``) in headless Chromium.

For each model (built on the meta device): the page's size without and with a
224x224 generated image, the time to write it, and in Debian's headless
Chromium (selenium + chromedriver) the time from navigation start to the end
of the page's script (the ``rf-ready`` performance mark, set once the table,
chart and viewer are built) and to the frame that shows them (``rf-painted``,
set after the next animation frame); the median over ``--repeat`` loads from
disk (after one warm-up load).

    .venv/bin/python benchmarks/explorer.py [--repeat 7] [--models resnet50,densenet121]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import numpy as np
import torch

import rfgraph
from rfgraph.models import load_model
from rfgraph.report import to_html

SHAPES = {"inception_v3": (1, 3, 299, 299)}
FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
    "--disable-component-update --disable-sync --window-size=1440,1000"
).split()


def demo_image(n: int = 224) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n] / n
    img = np.stack([0.4 + 0.5 * y, 0.6 + 0.3 * x, 0.9 - 0.4 * y], axis=-1)
    img[(x - 0.7) ** 2 + (y - 0.3) ** 2 < 0.01] = (1.0, 0.85, 0.3)
    img[y > 0.6 + 0.08 * np.sin(6 * x)] = (0.3, 0.65, 0.3)
    return (img * 255).round().astype(np.uint8)


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rfgraph-bench-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options), profile


def render_times(driver, path: str, repeat: int) -> tuple[float, float]:
    """Median (ready, painted) in ms since navigation start over ``repeat`` loads."""
    ready, paint = [], []
    url = "file://" + os.path.abspath(path) + "#node=layer2&unit=3,11"
    for _ in range(repeat + 1):
        driver.get("about:blank")
        driver.get(url)
        for _ in range(200):
            if driver.execute_script("return performance.getEntriesByName('rf-painted').length > 0"):
                break
            time.sleep(0.01)
        r, p = driver.execute_script(
            """return [performance.getEntriesByName('rf-ready')[0].startTime,
                       performance.getEntriesByName('rf-painted')[0].startTime];"""
        )
        ready.append(r)
        paint.append(p)
    return statistics.median(ready[1:]), statistics.median(paint[1:])  # the first load warms the browser up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--models", default="resnet50,densenet121,convnext_tiny")
    args = parser.parse_args()
    driver, profile = browser()
    tmp = tempfile.mkdtemp(prefix="rfgraph-pages-")
    print(f"{'model':<16}{'nodes':>6}{'page [KB]':>11}{'+image [KB]':>13}{'write [s]':>11}{'ready [ms]':>12}{'painted [ms]':>14}")
    try:
        for name in args.models.split(","):
            shape = SHAPES.get(name, (1, 3, 224, 224))
            analysis = rfgraph.analyze(load_model(f"torchvision:{name}", device="meta"), shape)
            to_html(analysis)  # warm-up: package data, imports
            t0 = time.perf_counter()
            page = to_html(analysis)
            write_s = time.perf_counter() - t0
            with_image = to_html(analysis, image=demo_image(shape[-1]))
            path = os.path.join(tmp, f"{name}.html")
            with open(path, "w", encoding="utf-8") as f:
                f.write(page)
            ready, fcp = render_times(driver, path, args.repeat)
            kb = len(page.encode()) / 1000
            kb_img = len(with_image.encode()) / 1000
            print(f"{name:<16}{len(analysis):>6}{kb:>11.1f}{kb_img:>13.1f}{write_s:>11.3f}{ready:>12.1f}{fcp:>14.1f}")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
