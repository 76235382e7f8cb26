"""The keras-explain command: method listing, the demo's grid and logs, argument errors."""

import csv
import glob
import os
import re
import subprocess
import sys

import helpers
import matplotlib.image
import numpy as np
import pytest

import keras_explain as kx
from keras_explain import analyzers, benchmark, cli, demo


def test_methods_lists_the_registry(capsys):
    assert cli.main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == analyzers.names()
    gradient = next(line for line in lines if line.split()[0] == "gradient")
    assert "Saliency" in gradient
    deconvnet = next(line for line in lines if line.split()[0] == "deconvnet")
    assert "g_in = relu(g_out)" in deconvnet  # reST markup is stripped for the terminal
    assert not any("``" in line or ":class:" in line for line in lines)
    epsilon = next(line for line in lines if line.split()[0] == "lrp.epsilon")
    assert epsilon.endswith("LRP-ε on every linear op [kx.LRP(model, 'epsilon')]")


def test_methods_through_the_installed_module():
    result = subprocess.run(
        [sys.executable, "-m", "keras_explain.cli", "methods"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "integrated_gradients" in result.stdout.split()


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--epochs", "0"])
    assert exit_info.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([])


def test_the_demo_uses_the_benchmark_table_at_its_image_size():
    table = benchmark.method_parameters(8, channels=1)  # the digits: 8x8, one channel
    assert table["occlusion"] == {"window": 2, "stride": 1, "baseline": 0.0}
    assert table["rise"]["cells"] == 4  # cells of at least 2 pixels
    assert table["deeplift_shap"]["background"].shape == (2, 8, 8, 1)
    segments = table["lime"]["segmentation"](np.zeros((8, 8, 1)))
    assert segments.max() == 15 and np.all(np.bincount(segments.ravel()) == 4)
    model = demo.digits_cnn()
    x = demo.digits_data()[2][:2]
    results, skipped = demo.explain_all(model, x, methods=["occlusion"], log=lambda line: None)
    assert not skipped
    expected = kx.Occlusion(model, window=2, stride=1, baseline=0.0).analyze(x)
    np.testing.assert_array_equal(results["occlusion"], expected)  # the same computation
    assert not np.allclose(kx.Occlusion(model, window=4, stride=4).analyze(x), expected)


class Broken(analyzers.Gradient):
    """A method that always fails, to check the demo skips it."""

    def __init__(self, model, **kwargs):
        raise RuntimeError("broken on purpose\nsecond line")


class Tabular(analyzers.Gradient):
    """A method whose output is not an image map."""

    def analyze(self, x, target=None, **kwargs):
        return np.zeros((len(x), 3), "float32")


def run_demo(tmp_path, capsys, *extra):
    out = tmp_path / "demo"
    status = cli.main(["demo", "--out", str(out), "--epochs", "1", "--samples", "2", *extra])
    return status, out, capsys.readouterr().out


def counts(printed):
    drawn, rest = printed.split(" methods drawn, ")
    return int(drawn.split()[-1]), int(rest.split()[0])


def test_demo_writes_grid_and_logs_and_reports_skipped(tmp_path, capsys, monkeypatch):
    helpers.register_temporarily(monkeypatch, "zz_broken", Broken)
    helpers.register_temporarily(monkeypatch, "zz_tabular", Tabular)
    status, out, printed = run_demo(
        tmp_path, capsys, "--methods", "gradient,grad_cam,zz_broken,zz_tabular"
    )
    assert status == 0
    png = out / "explanations.png"
    assert f"Explanation grid: {png.resolve()}" in printed
    page = out / "report.html"
    assert f"Explanation report (open it in a browser): {page.resolve()}" in printed
    # the report shows the demo's methods that worked (gradient, grad_cam), top 3 classes
    assert page.read_text().count('"methods":[{"name":"gradient"') == 1
    assert '{"name":"grad_cam","seconds":' in page.read_text()
    assert f"TensorBoard logs: {(out / 'logs').resolve()}" in printed
    picture = matplotlib.image.imread(str(png))
    assert picture.ndim == 3 and picture.shape[0] > 100 and picture.shape[1] > 200
    shapes_png = out / "shapes.png"
    assert f"Shapes grid (2 methods): {shapes_png.resolve()}" in printed
    shapes_picture = matplotlib.image.imread(str(shapes_png))
    assert shapes_picture.ndim == 3 and shapes_picture.shape[1] > 200
    assert "images of 64x64" in printed

    assert "zz_broken: RuntimeError: broken on purpose" in printed
    assert "second line" not in printed
    assert "zz_tabular: ValueError: returned shape (2, 3), not an image map" in printed
    assert counts(printed) == (2, 2)
    assert "  gradient " in printed and "  grad_cam " in printed

    assert glob.glob(str(out / "logs" / "explanations" / "events.out.tfevents.*"))
    assert glob.glob(str(out / "logs" / "train" / "events.out.tfevents.*"))


def test_demo_rejects_unknown_method_names(capsys):
    with pytest.raises(SystemExit):
        cli.main(["demo", "--methods", "gradient,gradiant"])
    assert "unknown method(s) ['gradiant']" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_draws_every_registered_method(tmp_path, capsys):
    status, out, printed = run_demo(tmp_path, capsys)
    assert status == 0 and (out / "explanations.png").is_file()
    # every registered method works on the demo CNN: all drawn, none skipped
    assert counts(printed) == (len(analyzers.names()), 0)
    digits, shapes = printed.split("Training a small CNN on kx.datasets.shapes")
    timed = re.findall(r"^  (\S+) +\d+\.\d+ s$", digits, flags=re.MULTILINE)
    assert timed == analyzers.names()
    timed = re.findall(r"^  (\S+) +\d+\.\d+ s$", shapes, flags=re.MULTILINE)
    assert timed == list(benchmark.QUICK_METHODS)  # one per family at 64x64
    assert "Skipped methods:" not in printed
    assert not re.search(r"^  skipped ", printed, flags=re.MULTILINE)


def test_digits_data_and_model():
    x_train, y_train, x_test, y_test = demo.digits_data()
    assert x_train.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
    assert x_train.dtype == np.float32 and x_train.min() == 0.0 and x_train.max() == 1.0
    assert set(np.unique(y_train)) == set(range(10)) and len(y_test) == 360
    model = demo.digits_cnn()
    assert model.output_shape == (None, 10)


# =====================================================================================
# keras-explain benchmark
# =====================================================================================
def test_benchmark_writes_a_finite_table(tmp_path, capsys):
    out = tmp_path / "bench"
    status = cli.main(
        [
            "benchmark",
            "--out",
            str(out),
            "--methods",
            "gradient,grad_cam",
            "--train",
            "200",
            "--epochs",
            "1",
            "--samples",
            "4",
            "--size",
            "16",
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    accuracy = float(re.search(r"Test accuracy: (\d\.\d{3})", printed).group(1))
    assert 0.0 <= accuracy <= 1.0
    assert "2 methods evaluated, 0 skipped." in printed

    with open(out / "benchmark.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [row["method"] for row in table] == ["gradient", "grad_cam"]
    assert list(table[0]) == ["method", *benchmark.COLUMNS]
    bounds = {
        "seconds_per_sample": (0.0, np.inf),
        "deletion_auc": (-np.inf, np.inf),
        "insertion_auc": (-np.inf, np.inf),
        "infidelity": (0.0, np.inf),
        "sensitivity_max": (0.0, np.inf),
        "pointing_game": (0.0, 1.0),
        "relevance_mass": (0.0, 1.0),
        "randomization": (-1.0, 1.0),
        "sparseness": (0.0, 1.0),
    }
    assert set(bounds) == set(benchmark.COLUMNS)
    for row in table:
        for column, (low, high) in bounds.items():
            value = float(row[column])
            assert np.isfinite(value) and low <= value <= high, (row["method"], column, value)
        # 4 samples: the pointing game's mean is a multiple of 1/4
        assert float(row["pointing_game"]) * 4 == pytest.approx(
            round(float(row["pointing_game"]) * 4)
        )

    markdown = (out / "benchmark.md").read_text().splitlines()
    assert len(markdown) == 2 + len(table)
    assert markdown[0].startswith("| method | seconds_per_sample ↓ | deletion_auc ↓")
    assert all(line.count("|") == 2 + len(benchmark.COLUMNS) for line in markdown)
    assert "\n".join(markdown) in printed  # the printed table is the saved one
    picture = matplotlib.image.imread(str(out / "benchmark.png"))
    assert picture.ndim == 3 and picture.shape[1] > 500


def test_benchmark_defaults_and_parameters():
    chosen = benchmark.default_methods()
    assert chosen == [name for name in analyzers.names() if name not in benchmark.SLOW_METHODS]
    assert set(benchmark.SLOW_METHODS) <= set(analyzers.names())
    assert set(benchmark.QUICK_METHODS) <= set(chosen)
    from keras_explain.analyzers import registry

    for size, channels in ((8, 1), (16, 3), (32, 3), (64, 3)):  # the demo's and benchmark's
        for name, parameters in benchmark.method_parameters(size, channels).items():
            assert set(parameters) <= set(registry.parameters(name)), name
    segments = benchmark.method_parameters(32)["lime"]["segmentation"](np.zeros((32, 32, 3)))
    assert segments.max() == 63 and np.all(np.bincount(segments.ravel()) == 16)


def test_benchmark_markdown_formats_nan_and_small_values():
    row = {"method": "m", **{column: 0.5 for column in benchmark.COLUMNS}}
    row["randomization"], row["infidelity"] = float("nan"), 1.5e-5
    lines = benchmark.markdown_table([row]).splitlines()
    assert (
        lines[2] == "| m | 0.500 | 0.500 | 0.500 | 1.50e-05 | 0.500 | 0.500 | 0.500 | nan | 0.500 |"
    )


def test_benchmark_rejects_small_images(capsys):
    with pytest.raises(SystemExit):
        cli.main(["benchmark", "--size", "8"])
    assert "must be at least 16 pixels, got 8" in capsys.readouterr().err
