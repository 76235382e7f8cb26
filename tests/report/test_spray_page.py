"""SpRAy's page in a real browser (Debian's chromium, headless, Playwright; slow step)."""

import json
import os
import re

import helpers
import numpy as np
import pytest
from matplotlib.figure import Figure

import keras_explain as kx
from keras_explain.report.spray import spray_page

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(helpers.CHROMIUM),
        reason=f"no Chromium at {helpers.CHROMIUM}: apt-get install chromium (Debian)",
    ),
]
pytest.importorskip(
    "playwright.sync_api", reason='Playwright is missing: pip install "keras-explainer[test]"'
)


@pytest.fixture(scope="module")
def spray(tmp_path_factory):
    """Two classes of maps; in class 1, every third uses the top-left corner."""
    rng = np.random.default_rng(0)
    n, size = 60, 16
    ys, xs = np.mgrid[:size, :size] / size
    x = rng.random((n, size, size, 3)).astype("float32")
    labels = np.repeat([0, 1], n // 2)
    corner = (labels == 1) & (np.arange(n) % 3 == 0)
    maps = rng.uniform(0, 0.05, (n, size, size)).astype("float32")
    for i in range(n):
        cy, cx = (0.06, 0.06) if corner[i] else rng.uniform(0.35, 0.8, 2)
        maps[i] += np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 0.01)
    results = kx.spray.analyze(maps, labels, size=(8, 8), embedding="spectral")
    flagged = int(results[1].clusters[np.flatnonzero(corner)[0] - n // 2])
    atlas = Figure(figsize=(2, 1))
    atlas.subplots().plot([0, 1], [1, 0])
    out = tmp_path_factory.mktemp("spray") / "spray.html"
    spray_page(
        x,
        maps,
        results,
        out,
        class_names=["plain", "tagged"],
        atlases={(1, flagged): atlas},
        method="lrp.epsilon_plus_flat",
        model_name="cnn",
    )
    text = open(out, encoding="utf-8").read()
    data = json.loads(re.search(r'id="spray-data">(.*?)</script>', text, re.S).group(1))
    return out, data, corner, flagged


@pytest.fixture
def opened(browser, spray):
    page = helpers.OpenedPage(browser, spray[0])
    yield page
    assert page.errors == [] and page.requests == []  # offline, no console error
    page.page.close()


def test_the_scatter_shows_every_sample_of_the_class_coloured_by_cluster(opened, spray):
    _, data, _, _ = spray
    page = opened.page
    assert page.locator("#scatter circle").count() == 30
    assert "the eigengap suggests" in page.inner_text("#class-summary")
    page.select_option("#class-select", "1")
    clusters = page.eval_on_selector_all(
        "#scatter circle", "nodes => nodes.map(n => Number(n.dataset.cluster))"
    )
    assert clusters == [point[2] for point in data["groups"][1]["points"]]
    assert page.locator(".prototype").count() == len(data["groups"][1]["clusters"])
    assert "keras_explain" in page.inner_text("#summary")


def test_clicking_a_point_shows_the_sample_its_heatmap_and_its_cluster(opened, spray):
    _, data, corner, flagged = spray
    page = opened.page
    page.select_option("#class-select", "1")
    index = int(np.flatnonzero(corner)[0])
    page.dispatch_event(f'#scatter circle[data-index="{index}"]', "click")  # points overlap
    assert page.inner_text("#sample-title") == f"Sample {index} (tagged), cluster {flagged}"
    shown = page.eval_on_selector_all("#sample img", "nodes => nodes.map(n => n.src)")
    assert shown == [data["samples"][str(index)]["input"], data["samples"][str(index)]["overlay"]]
    selected = page.get_attribute(".prototype.selected", "data-cluster")
    assert int(selected) == flagged
    assert page.is_visible("#atlas")  # the flagged cluster has an atlas
    other = int(np.flatnonzero(~corner & (np.arange(60) >= 30))[0])
    page.dispatch_event(f'#scatter circle[data-index="{other}"]', "click")
    assert not page.is_visible("#atlas")
