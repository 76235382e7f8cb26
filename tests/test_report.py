"""kx.report and `keras-explain report`: the page's data checked against references.

The page itself (clicks, sorting, keyboard) is driven in a real browser in
report/test_page.py; here the embedded JSON and HTML are read back with the
standard library and Pillow.
"""

import base64
import html
import io
import json
import os
import re

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_explain as kx
from keras_explain import cli

METHODS = {"gradient": {}, "grad_cam": {}, "smoothgrad": {"bogus": 1}}


def page_data(path):
    text = open(path, encoding="utf-8").read()
    found = re.search(
        r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S
    )
    return json.loads(found.group(1)), text


def decode_png(uri):
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :]))))


def quantized_reference(relevance):
    """128 + round(127 v), v = map / P99.5(|map|) clipped, for one (H, W) map."""
    scale = helpers.slow_percentile(np.abs(relevance), 99.5)
    values = np.clip(relevance / scale, -1.0, 1.0)
    return 128 + np.round(127 * values)


@pytest.fixture(scope="module")
def image_report(tmp_path_factory):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=1, batch=3)
    masks = np.zeros((3, 8, 8), bool)
    masks[:, 2:5, 3:6] = True
    out = tmp_path_factory.mktemp("report") / "page.html"
    weights = [w.copy() for w in model.get_weights()]
    path = kx.report(
        METHODS,
        model,
        x,
        labels=[0, 1, 3],
        class_names=["a", "b", "</script><b>c", "d"],
        masks=masks,
        out=str(out),
    )
    data, text = page_data(path)
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)  # the model is never modified
    return model, x, masks, path, data, text


def test_report_returns_the_absolute_path_of_one_self_contained_page(image_report):
    _, _, _, path, data, text = image_report
    assert os.path.isabs(path) and os.path.isfile(path)
    assert text.startswith("<!DOCTYPE html>")
    # nothing loaded from elsewhere: no external src/href, and a CSP forbidding it
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)
    assert "<link" not in text
    assert "default-src 'none'; img-src data:" in text
    # a class name that closes the script element is escaped inside the JSON
    assert text.count("</script>") == 2
    assert data["class_names"][2] == "</script><b>c"
    assert not os.path.exists(path + ".partial")


def test_top_classes_labels_and_model_summary(image_report):
    model, x, _, _, data, _ = image_report
    scores = model(x).numpy()
    expected = np.argsort(-scores, axis=1)[:, :3]
    assert [s["classes"] for s in data["samples"]] == expected.tolist()
    assert [s["prediction"] for s in data["samples"]] == scores.argmax(1).tolist()
    assert [s["label"] for s in data["samples"]] == [0, 1, 3]
    np.testing.assert_allclose(
        [s["scores"] for s in data["samples"]], np.sort(scores, axis=1)[:, ::-1][:, :3], rtol=1e-6
    )
    parameters = sum(int(np.prod(w.shape)) for w in model.weights)
    assert data["model"] == {
        "name": "conv_sequential",
        "parameters": parameters,
        "input_shape": "(None, 8, 8, 2)",
        "output_shape": "(None, 4)",
    }
    assert data["version"] == kx.__version__ and data["kind"] == "image"


def test_each_map_is_the_quantized_explanation_of_its_sample_and_class(image_report):
    model, x, _, _, data, _ = image_report
    classes = np.array([s["classes"] for s in data["samples"]])
    for rank in range(3):
        gradient = helpers.tape_gradient(model, x, classes[:, rank]).sum(-1)
        for sample in range(3):
            shown = decode_png(data["explanations"]["gradient"][sample][rank])
            assert shown.shape == (8, 8) and shown.dtype == np.uint8
            expected = quantized_reference(gradient[sample])
            # float32 vs float64 scaling may flip a value sitting on a .5 boundary
            assert np.abs(shown.astype(int) - expected).max() <= 1
            assert np.mean(shown == expected) > 0.95
    # the classes differ, so do the maps (a report showing one class thrice would fail)
    # (one sample's maps may coincide: with one active ReLU unit every class's gradient is
    # a multiple of the same map)
    maps = data["explanations"]["gradient"]
    assert any(maps[s][0] != maps[s][1] for s in range(3))


def test_input_pictures_are_min_max_scaled_images(image_report):
    _, x, _, _, data, _ = image_report
    for sample, image in enumerate(x):
        shown = decode_png(data["samples"][sample]["input"])
        gray = image.mean(-1)  # two channels are averaged to gray
        expected = np.round(255 * (gray - gray.min()) / (gray.max() - gray.min()))
        assert shown.shape == (8, 8)
        assert np.abs(shown.astype(int) - expected).max() <= 1


def test_metrics_and_curves_match_kx_metrics_on_reference_attributions(image_report):
    model, x, masks, _, data, _ = image_report
    top = np.array([s["classes"][0] for s in data["samples"]])
    attributions = helpers.tape_gradient(model, x, top)
    rows = {row["method"]: row for row in data["metrics"]["rows"]}
    assert data["metrics"]["columns"] == [  # the report defaults, in the registry's order
        "deletion_auc",
        "insertion_auc",
        "pointing_game",
        "relevance_mass",
        "sparseness",
    ]
    deletion = kx.metrics.deletion(model, x, attributions, top, steps=64)
    insertion = kx.metrics.insertion(model, x, attributions, top, steps=64)
    row = rows["gradient"]
    np.testing.assert_allclose(row["deletion_auc"], deletion.auc.mean(), rtol=1e-5)
    np.testing.assert_allclose(row["insertion_auc"], insertion.auc.mean(), rtol=1e-5)
    # Gini index of |a| over all elements of each sample (Hurley & Rickard), by hand
    values = np.sort(np.abs(attributions).reshape(3, -1), axis=1)
    d = values.shape[1]
    gini = ((2 * np.arange(1, d + 1) - d - 1) * values).sum(1) / (d * values.sum(1))
    np.testing.assert_allclose(row["sparseness"], gini.mean(), rtol=1e-5)
    # pointing game: is the top pixel (|channel sum|) inside the mask
    summed = attributions.sum(-1).reshape(3, -1)
    hits = [masks[i].ravel()[np.argmax(summed[i])] for i in range(3)]
    assert row["pointing_game"] == pytest.approx(np.mean(hits))
    curve = data["curves"]["gradient"]
    # the page keeps 4 decimals
    np.testing.assert_allclose(curve["fractions"], np.arange(65) / 64, atol=5.1e-5)
    np.testing.assert_allclose(curve["deletion"], deletion.scores, atol=6e-5)
    np.testing.assert_allclose(curve["insertion"], insertion.scores, atol=6e-5)
    assert set(rows) == {"gradient", "grad_cam"}


def test_a_method_that_fails_is_listed_with_its_reason(image_report):
    _, _, _, _, data, _ = image_report
    assert [m["name"] for m in data["methods"]] == ["gradient", "grad_cam"]
    assert all(m["seconds"] > 0 for m in data["methods"])
    (failed,) = data["failed"]
    assert failed["name"] == "smoothgrad"
    assert (
        failed["reason"].startswith("TypeError: SmoothGrad got an unexpected parameter")
        and "bogus" in failed["reason"]
    )
    assert set(data["explanations"]) == {"gradient", "grad_cam"}


def test_colour_tables_are_matplotlibs(image_report):
    import matplotlib

    _, _, _, _, data, _ = image_report
    for name in ("bwr", "Reds", "inferno"):
        expected = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3]
        np.testing.assert_allclose(
            np.array(data["colormaps"][name]) / 255, expected, atol=0.5 / 255
        )


class TiresAfterThreeCalls(kx.Gradient):
    """A gradient that fails from its fourth call: the metric that re-explains fails."""

    calls = 0

    def analyze(self, x, target=None, **kwargs):
        TiresAfterThreeCalls.calls += 1
        if TiresAfterThreeCalls.calls > 3:
            raise RuntimeError("tired")
        return super().analyze(x, target, **kwargs)


def test_a_metric_that_fails_leaves_an_empty_cell_with_the_reason(tmp_path, monkeypatch):
    helpers.register_temporarily(monkeypatch, "zz_tired", TiresAfterThreeCalls)
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=2, batch=2)
    metrics = ["sparseness", "sensitivity_max"]
    path = kx.report(["zz_tired"], model, x, metrics=metrics, out=str(tmp_path / "r.html"))
    data, _ = page_data(path)
    (row,) = data["metrics"]["rows"]
    assert row["sensitivity_max"] is None and 0 < row["sparseness"] < 1
    assert data["metrics"]["notes"] == {"zz_tired sensitivity_max": "RuntimeError: tired"}


def test_targets_list_explains_the_same_classes_for_every_sample(tmp_path):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), seed=2, batch=2)
    path = kx.report(["gradient"], model, x, targets=[2, 0], metrics=[], out=str(tmp_path / "r"))
    data, _ = page_data(path)
    assert [s["classes"] for s in data["samples"]] == [[2, 0], [2, 0]]
    gradient = helpers.tape_gradient(model, x, 2).sum(-1)
    shown = decode_png(data["explanations"]["gradient"][1][0])
    assert np.abs(shown.astype(int) - quantized_reference(gradient[1])).max() <= 1
    assert data["metrics"]["columns"] == [] and data["curves"] == {}
    path = kx.report(["gradient"], model, x, targets=1, metrics=[], out=str(tmp_path / "r"))
    assert [len(s["classes"]) for s in page_data(path)[0]["samples"]] == [1, 1]


def test_text_report_shows_escaped_tokens_coloured_by_input_times_gradient(tmp_path):
    model = helpers.token_classifier()
    ids = np.array([[1, 5, 7, 2], [3, 3, 9, 0]], "int32")
    words = [["<b>", "cat", "&", "sat"], ["a", "a", "dog", "."]]
    path = kx.report(["input_t_gradient"], model, ids, tokens=words, out=str(tmp_path / "t.html"))
    data, _ = page_data(path)
    assert data["kind"] == "text" and data["metrics"]["columns"] == []
    embeddings = model.get_layer("embedding").get_weights()[0]
    weights = model.get_layer("head").get_weights()[0]
    for sample in range(2):
        for rank, c in enumerate(data["samples"][sample]["classes"]):
            markup = data["explanations"]["input_t_gradient"][sample][rank]
            spans = re.findall(
                r'<span class="kx-token" title="([^"]*)" style="([^"]*)">([^<]*)</span>', markup
            )
            assert [html.unescape(text) for _, _, text in spans] == words[sample]
            spans = [(style, title, text) for title, style, text in spans]
            expected = embeddings[ids[sample]] @ weights[:, c] / 4  # closed form, linear model
            np.testing.assert_allclose([float(t) for _, t, _ in spans], expected, rtol=2e-3)
            # the most positive token is drawn in the most saturated red of bwr
            strongest = int(np.argmax(expected / np.abs(expected).max()))
            if expected[strongest] == np.abs(expected).max():
                assert spans[strongest][0].startswith("background-color: #ff0000;")


def test_tabular_report_draws_bars_proportional_to_the_attributions(tmp_path):
    model = helpers.dense_sequential(softmax=False)
    x = helpers.data((6,), seed=3, batch=2)
    names = ["age", "bmi", "bp", "s1", "s2", "s3"]
    path = kx.report(["gradient"], model, x, feature_names=names, out=str(tmp_path / "t.html"))
    data, _ = page_data(path)
    classes = np.array([s["classes"] for s in data["samples"]])
    gradients = np.stack([helpers.tape_gradient(model, x, classes[:, r]) for r in range(3)])
    scale = np.abs(gradients).max()  # one axis per method, shared by samples and classes
    for sample in range(2):
        for rank in range(3):
            svg = data["explanations"]["gradient"][sample][rank]
            assert re.findall(r">([a-z0-9]+)</text>", svg) == names
            widths = [
                float(w) for w in re.findall(r'<rect x="[^"]*" y="[^"]*" width="([^"]*)"', svg)
            ]
            np.testing.assert_allclose(
                widths, 100 * np.abs(gradients[rank, sample]) / scale, atol=0.006
            )
            lefts = [float(v) for v in re.findall(r'<rect x="([^"]*)"', svg)]
            negative = gradients[rank, sample] < 0
            # positive bars start at the centre line (x = 190), negative ones end there
            np.testing.assert_allclose(np.array(lefts)[~negative], 190.0)
            np.testing.assert_allclose((np.array(lefts) + widths)[negative], 190.0, atol=0.006)


def test_unwritable_out_fails_before_explaining(tmp_path):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=1)
    missing = tmp_path / "no" / "such" / "page.html"
    with pytest.raises(OSError, match=r"report: cannot write .*page\.html.* does not exist or is"):
        kx.report(["gradient"], model, x, out=str(missing))
    with pytest.raises(OSError, match=r"report: out=.* is a folder\. Pass a file name"):
        kx.report(["gradient"], model, x, out=str(tmp_path))


def test_a_failed_write_leaves_the_old_page_and_no_partial_file(tmp_path, monkeypatch):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=1)
    out = tmp_path / "page.html"
    out.write_text("the previous report")
    helpers.fail_fsync(monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        kx.report(["gradient"], model, x, metrics=[], out=str(out))
    assert out.read_text() == "the previous report"
    assert os.listdir(tmp_path) == ["page.html"]


def test_every_method_failing_writes_nothing(tmp_path):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=1)
    out = tmp_path / "page.html"
    with pytest.raises(
        ValueError, match=r"report: every method failed.*smoothgrad: TypeError: SmoothGrad got"
    ):
        kx.report({"smoothgrad": {"bogus": 1}}, model, x, out=str(out))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"labels": [0]}, r"labels must have one entry per sample of x \(2\)\. Received: 1"),
        (
            {"masks": np.zeros((3, 8, 8), bool)},
            r"masks must have one entry per sample of x \(2\)\. Received: 3",
        ),
        ({"masks": np.zeros((2, 4, 4), bool)}, r"masks must be \(B, H, W\) = \(2, 8, 8\)"),
        ({"class_names": ["a"]}, r"class_names must name the model's 4 classes\. Received: 1"),
        ({"targets": [0, 7]}, r"targets must be None .* in \[0, 4\)\. Received: targets=\[0, 7\]"),
        ({"targets": 0}, r"targets=k asks for the top k classes, k >= 1\. Received: targets=0"),
        ({"metrics": ["speed"]}, r"report: unknown metric\. Received: 'speed'"),
        (
            {"metrics": ["pointing_game"]},
            r"report: metric 'pointing_game' compares with ground-truth masks\. "
            r"Received: masks=None",
        ),
        ({"tokens": [["a"], ["b"]]}, r"tokens must be 8 strings per sample of token ids x"),
        ({"feature_names": ["a"]}, r"feature_names must name the 2 features of tabular x"),
        ({"methods": 3}, r"report: methods must be a list of registry names"),
        ({"x": np.zeros((2, 8, 8), "float32")}, r"x must be images \(B, H, W, C\), token ids"),
    ],
)
def test_bad_input_is_rejected_with_the_fix(tmp_path, arguments, message):
    model = helpers.conv_sequential()
    call = {"x": helpers.data((8, 8, 2), batch=2), "methods": ["gradient"], **arguments}
    x, methods = call.pop("x"), call.pop("methods")
    with pytest.raises(ValueError, match=message):
        kx.report(methods, model, x, out=str(tmp_path / "r.html"), **call)
    assert os.listdir(tmp_path) == []


def test_command_line_writes_a_report_from_a_saved_model(tmp_path, capsys):
    model = helpers.conv_sequential()
    model.save(tmp_path / "model.keras")
    x = helpers.data((8, 8, 2), seed=4, batch=2)
    np.savez(
        tmp_path / "data.npz", x=x, labels=np.array([1, 2]), class_names=np.array(list("abcd"))
    )
    out = tmp_path / "page.html"
    status = cli.main(
        [
            "report",
            "--model", str(tmp_path / "model.keras"),
            "--data", str(tmp_path / "data.npz"),
            "--methods", "gradient,lrp.epsilon",
            "--top-k", "2",
            "--metrics", "deletion_auc",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    assert f"Report: {out.resolve()}" in capsys.readouterr().out
    data, _ = page_data(out)
    assert [m["name"] for m in data["methods"]] == ["gradient", "lrp.epsilon"]
    assert data["class_names"] == list("abcd") and data["metrics"]["columns"] == ["deletion_auc"]
    assert [s["label"] for s in data["samples"]] == [1, 2]
    assert [len(s["classes"]) for s in data["samples"]] == [2, 2]
    gradient = helpers.tape_gradient(model, x, np.array(data["samples"][0]["classes"][0])).sum(-1)
    shown = decode_png(data["explanations"]["gradient"][0][0])
    assert np.abs(shown.astype(int) - quantized_reference(gradient[0])).max() <= 1


def test_command_line_rejects_data_without_x(tmp_path, capsys):
    keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]).save(tmp_path / "m.keras")
    np.savez(tmp_path / "d.npz", images=np.zeros((1, 2)))
    with pytest.raises(SystemExit):
        cli.main(["report", "--model", str(tmp_path / "m.keras"), "--data", str(tmp_path / "d.npz"),
                  "--methods", "gradient"])  # fmt: skip
    assert "report: data.npz must hold the samples under the key 'x'" in capsys.readouterr().err


def influence_setting():
    """A small CNN with a Dense head, 40 training images and TracIn on the head."""
    model = helpers.shapes_head_cnn()
    train, train_labels, _ = kx.datasets.shapes(40, size=16, seed=1)
    x, _, _ = kx.datasets.shapes(3, size=16, seed=2)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    tracin = kx.influence.TracIn(model, (train, train_labels), loss=loss, layers=["head"])
    return model, x, train, train_labels, tracin


def test_influence_panel_holds_each_samples_proponents_and_opponents(tmp_path):
    model, x, train, train_labels, tracin = influence_setting()
    path = kx.report(["gradient"], model, x, metrics=[], influence=tracin, influence_k=2,
                     out=str(tmp_path / "page.html"))  # fmt: skip
    data, _ = page_data(path)
    panel = data["influence"]
    assert panel["method"] == "TracIn"
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    scores = tracin.influence(x, predicted)  # the test loss of the predicted class
    for row, sample in enumerate(panel["samples"]):
        best = np.argsort(-scores[row], kind="stable")[:2]
        worst = np.argsort(scores[row], kind="stable")[:2]
        assert [i for i, _ in sample["proponents"]] == best.tolist()
        assert [i for i, _ in sample["opponents"]] == worst.tolist()
        np.testing.assert_allclose([s for _, s in sample["proponents"]], scores[row, best])
        for index in [*best, *worst]:
            shown = panel["train"][str(index)]
            assert shown["label"] == train_labels[index]
            np.testing.assert_array_equal(
                decode_png(shown["input"]),
                kx.visualize.to_uint8(kx.visualize.as_rgb(train[index : index + 1]))[0],
            )


def test_influence_panel_rejects_what_it_cannot_show(tmp_path):
    model, x, train, train_labels, _ = influence_setting()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    streamed = kx.influence.TracIn(
        model, tf.data.Dataset.from_tensor_slices((train, train_labels)), loss=loss
    )
    out = str(tmp_path / "page.html")
    with pytest.raises(
        ValueError,
        match=r"report: influence needs a method built on training images held as an array "
        r"\(N, H, W, C\), to show them. Received: a TracIn on a tf.data.Dataset",
    ):
        kx.report(["gradient"], model, x, metrics=[], influence=streamed, out=out)
    with pytest.raises(TypeError, match=r"report: influence must be a kx.influence method"):
        kx.report(["gradient"], model, x, metrics=[], influence="tracin", out=out)
    with pytest.raises(ValueError, match=r"report: influence_k must be a positive int"):
        kx.report(["gradient"], model, x, metrics=[], influence=streamed, influence_k=0, out=out)
    assert not os.path.exists(out)


def test_command_line_influence_writes_the_report_with_tracin(tmp_path, capsys):
    model, x, train, train_labels, tracin = influence_setting()
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "train.npz", x=train, y=train_labels)
    np.savez(tmp_path / "test.npz", x=x, labels=np.array([0, 1, 2]))
    out = tmp_path / "influence.html"
    status = cli.main(
        [
            "influence",
            "--model", str(tmp_path / "model.keras"),
            "--train", str(tmp_path / "train.npz"),
            "--test", str(tmp_path / "test.npz"),
            "--layers", "head",
            "--loss", "SparseCategoricalCrossentropy",
            "--from-logits",
            "--k", "2",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert status == 0 and f"Report: {out.resolve()}" in capsys.readouterr().out
    data, _ = page_data(out)
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    indices, scores = tracin.proponents(x, predicted, 2)
    for row, sample in enumerate(data["influence"]["samples"]):
        assert [i for i, _ in sample["proponents"]] == indices[row].tolist()
        np.testing.assert_allclose([s for _, s in sample["proponents"]], scores[row], rtol=1e-5)
    assert [s["label"] for s in data["samples"]] == [0, 1, 2]
    np.savez(tmp_path / "bad.npz", x=train)
    with pytest.raises(SystemExit):
        cli.main(["influence", "--model", str(tmp_path / "model.keras"), "--train",
                  str(tmp_path / "bad.npz"), "--test", str(tmp_path / "test.npz")])  # fmt: skip
    assert "influence: train.npz must hold x and y. Received keys: ['x']" in (
        capsys.readouterr().err
    )


# =====================================================================================
# the concept panel (kx.crp)
# =====================================================================================
def concept_setting():
    """The small shapes CNN, CRP at its convolution, references over 30 training images."""
    model = helpers.shapes_head_cnn()
    layer = model.layers[0].name
    train = kx.datasets.shapes(30, size=16, seed=1)[0]
    x = kx.datasets.shapes(3, size=16, seed=2)[0]
    references = kx.crp.reference_samples(model, train, layer, k=2)
    return model, x, kx.crp.CRP(model, layer), references


def test_concept_panel_holds_each_samples_top_concepts_heatmaps_and_crops(tmp_path):
    model, x, crp, references = concept_setting()
    path = kx.report(["gradient"], model, x, metrics=[], concepts=crp, concepts_k=3,
                     references=references, out=str(tmp_path / "page.html"))  # fmt: skip
    data, _ = page_data(path)
    panel = data["concepts"]
    assert panel["layer"] == crp.layer.name
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    relevances = crp.concept_relevance(x, target=predicted)
    for row, sample in enumerate(panel["samples"]):
        top = np.argsort(-relevances[row], kind="stable")[:3]
        assert [c["channel"] for c in sample["concepts"]] == top.tolist()
        shares = relevances[row, top] / np.abs(relevances[row]).sum()
        np.testing.assert_allclose([c["share"] for c in sample["concepts"]], shares, atol=1e-4)
        heatmaps = crp.conditional(x[row : row + 1], top.tolist(), target=predicted[row])[0]
        expected = kx.visualize.to_uint8(kx.visualize.overlay(x[[row] * 3], heatmaps))
        for concept, picture in zip(sample["concepts"], expected):
            np.testing.assert_array_equal(decode_png(concept["overlay"]), picture)
            position = references.channels.index(concept["channel"])
            crops = kx.visualize.to_uint8(kx.visualize.as_rgb(references.patches[position]))
            assert len(concept["references"]) == 2
            for uri, crop in zip(concept["references"], crops):
                np.testing.assert_array_equal(decode_png(uri), crop)


def test_a_bad_concept_panel_is_named(tmp_path):
    model, x, crp, references = concept_setting()
    out = str(tmp_path / "page.html")
    with pytest.raises(TypeError, match=r"report: concepts must be a kx.crp.CRP. Received: str"):
        kx.report(["gradient"], model, x, metrics=[], concepts="conv", out=out)
    other = kx.crp.reference_samples(model, x, crp.layer.name, k=1, crop=False)
    with pytest.raises(ValueError, match=r"report: references must be the crops \(crop=True\)"):
        kx.report(["gradient"], model, x, metrics=[], concepts=crp, references=other, out=out)
    with pytest.raises(ValueError, match=r"report: concepts_k must be a positive int"):
        kx.report(["gradient"], model, x, metrics=[], concepts=crp, concepts_k=0, out=out)
    tabular = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(
        ValueError,
        match=r"report: concepts shows conditional heatmaps of images; x holds tabular data. "
        r"Received: concepts=CRP.",
    ):
        kx.report(["gradient"], tabular, np.ones((2, 4), "float32"), metrics=[], concepts=crp,
                  out=out)  # fmt: skip
