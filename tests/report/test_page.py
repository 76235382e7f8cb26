"""The report page in a real browser: Debian's chromium, headless, driven by Playwright.

CI installs chromium with apt-get (no browser download); without it, or without
the playwright package, these tests skip and say why. They are slow (a trained
model, a browser), so they run in CI's slow step.
"""

import base64
import io
import json
import os
import re

import helpers
import numpy as np
import pytest
from PIL import Image

import keras_explain as kx
from keras_explain import benchmark, datasets

SCREENSHOT = helpers.REPO_ROOT / "docs" / "_static" / "report_screenshot.png"
METHODS = ("gradient", "integrated_gradients", "grad_cam", "lrp.epsilon", "occlusion")

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
def shapes_page(tmp_path_factory):
    """A report of a small CNN trained briefly on 32x32 shapes, with one failing method."""
    size = 32
    model, _ = benchmark.train_shapes_cnn(3000, 4, size, test=100, verbose=0)
    x, labels, masks = datasets.shapes(8, size=size, seed=5)
    parameters = benchmark.method_parameters(size)
    methods = {name: parameters.get(name, {}) for name in METHODS}
    methods["smoothgrad"] = {"bogus": 1}
    out = tmp_path_factory.mktemp("browser") / "shapes.html"
    path = kx.report(
        methods, model, x, labels=labels, class_names=datasets.CLASSES, masks=masks, out=str(out)
    )
    return path, embedded(path)


def embedded(path):
    text = open(path, encoding="utf-8").read()
    found = re.search(r'id="report-data">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


class Opened(helpers.OpenedPage):
    """The report page, opened from disk (``helpers.OpenedPage``), with its overlays."""

    def rendered(self):
        """Wait until every overlay on the page is drawn."""
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('canvas.overlay')].every(c => c.dataset.rendered)"
        )

    def focus_src(self):
        self.rendered()
        return self.page.get_attribute("#focus-view", "data-src")


@pytest.fixture
def opened(browser, shapes_page):
    page = Opened(browser, shapes_page[0])
    yield page
    assert page.errors == [] and page.requests == []
    page.page.close()


def test_page_opens_offline_without_console_errors(opened, shapes_page):
    _, data = shapes_page
    assert opened.page.locator(".sample").count() == 8
    assert opened.page.locator(".method").count() == len(METHODS)
    summary = opened.page.inner_text("#summary")
    assert f"{data['model']['parameters']:,} parameters" in summary
    assert f"keras_explain {kx.__version__}" in summary
    failed = opened.page.inner_text("#failed")
    assert "smoothgrad: TypeError: SmoothGrad got an unexpected parameter 'bogus'" in failed
    # the page's assertions in the fixture: no console error, no request left the disk


def test_clicking_a_sample_and_a_method_shows_that_explanation(opened, shapes_page):
    _, data = shapes_page
    opened.page.click('.sample[data-index="3"]')
    opened.page.click('.method[data-method="grad_cam"]')
    assert opened.focus_src() == data["explanations"]["grad_cam"][3][0]
    assert opened.page.inner_text("#focus-title").startswith("grad_cam, class ")
    shown = opened.page.eval_on_selector_all(
        ".method canvas", "nodes => nodes.map(n => n.dataset.src)"
    )
    assert shown == [data["explanations"][m][3][0] for m in METHODS]
    opened.page.click('.method[data-method="occlusion"]')
    assert opened.focus_src() == data["explanations"]["occlusion"][3][0]
    opened.page.focus('.method[data-method="lrp.epsilon"]')  # the keyboard picks a method too
    opened.page.keyboard.press("Enter")
    assert opened.focus_src() == data["explanations"]["lrp.epsilon"][3][0]


def decode(uri):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


@pytest.mark.parametrize("view, colormap", [("signed", "bwr"), ("absolute", "Reds")])
def test_overlay_pixels_are_the_blend_of_gray_input_and_colormap(
    opened, shapes_page, view, colormap
):
    import matplotlib

    _, data = shapes_page
    opened.page.select_option("#view-select", view)
    assert opened.page.input_value("#cmap-select") == colormap
    source = opened.focus_src()
    pixels = opened.page.evaluate(
        """() => { const c = document.getElementById('focus-view');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }"""
    )
    drawn = np.array(pixels).reshape(32, 32, 4)[..., :3]
    # reference: kx.visualize.overlay's blend, written out with matplotlib's colormap
    gray = decode(data["samples"][0]["input"]).astype(float).mean(-1)
    values = (decode(source).astype(float) - 128) / 127
    position = (values + 1) / 2 if view == "signed" else np.abs(values)
    table = np.round(255 * matplotlib.colormaps[colormap](np.linspace(0, 1, 256))[:, :3])
    colour = table[np.round(position * 255).astype(int)]
    weight = 0.7 * np.abs(values)[..., None]
    expected = (1 - weight) * gray[..., None] + weight * colour
    assert np.abs(drawn - expected).max() <= 1.0  # one step of 8-bit rounding


def test_sorting_a_metric_column_reorders_rows(opened, shapes_page):
    _, data = shapes_page
    values = {row["method"]: row["deletion_auc"] for row in data["metrics"]["rows"]}
    ascending = sorted(values, key=values.get)

    def order():
        return opened.page.eval_on_selector_all(
            "#metrics tbody tr", "rows => rows.map(r => r.dataset.method)"
        )

    assert order() == list(METHODS)
    opened.page.click('th[data-column="deletion_auc"]')
    assert order() == ascending
    opened.page.click('th[data-column="deletion_auc"]')
    assert order() == ascending[::-1]
    assert "sorted-desc" in opened.page.get_attribute('th[data-column="deletion_auc"]', "class")


def test_class_selector_switches_to_that_class(opened, shapes_page):
    _, data = shapes_page
    opened.page.click('.method[data-method="gradient"]')
    opened.page.select_option("#class-select", "2")
    assert opened.focus_src() == data["explanations"]["gradient"][0][2]
    third = datasets.CLASSES[data["samples"][0]["classes"][2]]
    assert opened.page.inner_text("#focus-title") == f"gradient, class {third}"
    opened.page.select_option("#class-select", "0")
    assert opened.focus_src() == data["explanations"]["gradient"][0][0]


def test_keyboard_moves_between_samples(opened, shapes_page):
    _, data = shapes_page
    opened.page.click('.method[data-method="lrp.epsilon"]')
    opened.page.keyboard.press("ArrowRight")
    opened.page.keyboard.press("ArrowRight")
    assert opened.page.get_attribute(".sample.selected", "data-index") == "2"
    assert opened.focus_src() == data["explanations"]["lrp.epsilon"][2][0]
    opened.page.keyboard.press("ArrowLeft")
    assert opened.focus_src() == data["explanations"]["lrp.epsilon"][1][0]
    opened.page.keyboard.press("2")  # the second class
    assert opened.focus_src() == data["explanations"]["lrp.epsilon"][1][1]
    for _ in range(10):  # stops at the last sample
        opened.page.keyboard.press("ArrowRight")
    assert opened.page.get_attribute(".sample.selected", "data-index") == "7"


def test_screenshot_for_the_docs(opened):
    opened.page.click('.sample[data-index="1"]')
    opened.rendered()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    opened.page.screenshot(path=str(SCREENSHOT), full_page=True)
    picture = np.asarray(Image.open(SCREENSHOT))
    assert picture.shape[1] == 1280 and picture.shape[0] >= 900
    assert len(np.unique(picture.reshape(-1, picture.shape[-1]), axis=0)) > 100  # not blank


def test_text_and_tabular_pages_work(browser, tmp_path):
    model = helpers.token_classifier()
    ids = np.array([[1, 5, 7, 2], [3, 3, 9, 0]], "int32")
    words = [["the", "<cat>", "sat", "."], ["a", "a", "dog", "!"]]
    text = kx.report(["gradient"], model, ids, tokens=words, out=str(tmp_path / "text.html"))
    tabular = kx.report(
        ["gradient", "lrp.epsilon"],
        helpers.dense_sequential(),
        helpers.data((6,), batch=2),
        out=str(tmp_path / "tabular.html"),
    )
    for path, selector, count in (
        (text, "#focus-view .kx-token", 4),
        (tabular, "#focus-view rect", 6),
    ):
        page = Opened(browser, path)
        assert page.page.locator(selector).count() == count
        page.page.keyboard.press("ArrowRight")
        assert (
            page.page.get_attribute("#focus-view", "data-src")
            == embedded(path)["explanations"]["gradient"][1][0]
        )
        assert page.errors == [] and page.requests == []
        assert not page.page.is_visible("#cmap-select")
        page.page.close()
    assert "&lt;cat&gt;" in open(text, encoding="utf-8").read().replace("\\u003c", "<")


def test_influence_panel_shows_the_selected_samples_training_images(browser, tmp_path):
    import keras

    model = helpers.shapes_head_cnn()
    train, train_labels, _ = datasets.shapes(40, size=16, seed=1)
    x, _, _ = datasets.shapes(3, size=16, seed=2)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    tracin = kx.influence.TracIn(model, (train, train_labels), loss=loss, layers=["head"])
    path = kx.report(
        ["gradient"],
        model,
        x,
        metrics=[],
        class_names=datasets.CLASSES,
        influence=tracin,
        influence_k=2,
        out=str(tmp_path / "influence.html"),
    )
    data = embedded(path)["influence"]
    page = Opened(browser, path)
    for sample in (0, 2):
        page.page.click(f'.sample[data-index="{sample}"]')
        for side in ("proponents", "opponents"):
            figures = page.page.locator(f'.examples[data-side="{side}"] figure')
            assert figures.count() == 2
            for position, (index, _score) in enumerate(data["samples"][sample][side]):
                figure = figures.nth(position)
                assert figure.get_attribute("data-index") == str(index)
                image = figure.locator("img").get_attribute("src")
                assert image == data["train"][str(index)]["input"]
                caption = figure.locator("figcaption").inner_text()
                label = datasets.CLASSES[data["train"][str(index)]["label"]]
                assert caption.startswith(f"#{index} {label} ")
    assert "TracIn" in page.page.inner_text("#influence-method")
    assert page.errors == [] and page.requests == []
    page.page.close()


def test_concept_panel_shows_the_selected_samples_concepts_and_references(browser, tmp_path):
    model = helpers.shapes_head_cnn()
    layer = model.layers[0].name
    train = datasets.shapes(30, size=16, seed=1)[0]
    x = datasets.shapes(3, size=16, seed=2)[0]
    references = kx.crp.reference_samples(model, train, layer, k=2)
    path = kx.report(
        ["gradient"],
        model,
        x,
        metrics=[],
        concepts=kx.crp.CRP(model, layer),
        concepts_k=3,
        references=references,
        out=str(tmp_path / "concepts.html"),
    )
    data = embedded(path)["concepts"]
    page = Opened(browser, path)
    assert page.page.is_visible("#concepts-box")
    for sample in (0, 2):
        page.page.click(f'.sample[data-index="{sample}"]')
        rows = page.page.locator(".concept")
        assert rows.count() == 3
        for position, concept in enumerate(data["samples"][sample]["concepts"]):
            row = rows.nth(position)
            assert row.get_attribute("data-channel") == str(concept["channel"])
            caption = row.locator("figcaption").first.inner_text()
            assert caption == f"channel {concept['channel']} · {100 * concept['share']:.1f}%"
            sources = row.locator("img").evaluate_all("nodes => nodes.map(n => n.src)")
            assert sources == [concept["overlay"], *concept["references"]]
    assert page.errors == [] and page.requests == []
    page.page.close()
