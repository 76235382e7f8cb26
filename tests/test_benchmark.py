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


def test_benchmark_metrics_chooses_the_columns(tmp_path, capsys):
    out = tmp_path / "bench"
    common = ["benchmark", "--out", str(out), "--methods", "gradient", "--train", "64"]
    common += ["--epochs", "1", "--samples", "2", "--size", "16"]
    assert cli.main([*common, "--metrics", "sparseness, pointing_game"]) == 0
    with open(out / "benchmark.csv") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["method", "seconds_per_sample", "sparseness", "pointing_game"]
    markdown = (out / "benchmark.md").read_text().splitlines()
    assert markdown[0] == "| method | seconds_per_sample ↓ | sparseness ↑ | pointing_game ↑ |"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main([*common, "--metrics", "sparseness,nonsense"])
    assert "benchmark --metrics: unknown metric. Received: 'nonsense'" in capsys.readouterr().err


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
        lines[2] == "| m | 0.500 | 0.500 | 0.500 | 1.50e-05 | 0.500 | 0.500 | 0.500 | 0.500 | nan |"
    )


def test_benchmark_rejects_small_images(capsys):
    with pytest.raises(SystemExit):
        cli.main(["benchmark", "--size", "8"])
    assert "must be at least 16 pixels, got 8" in capsys.readouterr().err


def dihedral_group(image):
    turns = [np.rot90(image, k, axes=(0, 1)) for k in range(4)]
    return turns + [turn[:, ::-1] for turn in turns]


def test_dihedral_batches_turn_and_mirror_each_batch_as_a_whole_and_keep_labels():
    import random

    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.random((10, 6, 6, 1), dtype=np.float32)  # no symmetric image: all 8 differ
    labels = np.arange(10)
    before = (np.random.get_state()[1].copy(), random.getstate())
    tf_before = tf.random.get_global_generator().state.numpy().copy()
    data = benchmark.dihedral_batches(images, labels, 4, seed=3)
    epochs = [list(data) for _ in range(2)]
    seen = set()
    for batches in epochs:
        assert [len(batch_labels) for _, batch_labels in batches] == [4, 4, 2]
        order = np.concatenate([batch_labels.numpy() for _, batch_labels in batches])
        assert sorted(order) == list(range(10))  # a permutation: each image once per epoch
        for turned, batch_labels in batches:
            turned = turned.numpy()
            originals = images[batch_labels.numpy()]
            # one element g of the dihedral group, the same for the whole batch
            matches = [
                g
                for g in range(8)
                if all(
                    np.array_equal(dihedral_group(original)[g], image)
                    for original, image in zip(originals, turned)
                )
            ]
            assert len(matches) == 1
            seen.add(matches[0])
    assert len(seen) > 1
    first, second = ([labels.numpy() for _, labels in batches] for batches in epochs)
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))  # reshuffled
    again = list(benchmark.dihedral_batches(images, labels, 4, seed=3))
    for (a, la), (b, lb) in zip(again, epochs[0]):  # seeded: the same first epoch
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(la.numpy(), lb.numpy())
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]
    np.testing.assert_array_equal(tf.random.get_global_generator().state.numpy(), tf_before)


def test_the_strided_first_convolution_covers_every_pixel_equally():
    import keras
    import tensorflow as tf

    conv = benchmark.shapes_cnn(64).get_layer("conv1")
    assert conv.strides == (2, 2) and conv.kernel_size == (4, 4)
    ones = keras.layers.Conv2D.from_config({**conv.get_config(), "use_bias": False})
    ones.build((None, 64, 64, 3))
    ones.set_weights([np.ones_like(conv.get_weights()[0])])
    x = tf.zeros((1, 64, 64, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(ones(x))
    windows = tape.gradient(total, x).numpy()[0, :, :, 0] / conv.filters  # windows per pixel
    assert np.all(windows[1:-1, 1:-1] == 4)  # 2 x 2 windows on every interior pixel
    assert benchmark.shapes_cnn(32).get_layer("conv1").kernel_size == (3, 3)


def test_shuffled_batches_read_no_global_seed_and_reshuffle_every_epoch():
    import tensorflow as tf

    images = np.arange(10, dtype=np.float32)[:, None]
    labels = np.arange(10)

    def two_epochs():
        data = benchmark.shuffled_batches(images, labels, 4, seed=5)
        return [np.concatenate([b.numpy() for _, b in data]) for _ in range(2)]

    tf.random.set_seed(1)
    first = two_epochs()
    tf.random.set_seed(2)  # a user's global seed does not enter the order
    second = two_epochs()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # epoch e is the permutation of default_rng([seed, e]); a new order each epoch
    for epoch, order in enumerate(first):
        np.testing.assert_array_equal(order, np.random.default_rng([5, epoch]).permutation(10))
    assert not np.array_equal(first[0], first[1])
