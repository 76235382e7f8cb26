"""``keras-explain benchmark``: the table, its defaults and its markdown."""

import csv
import re

import matplotlib.image
import numpy as np
import pytest

from keras_explain import analyzers, benchmark, cli


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
