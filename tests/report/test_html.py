"""The HTML explorer, driven in headless Chromium (Debian's ``chromium`` + ``chromium-driver``, via selenium).

Every page is loaded from disk (``file://``) and every test fails on any
console error.  Boxes shown by the page are compared with
`rfgraph.queries.unit_box` on ResNet-50, a transposed-conv model, a 1-D and a
3-D model; the page's periodic-affine evaluator is compared with
`PAMap.__call__` on random maps.  Without a browser these tests are skipped,
except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import html as htmlmod
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import rfgraph
from rfgraph.algebra import PAMap
from rfgraph.queries import unit_box
from rfgraph.report import explorer, to_html, write_html
from rfgraph.report.html import map_json, page_data

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("RFGRAPH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RFGRAPH_CHROMEDRIVER", "/usr/bin/chromedriver")
HEADLESS_FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
    "--disable-component-update --disable-sync --window-size=1440,1100 --hide-scrollbars"
).split()


# -- models ---------------------------------------------------------------------------------------


def demo_image(h: int = 224, w: int = 224) -> np.ndarray:
    """A generated RGB picture (sky, sun, hills, a checkered field): no data set needed."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = np.zeros((h, w, 3))
    img[:] = np.stack([0.45 + 0.3 * y, 0.65 + 0.2 * y, 0.95 - 0.1 * y], axis=-1)  # sky
    sun = (x - 0.72) ** 2 + (y - 0.25) ** 2 < 0.012
    img[sun] = (1.0, 0.85, 0.3)
    hill = y > 0.58 + 0.08 * np.sin(6 * x)
    check = ((np.floor(x * 12) + np.floor(y * 12)) % 2).astype(bool)
    img[hill] = np.where(check[hill, None], (0.25, 0.6, 0.25), (0.35, 0.72, 0.3))
    house = (abs(x - 0.3) < 0.1) & (y > 0.45) & (y < 0.65)
    img[house] = (0.75, 0.3, 0.25)
    roof = (y > 0.33) & (y <= 0.45) & (abs(x - 0.3) < (y - 0.33) * 1.1)
    img[roof] = (0.45, 0.2, 0.15)
    return (img * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def resnet50():
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.resnet50(weights=None)
    return rfgraph.analyze(model, (1, 3, 224, 224))


class Merge(nn.Module):
    """Two paths merged by ``add``: a 3x3 conv and a 2x2 average pool, both stride 2 (misaligned by 1/2)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.pool = nn.AvgPool2d(2, 2)
        self.expand = nn.Conv2d(1, 2, 1)
        self.head = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        return self.head(self.conv(x) + self.expand(self.pool(x)))


def transposed():
    """Stride-2 conv, a stride-2 transposed conv (kernel 4: period-2 window maps), a 3x3 conv; non-square input."""
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1),
        nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1),
        nn.Conv2d(2, 1, 3, padding=1),
    )
    return rfgraph.analyze(net, (1, 1, 12, 20))


def one_d():
    net = nn.Sequential(nn.Conv1d(1, 2, 5, stride=2, padding=2), nn.ReLU(), nn.Conv1d(2, 2, 3, dilation=3), nn.MaxPool1d(2))
    return rfgraph.analyze(net, (1, 1, 64))


def three_d():
    net = nn.Sequential(nn.Conv3d(1, 2, 3, stride=(1, 2, 2), padding=1), nn.Conv3d(2, 1, (3, 1, 5), stride=2))
    return rfgraph.analyze(net, (1, 1, 8, 16, 20))


# -- the browser ----------------------------------------------------------------------------------


def require_browser(chromium: str = CHROMIUM, chromedriver: str = CHROMEDRIVER) -> None:
    """Skip when selenium or the browser is missing; under ``CI=true`` fail instead."""
    problem = None
    try:
        import selenium  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the machine
        problem = f"selenium is not installed ({exc})"
    if problem is None and not (os.path.exists(chromium) and os.path.exists(chromedriver)):
        problem = f"no {chromium} / {chromedriver} (apt-get install chromium chromium-driver)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests cannot run under CI=true: {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rfgraph-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in HEADLESS_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_console_errors(request):
    """Fail a test on any console message of level SEVERE (errors, failed loads)."""
    if "browser" not in request.fixturenames:
        yield
        return
    driver = request.getfixturevalue("browser")
    driver.get_log("browser")  # drop what earlier tests left
    yield
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"


def load(driver, path: Path, fragment: str = ""):
    """Open ``path`` from disk and wait until the page has drawn its first selection."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get(path.resolve().as_uri() + fragment)
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.documentElement.dataset.ready === '1'"))
    return driver


def text(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById({element_id!r}).textContent")


def fmt(box) -> str:
    return " x ".join("none" if b is None else f"[{b[0]}, {b[1]}]" for b in box)


def set_fragment(driver, fragment: str) -> None:
    driver.execute_script("location.hash = arguments[0]", fragment)
    driver.execute_script("return 0")  # hashchange is dispatched before the next script runs


@pytest.fixture(scope="module")
def pages(tmp_path_factory, resnet50):
    """The pages the browser tests open, written once."""
    d = tmp_path_factory.mktemp("pages")
    out = {}
    for name, analysis in [("resnet50", resnet50), ("transposed", transposed()), ("one_d", one_d()), ("three_d", three_d())]:
        out[name] = (d / f"{name}.html", analysis)
        write_html(out[name][0], analysis)
    merge = rfgraph.analyze(Merge(), (1, 1, 16, 16))
    out["merge"] = (d / "merge.html", merge)
    write_html(out["merge"][0], merge)
    return out


# -- without a browser ----------------------------------------------------------------------------


def test_page_is_one_offline_file_under_2mb(resnet50):
    page = to_html(resnet50)
    assert len(page.encode("utf-8")) < 2_000_000
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "the page must not load anything"
    assert "@import" not in page and "<link rel=\"stylesheet\"" not in page
    data = json.loads(re.search(r'<script id="rf-data" type="application/json">(.*?)</script>', page, re.S).group(1))
    assert data["model"] == "ResNet" and data["input_shape"] == [1, 3, 224, 224]
    assert len(data["nodes"]) == len(resnet50)
    assert data["aliases"]["layer2"] == "layer2.3.relu_2"
    assert data["counts"] == resnet50.counts()


def test_aliases_follow_resolve():
    """ViT's ``ln_2`` modules run as nodes named ``ln_1``; the page resolves them as `Analysis.resolve` does."""
    import torchvision

    with torch.device("meta"):
        a = rfgraph.analyze(torchvision.models.vit_b_16(weights=None), (1, 3, 224, 224))
    aliases = page_data(a)["aliases"]
    assert aliases and all(a.resolve(k) == v for k, v in aliases.items())
    ln_2 = "encoder.layers.encoder_layer_0.ln_2"
    assert aliases[ln_2] == a.resolve(ln_2) and a[ln_2].module == ln_2


def test_node_names_cannot_close_the_script():
    class Odd(nn.Module):
        def forward(self, x):
            return x

    a = rfgraph.analyze(Odd(), (1, 1, 4))
    page = to_html(a, model_label="</script><b>x</b>")
    assert page.count("</script>") == 2  # the data block and the code block
    assert "\\u003c/script\\u003e" in page


def test_a_missing_browser_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run under CI=true"):
        require_browser("/nonexistent/chromium")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="chromium-driver"):
        require_browser("/nonexistent/chromium")


def test_map_json_periodic_and_finite():
    m = PAMap(2, 3, (-1, 0))
    assert map_json(m, 5) == {"period": 2, "advance": 3, "table": [-1, 0]}
    assert map_json(lambda u: u * u, 4) == {"finite": [0, 1, 4, 9]}
    assert map_json(None, 3) is None


def test_page_data_initial_selection_and_erf_list(resnet50):
    data = page_data(resnet50, node="layer2", unit=(3, 11))
    assert data["initial"] == {"node": "layer2.3.relu_2", "unit": [3, 11]}
    assert page_data(resnet50)["initial"]["node"] == resnet50.last_spatial().name
    assert page_data(resnet50)["erf"] == [] and page_data(resnet50)["image"] is None
    # with an ERF measured at the analysed size, the page opens on the measured unit
    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Conv2d(2, 1, 3))
    a = rfgraph.analyze(net, (1, 1, 15, 13))
    res = rfgraph.erf(net, "1", 2, size=(15, 13), progress=False)
    data = page_data(a, erf=res)
    assert data["initial"] == {"node": "1", "unit": list(res.unit)}
    assert data["erf"][0]["png"].startswith("data:image/png;base64,") and data["erf"][0]["size"] == [15, 13]


def test_image_inputs_become_data_urls(tmp_path):
    from rfgraph.report.html import image_data_url

    img = demo_image(20, 30)
    url = image_data_url(img)
    assert url.startswith("data:image/png;base64,")
    from PIL import Image

    Image.fromarray(img).save(tmp_path / "a.png")
    assert image_data_url(tmp_path / "a.png").startswith("data:image/png;base64,")
    assert image_data_url(str(tmp_path / "a.png")) == image_data_url((tmp_path / "a.png").read_bytes())
    assert image_data_url(Image.fromarray(img)).startswith("data:image/png;base64,")
    assert image_data_url(np.zeros((3, 8, 9), dtype=np.float32)).startswith("data:image/png;base64,")  # CHW floats
    with pytest.raises(rfgraph.RFGraphError, match="cannot read image"):
        image_data_url(tmp_path / "missing.png")
    with pytest.raises(rfgraph.RFGraphError, match="image array"):
        image_data_url(np.zeros((2, 3, 4, 5)))


def test_repr_html_of_analysis_and_node(resnet50):
    merge = rfgraph.analyze(Merge(), (1, 1, 16, 16))
    text_ = merge._repr_html_()
    assert "Merge, input 1x1x16x16" in text_ and "symbolic" in text_
    assert "1 misaligned" in text_ and "misaligned (center shift 1/2)" in text_
    assert "<a " not in text_ and "href" not in text_
    node = resnet50["layer2"]._repr_html_()
    assert "layer2.3.relu_2" in node and "<td class=num>91</td>" in node and "<td class=num>-45</td>" in node
    assert "<td>1x512x28x28</td>" in node
    assert "177 nodes: symbolic 173, global 4" in resnet50._repr_html_()


def test_explorer_repr_is_an_inline_iframe(resnet50):
    e = explorer(resnet50, node="layer2", unit=(3, 11), height=600)
    out = e._repr_html_()
    assert out.startswith("<iframe") and 'srcdoc="' in out and "height:600px" in out
    assert htmlmod.unescape(out.split('srcdoc="', 1)[1].split('" style=', 1)[0]) == e.html


# -- in the browser -------------------------------------------------------------------------------


def test_fragment_selects_resnet50_layer2_unit(browser, pages):
    path, a = pages["resnet50"]
    load(browser, path, "#node=layer2&unit=3,11")
    assert unit_box(a, "layer2", (3, 11)).box == ((-21, 69), (43, 133))
    assert text(browser, "rf-box") == "[-21, 69] x [43, 133]"
    assert text(browser, "rf-clipped") == "[0, 69] x [43, 133]"
    assert text(browser, "rf-centre") == "(24, 88)"
    node = text(browser, "rf-node")
    assert node.startswith("layer2.3.relu_2 rf 91 stride 8 start -45")
    # nothing was fetched: every resource of the page is inline
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [u for u in fetched if not u.startswith("data:")] == []
    # drawn well within the 1 s budget (benchmarks/explorer.py measures it: about 0.1 s here)
    assert browser.execute_script("return performance.getEntriesByName('rf-ready')[0].startTime") < 1000
    # a later fragment change selects again, without reloading
    set_fragment(browser, "#node=layer3.5.relu_2&unit=5,7")
    assert text(browser, "rf-box") == fmt(unit_box(a, "layer3", (5, 7)).box) == "[-53, 213] x [-21, 245]"
    assert text(browser, "rf-clipped") == fmt(unit_box(a, "layer3", (5, 7)).clipped)
    # a wrong node or unit is a message on the page, not an error
    set_fragment(browser, "#node=layer9")
    assert "layer9" in text(browser, "rf-message")
    set_fragment(browser, "#node=layer4&unit=7,0")
    assert "outside" in text(browser, "rf-message")
    assert text(browser, "rf-unit").startswith("(3, 3) of 7 x 7")
    set_fragment(browser, "#node=layer1&unit=0,0")
    assert text(browser, "rf-message") == ""


def _page_boxes(driver, nodes_units):
    """Boxes the page computes for many (node, unit) pairs, in one script call."""
    return driver.execute_script(
        """const D = window.rfgraph.data, out = [];
           const idx = new Map(D.nodes.map((n, i) => [n.name, i]));
           for (const [name, unit] of arguments[0]) {
             const n = D.nodes[idx.get(name)];
             const box = window.rfgraph.unitBox(n, unit);
             const sizes = D.input_shape.slice(2);
             out.push([box.map(b => [b.lo, b.hi]), window.rfgraph.clipBox(box, sizes).map(b => b && [b.lo, b.hi])]);
           }
           return out;""",
        nodes_units,
    )


@pytest.mark.parametrize("model", ["resnet50", "transposed", "one_d", "three_d"])
def test_boxes_equal_unit_box(browser, pages, model):
    path, a = pages[model]
    load(browser, path)
    rng = random.Random(0)
    pairs = []
    for r in a:
        if not r.is_spatial or not all(m is not None for m in r.lo):
            continue
        counts = [r.shape[d] for d in r.dims]
        units = {tuple(c - 1 for c in counts), (0,) * len(counts)}
        units |= {tuple(rng.randrange(c) for c in counts) for _ in range(3 if model == "resnet50" else 12)}
        pairs += [(r.name, list(u)) for u in sorted(units)]
    assert len(pairs) > 20
    shown = _page_boxes(browser, pairs)
    for (name, unit), (box, clipped) in zip(pairs, shown):
        expected = unit_box(a, name, unit)
        assert tuple(map(tuple, box)) == expected.box, (name, unit)
        assert tuple(None if c is None else tuple(c) for c in clipped) == expected.clipped, (name, unit)
    # and through the fragment, in the element the page shows
    for name, unit in rng.sample(pairs, 4):
        set_fragment(browser, f"#node={name}&unit={','.join(map(str, unit))}")
        assert text(browser, "rf-box") == fmt(unit_box(a, name, unit).box), (name, unit)
        assert text(browser, "rf-clipped") == fmt(unit_box(a, name, unit).clipped), (name, unit)


def test_periodic_affine_evaluator_equals_pamap(browser, pages):
    load(browser, pages["transposed"][0])
    rng = random.Random(16)
    maps, cases = [], []
    for _ in range(300):
        period = rng.randint(1, 9)
        table = sorted(rng.randint(-40, 40) for _ in range(period))
        m = PAMap(period, rng.randint(-3, 50), table)
        us = [rng.randint(-500, 500) for _ in range(20)] + [0, -1, m.period, -m.period, 10**9 + 7]
        maps.append(map_json(m, 0))
        cases.append((m, us))
    got = browser.execute_script(
        "return arguments[0].map((m, k) => arguments[1][k].map(u => window.rfgraph.evalMap(m, u)));",
        maps,
        [us for _, us in cases],
    )
    for (m, us), values in zip(cases, got):
        assert values == [m(u) for u in us], m
    # finite tables (a map stored exactly over [0, n)): indexed, and refused outside [0, n)
    finite = {"finite": [3, -2, 7, 7, 11]}
    assert browser.execute_script("return [0,1,2,3,4].map(u => window.rfgraph.evalMap(arguments[0], u))", finite) == finite["finite"]
    refused = browser.execute_script(
        "try { window.rfgraph.evalMap(arguments[0], 5); return null; } catch (e) { return e.name; }", finite
    )
    assert refused == "RangeError"


def test_evaluator_runs_under_node_too():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (the browser test covers the evaluator)")
    import subprocess

    js = Path(rfgraph.__file__).parent / "report" / "explorer.js"
    script = (
        f"const r = require({json.dumps(str(js))});"
        "console.log(JSON.stringify([r.evalMap({period: 2, advance: 3, table: [-1, 0]}, -3),"
        " r.evalMap({finite: [5, 6]}, 1), r.formatBox([{lo: -1, hi: 2}, null])]));"
    )
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [PAMap(2, 3, (-1, 0))(-3), 6, "[-1, 2] x global"]


def test_clicks_select_nodes_and_units(browser, pages):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    path, a = pages["resnet50"]
    load(browser, path, "#node=conv1&unit=0,0")
    # filter, then click a row of the table
    box = browser.find_element(By.ID, "rf-filter")
    box.send_keys("layer3.1.relu_1")
    rows = browser.find_elements(By.CSS_SELECTOR, "#rf-table tbody tr")
    assert len(rows) == 1
    rows[0].click()
    assert text(browser, "rf-node").startswith("layer3.1.relu_1 ")
    assert browser.execute_script("return location.hash").startswith("#node=layer3.1.relu_1&unit=")
    box.clear()
    browser.execute_script("document.getElementById('rf-filter').dispatchEvent(new Event('input'))")
    # the flag filter and sorting
    Select(browser.find_element(By.ID, "rf-flag")).select_by_value("global")
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#rf-table tbody td.nm")]
    assert names == [r.name for r in a if r.rf and all(r.is_global)]
    Select(browser.find_element(By.ID, "rf-flag")).select_by_value("")
    browser.find_element(By.CSS_SELECTOR, '#rf-table th[data-key="rf"]').click()
    first = browser.find_element(By.CSS_SELECTOR, "#rf-table tbody td.nm").text
    assert a[first].rf == (1, 1)
    # a click on the output grid selects the unit under the pointer
    r = a["layer3"]
    grid = browser.find_element(By.ID, "rf-grid")
    set_fragment(browser, "#node=layer3&unit=0,0")
    w, h = grid.size["width"], grid.size["height"]
    ny, nx = r.shape[2], r.shape[3]
    unit = (9, 4)
    ActionChains(browser).move_to_element_with_offset(
        grid, int((unit[1] + 0.5) * w / nx - w / 2), int((unit[0] + 0.5) * h / ny - h / 2)
    ).click().perform()
    assert text(browser, "rf-unit").startswith("(9, 4) of 14 x 14")
    assert text(browser, "rf-box") == fmt(unit_box(a, "layer3", unit).box)
    assert browser.execute_script("return location.hash") == "#node=layer3.5.relu_2&unit=9,4"
    # hovering shows another unit; leaving goes back to the selected one
    ActionChains(browser).move_to_element_with_offset(grid, int(0.5 * w / nx - w / 2), int(0.5 * h / ny - h / 2)).perform()
    assert text(browser, "rf-box") == fmt(unit_box(a, "layer3", (0, 0)).box)
    ActionChains(browser).move_to_element(browser.find_element(By.ID, "rf-node")).perform()
    assert text(browser, "rf-box") == fmt(unit_box(a, "layer3", unit).box)
    # a click on the depth chart selects the node under the pointer
    chart = browser.find_element(By.ID, "rf-chart-hit")
    k = 40
    offset = round((k / (len(a) - 1) - 0.5) * chart.size["width"])
    ActionChains(browser).move_to_element_with_offset(chart, offset, 0).click().perform()
    assert text(browser, "rf-node").startswith(a.nodes[k] + " ")
    assert a.nodes[k] in text(browser, "rf-chart-tip")


def test_paths_through_a_copy_keys_and_input_clicks(browser, pages):
    """layer2 is a ReLU after an add: it shows the add's two paths; arrow keys and input clicks move the unit."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    path, a = pages["resnet50"]
    load(browser, path, "#node=layer2&unit=3,11")
    paths = text(browser, "rf-paths")
    assert paths.startswith("paths into layer2.3.add, which this node copies unit by unit")
    for name in a["layer2.3.add"].inputs:  # the block's conv path (rf 91) and the identity shortcut (rf 75)
        assert f"{name} {fmt(unit_box(a, name, (3, 11)).box)}" in paths
    assert fmt(unit_box(a, "layer2.2.relu_2", (3, 11)).box) == "[-13, 61] x [51, 125]"
    # arrow keys on the unit grid
    grid = browser.find_element(By.ID, "rf-grid")
    grid.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_DOWN, Keys.ARROW_DOWN)
    assert text(browser, "rf-unit").startswith("(5, 12) of 28 x 28")
    assert text(browser, "rf-box") == fmt(unit_box(a, "layer2", (5, 12)).box)
    # a click on the input plane selects, per axis, the unit whose box centre is nearest to the pixel
    svg = browser.find_element(By.ID, "rf-input")
    x0, y0, w, h = map(float, browser.execute_script("return arguments[0].getAttribute('viewBox')", svg).split())
    px, py = 150, 40  # input pixel (row 40, column 150)
    ActionChains(browser).move_to_element_with_offset(
        svg,
        round((px + 0.5 - x0) / w * svg.size["width"] - svg.size["width"] / 2),
        round((py + 0.5 - y0) / h * svg.size["height"] - svg.size["height"] / 2),
    ).click().perform()
    r = a["layer2"]

    def nearest(axis, p):
        return min(range(r.shape[r.dims[axis]]), key=lambda u: abs((r.lo[axis](u) + r.hi[axis](u) + 1) / 2 - (p + 0.5)))

    unit = (nearest(0, py), nearest(1, px))
    assert text(browser, "rf-unit").startswith(f"({unit[0]}, {unit[1]}) of 28 x 28")
    box = unit_box(a, "layer2", unit).box
    assert box[0][0] <= py <= box[0][1] and box[1][0] <= px <= box[1][1]


def test_merge_shows_each_paths_box(browser, pages):
    path, a = pages["merge"]
    load(browser, path, "#node=add&unit=3,5")
    r = a["add"]
    assert len(r.inputs) == 2 and not r.aligned
    paths = text(browser, "rf-paths")
    for name in r.inputs:
        assert f"{name} {fmt(unit_box(a, name, (3, 5)).box)}" in paths
    assert browser.execute_script("return document.querySelectorAll('#rf-pathboxes rect').length") == 2
    header = text(browser, "rf-header")
    assert "misaligned" in header and "add" in header


class NoRule(nn.Module):
    """A leaf module no rule knows: with ``fallback="unknown"`` its node and everything after it are unknown."""

    def forward(self, x):
        return x * 2


def test_unknown_and_global_nodes(browser, tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), NoRule(), nn.Conv2d(2, 2, 3))
    a = rfgraph.analyze(net, (1, 1, 12, 12), leaf_modules=[NoRule], fallback="unknown")
    assert a["1"].is_unknown
    path = tmp_path / "unknown.html"
    write_html(path, a)
    load(browser, path, "#node=2")
    header = text(browser, "rf-header")
    assert "unknown" in header and "no rule for" in header
    assert text(browser, "rf-box") == "unknown"
    assert text(browser, "rf-node").startswith("2 rf ? stride ? start ?")
    assert browser.execute_script("return document.querySelectorAll('#rf-boxes rect').length") == 0
    g = rfgraph.analyze(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(1)), (1, 1, 9, 9))
    write_html(path, g)
    load(browser, path, "#node=1")
    assert text(browser, "rf-box") == "global x global"
    assert "every unit sees the whole input" in text(browser, "rf-legend")


def test_three_d_slices(browser, pages):
    from selenium.webdriver.common.by import By

    path, a = pages["three_d"]
    load(browser, path, "#node=1&unit=1,2,2")
    assert text(browser, "rf-box") == fmt(unit_box(a, "1", (1, 2, 2)).box)
    assert len(text(browser, "rf-box").split(" x ")) == 3
    sliders = browser.find_elements(By.CSS_SELECTOR, ".rf-slider input[type=range]")
    assert len(sliders) == 2 and all(s.is_displayed() for s in sliders)
    # the unit slider moves the unit along d
    browser.execute_script(
        "const s = document.querySelector('#rf-out-slice input'); s.value = 0; s.dispatchEvent(new Event('input'))"
    )
    assert text(browser, "rf-box") == fmt(unit_box(a, "1", (0, 2, 2)).box)


def test_one_d_strip(browser, pages):
    path, a = pages["one_d"]
    load(browser, path, "#node=3&unit=4")
    assert text(browser, "rf-box") == fmt(unit_box(a, "3", (4,)).box)
    assert text(browser, "rf-grid-size") == str(a["3"].shape[2])
    assert not browser.execute_script("return document.getElementById('rf-file').closest('label').hidden === false")
    # the detail strip shows the box at sample resolution, half its width of context on each side
    (lo, hi), = unit_box(a, "3", (4,)).box
    pad = max(4, -(-(hi - lo + 1) // 2))
    assert text(browser, "rf-detail-range") == f"samples {lo - pad} .. {hi + pad}"
    assert browser.execute_script("return document.getElementById('rf-detail-wrap').hidden") is False


def test_image_erf_and_file_picker(browser, tmp_path):
    """A small model with real weights: its ERF is drawn under the box; an image file is read in the page."""
    from PIL import Image
    from selenium.webdriver.common.by import By

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1))
    a = rfgraph.analyze(net, (1, 3, 24, 24))
    res = rfgraph.erf(net, "2", 4, progress=False)
    path = tmp_path / "erf.html"
    write_html(path, a, image=demo_image(24, 24), erf={"2": res})
    load(browser, path, "#node=2&unit=5,6")
    assert browser.execute_script("return document.getElementById('rf-image').getAttribute('href')").startswith(
        "data:image/png;base64,"
    )
    erf = browser.find_element(By.CSS_SELECTOR, "#rf-erf image")
    # drawn over the shown unit's box (the ERF map is cropped to the measured unit's box)
    box = unit_box(a, "2", (5, 6))
    assert float(erf.get_attribute("x")) == max(res.box[1][0], 0) + box.box[1][0] - res.box[1][0]
    assert "ERF of unit" in text(browser, "rf-legend")
    # the file picker reads a local file into the page
    Image.fromarray(demo_image(48, 40)).save(tmp_path / "picked.png")
    browser.find_element(By.ID, "rf-file").send_keys(str(tmp_path / "picked.png"))
    browser.execute_script("return 0")
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(lambda d: "stretched" in text(d, "rf-legend"))
    assert "picked.png 40x48 stretched over the 24x24 input" in text(browser, "rf-legend")


def test_notebook_iframe_works_offline(browser, tmp_path, resnet50):
    from selenium.webdriver.common.by import By

    cell = explorer(resnet50, node="layer2", unit=(3, 11))._repr_html_()
    host = tmp_path / "cell.html"
    host.write_text(f"<!DOCTYPE html><html><head><meta charset=utf-8><link rel=icon href='data:,'></head><body>{cell}</body></html>")
    browser.get(host.resolve().as_uri())
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe.rfgraph-explorer"))
    try:
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.documentElement.dataset.ready === '1'"))
        assert text(browser, "rf-box") == "[-21, 69] x [43, 133]"
        row = browser.find_element(By.CSS_SELECTOR, '#rf-table tbody tr[data-i="5"]')
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
        row.click()
        assert text(browser, "rf-node").startswith(resnet50.nodes[5] + " ")
    finally:
        browser.switch_to.default_content()


def test_screenshot_resnet50_with_image(browser, resnet50, tmp_path):
    """The README's picture: ResNet-50, a generated image, the ERF of layer2 (random init), unit (3, 11) -> docs/explorer.png."""
    import torchvision

    torch.manual_seed(0)
    weighted = torchvision.models.resnet50(weights=None)  # random init: the ERF needs weights, not trained ones
    res = rfgraph.erf(weighted, "layer2", 4, progress=False)
    path = tmp_path / "resnet50_image.html"
    write_html(path, resnet50, image=demo_image(), erf=res, model_label="torchvision:resnet50")
    load(browser, path, "#node=layer2&unit=3,11")
    assert text(browser, "rf-box") == "[-21, 69] x [43, 133]"
    assert "ERF of unit (6, 6) over 4 samples at input 101 x 101" in text(browser, "rf-legend")
    out = REPO / "docs" / "explorer.png"
    assert browser.save_screenshot(str(out))
    from PIL import Image

    with Image.open(out) as img:
        assert img.size[0] >= 1200


def test_example_notebook_runs(tmp_path, monkeypatch):
    """docs/explorer.ipynb runs top to bottom in a fresh kernel, with this checkout's rfgraph."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "docs" / "explorer.ipynb", as_version=4)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    htmls = [o["data"]["text/html"] for o in outputs if "data" in o and "text/html" in o["data"]]
    assert any("177 nodes: symbolic 173, global 4" in h for h in htmls)
    assert any("layer2.3.relu_2" in h and "<td class=num>91</td>" in h for h in htmls)
    assert any(h.startswith("<iframe") and "rf-box" in h for h in htmls)
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert str(REPO / "rfgraph") in printed
