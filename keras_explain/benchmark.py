"""``keras-explain benchmark``: which method is right on a model with ground truth?

A small CNN is trained on :func:`keras_explain.datasets.shapes` (the class is the
shape of one object; its pixel mask is the ground truth), then every image
method explains a held-out batch and :func:`keras_explain.metrics.evaluate`
scores it. The table is printed, saved as CSV and Markdown, and plotted.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keras_explain.metrics import registry

#: Columns of the table after ``method``, in order: the row keys of
#: :func:`keras_explain.metrics.evaluate` with its default metrics and masks
#: (:func:`columns`, read from the metric registry at each access).
COLUMNS: tuple[str, ...]
#: Which direction is better, per column (shown in the Markdown header and the plot):
#: ``seconds_per_sample`` and every registered metric (:func:`better`, read from the
#: metric registry at each access).
BETTER: dict[str, str]


def columns() -> tuple[str, ...]:
    """``seconds_per_sample``, then the metrics ``evaluate`` computes by default with masks."""
    return ("seconds_per_sample", *registry.default_metrics(masks=True))


def better() -> dict[str, str]:
    """``{column: "higher" or "lower"}`` for ``seconds_per_sample`` and every registered metric."""
    return {"seconds_per_sample": "lower", **registry.directions()}


def __getattr__(name: str):
    """``COLUMNS`` and ``BETTER``, derived from the metric registry when accessed."""
    if name == "COLUMNS":
        return columns()
    if name == "BETTER":
        return better()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Methods left out by default because one evaluation re-explains the batch about
#: twenty times (sensitivity-max, randomization) and each explanation optimizes
#: or fits a surrogate per image; name them with ``--methods`` to include them.
SLOW_METHODS = ("meaningful_perturbation", "lime", "kernel_shap")
#: One method per family, for ``--quick``.
QUICK_METHODS = (
    "gradient",
    "input_t_gradient",
    "integrated_gradients",
    "smoothgrad",
    "guided_backprop",
    "grad_cam",
    "lrp.epsilon",
    "lrp.alpha_1_beta_0",
    "deep_taylor",
    "occlusion",
)
#: The full run: training images, epochs, image size, explained samples.
FULL = {"train": 40000, "epochs": 5, "size": 32, "samples": 32}
#: ``--quick``: less training (lower accuracy), fewer methods and samples.
QUICK = {"train": 4000, "epochs": 4, "size": 32, "samples": 8}


def grid_segments(image: Any, cell: int = 4) -> np.ndarray:
    """Superpixels of square ``cell × cell`` pixel cells, labelled row-major from 0.

    Example:
        >>> from keras_explain.benchmark import grid_segments
        >>> import numpy as np
        >>> grid_segments(np.zeros((4, 6, 3)), cell=2)
        array([[0, 0, 1, 1, 2, 2],
               [0, 0, 1, 1, 2, 2],
               [3, 3, 4, 4, 5, 5],
               [3, 3, 4, 4, 5, 5]], dtype=int32)
    """
    from keras_explain.analyzers.perturbation.segmentation import grid

    return grid(*np.shape(image)[:2], cell=cell)


def background(sample_shape: Sequence[int]) -> np.ndarray:
    """The reference baselines of DeepLiftShap and GradientShap here: black and mid-grey.

    Args:
        sample_shape: The shape of one image (data in [0, 1]).

    Returns:
        ``(2, *sample_shape)`` float32.

    Example:
        >>> background((2, 2, 1))[:, 0, 0, 0]
        array([0. , 0.5], dtype=float32)
    """
    return np.stack([np.zeros(sample_shape, "float32"), np.full(sample_shape, 0.5, "float32")])


def method_parameters(size: int, channels: int = 3) -> dict[str, dict[str, Any]]:
    """The parameters of the methods, for ``size × size × channels`` images in [0, 1].

    The one table of the benchmark and of ``keras-explain demo`` (8x8 digits, one
    channel). Bounded methods get the data range [0, 1]; windows, cells and
    superpixels are an eighth of the image side, at least 2 pixels (so RISE has at
    most ``size / 2`` cells a side); feature ablation and permutation take those
    cells as feature groups; sampling methods are seeded; DeepLiftShap and
    GradientShap get :func:`background`. Every other method runs with its defaults.

    Example:
        >>> table = method_parameters(8, channels=1)
        >>> table["occlusion"], table["rise"]["cells"], table["deeplift_shap"]["background"].shape
        ({'window': 2, 'stride': 1, 'baseline': 0.0}, 4, (2, 8, 8, 1))
    """
    cell = max(2, size // 8)
    segments = functools.partial(grid_segments, cell=cell)
    cells = grid_segments(np.zeros((size, size)), cell=cell)
    return {
        "deep_taylor.bounded": {"low": 0.0, "high": 1.0},
        "lrp.epsilon_gamma_box": {"low": 0.0, "high": 1.0},
        "smoothgrad": {"seed": 0},
        "squaregrad": {"seed": 0},
        "vargrad": {"seed": 0},
        "occlusion": {"window": cell, "stride": max(1, cell // 2), "baseline": 0.0},
        "feature_ablation": {"feature_mask": cells, "baseline": 0.0},
        "feature_permutation": {"feature_mask": cells, "seed": 0},
        "rise": {"samples": 1000, "cells": min(8, size // 2), "seed": 0},
        "shapley_sampling": {"samples": 8, "segmentation": segments, "seed": 0},
        "lime": {"samples": 300, "segmentation": segments, "seed": 0},
        "kernel_shap": {"samples": 300, "segmentation": segments, "seed": 0},
        "meaningful_perturbation": {"steps": 100, "mask_size": cell, "seed": 0},
        "deeplift_shap": {"background": background((size, size, channels))},
        "gradient_shap": {"background": background((size, size, channels)), "seed": 0},
    }


def shapes_cnn(size: int = 32, seed: int = 0, *, train_steps: int = 1000):
    """The benchmark's CNN for ``size × size × 3`` shapes: 4 convolutions, 5 logits.

    Three blocks ``Conv2D → BatchNormalization → ReLU → MaxPooling2D`` (16, 32, 64
    filters), a ``Conv2D(64)`` + ReLU, global average pooling and ``Dense(5)``
    logits; Adam with a cosine-decayed learning rate over ``train_steps`` steps.
    From 64 pixels on, the first convolution has stride 2, so training costs
    about what it costs at half the size, and a 4x4 kernel: each pixel then lies
    in the same number of windows (a 3x3 kernel at stride 2 covers every other
    row and column twice, a checkerboard that shows in the explanations).
    """
    import keras

    layers = keras.layers
    inputs = keras.Input((size, size, 3), name="image")
    h = inputs
    for index, filters in enumerate((16, 32, 64), start=1):
        strides = 2 if index == 1 and size >= 64 else 1
        kernel = 4 if strides == 2 else 3
        h = layers.Conv2D(
            filters,
            kernel,
            strides,
            padding="same",
            kernel_initializer=seeded_initializer(seed, index),
            name=f"conv{index}",
        )(h)
        h = layers.BatchNormalization(name=f"norm{index}")(h)
        h = layers.ReLU(name=f"relu{index}")(h)
        h = layers.MaxPooling2D(name=f"pool{index}")(h)
    h = layers.Conv2D(
        64,
        3,
        padding="same",
        activation="relu",
        kernel_initializer=seeded_initializer(seed, 4),
        name="conv4",
    )(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = layers.Dense(5, kernel_initializer=seeded_initializer(seed, 5), name="logits")(h)
    model = keras.Model(inputs, outputs, name="shapes_cnn")
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, max(1, train_steps))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train_shapes_cnn(
    train: int,
    epochs: int,
    size: int,
    seed: int = 0,
    *,
    test: int = 1000,
    verbose: int = 2,
    batch_size: int = 64,
    augment: bool = False,
):
    """Train :func:`shapes_cnn` on fresh shapes; returns ``(model, test accuracy)``.

    The training images use ``seed``, the test images ``seed + 1`` (never seen);
    the batches are shuffled with ``seed`` too (no global random state is read
    or changed, so the same call trains the same model).
    With ``augment``, each batch is turned by a random multiple of 90 degrees and
    mirrored at random (seeded, :func:`dihedral_batches`): every class is a shape
    drawn at a random rotation, so the label stays true, and a small training set
    goes further.
    """
    from keras_explain.datasets import shapes

    x_train, y_train, _ = shapes(train, size=size, seed=seed)
    x_test, y_test, _ = shapes(test, size=size, seed=seed + 1)
    model = shapes_cnn(size, seed, train_steps=epochs * math.ceil(train / batch_size))
    if augment:
        batches = dihedral_batches(x_train, y_train, batch_size, seed)
    else:
        batches = shuffled_batches(x_train, y_train, batch_size, seed)
    model.fit(batches, epochs=epochs, verbose=verbose, shuffle=False)  # shuffled in it
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return model, float(accuracy)


def seeded_initializer(seed: int, index: int):
    """Glorot-uniform weights drawn from their own seed: no global random state is used.

    A model builder gives each layer ``index`` its own initializer, so that two
    layers of the same shape do not start equal, and calling the builder again
    with the same ``seed`` builds the same weights.
    """
    import keras

    return keras.initializers.GlorotUniform(seed=int(seed) * 1000 + index)


def shuffled_batches(images, labels, batch_size: int, seed: int = 0):
    """A ``tf.data`` pipeline of batches, in a new order every epoch, drawn from ``seed``.

    Epoch ``e`` (the ``e``-th pass over the dataset) takes the permutation of
    ``numpy.random.default_rng([seed, e])``. ``model.fit(x, y, shuffle=True)`` and
    ``Dataset.shuffle(seed=...)`` both combine their seed with TensorFlow's global
    seed, so a user's earlier ``keras.utils.set_random_seed`` would change the
    training; this reads no global random state and changes none.

    Returns:
        A ``tf.data.Dataset`` of ``(images, labels)`` batches.
    """
    import itertools

    import tensorflow as tf

    images, labels = np.asarray(images), np.asarray(labels)
    epochs = itertools.count()

    def batches():
        order = np.random.default_rng([seed, next(epochs)]).permutation(len(images))
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            yield images[chosen], labels[chosen]

    signature = (
        tf.TensorSpec((None, *images.shape[1:]), tf.as_dtype(images.dtype)),
        tf.TensorSpec((None, *labels.shape[1:]), tf.as_dtype(labels.dtype)),
    )
    data = tf.data.Dataset.from_generator(batches, output_signature=signature)
    # a known length: Keras then runs every epoch to the end (and reports progress)
    count = math.ceil(len(images) / batch_size)
    return data.apply(tf.data.experimental.assert_cardinality(count)).prefetch(2)


def dihedral_batches(images, labels, batch_size: int, seed: int = 0):
    """A ``tf.data`` pipeline of shuffled batches, each rotated by k·90° and maybe mirrored.

    The order is reshuffled every epoch (so an image meets a new transform each
    epoch), and the ``i``-th batch draws its rotation and mirroring from a
    stateless generator keyed by ``(seed, i)``; no global random state is read or
    changed.

    Returns:
        A ``tf.data.Dataset`` of ``(images, labels)`` batches.
    """
    import tensorflow as tf

    def transform(key, batch):
        images, labels = batch
        turns, mirror = tf.unstack(tf.random.stateless_uniform([2], key, 0, 4, tf.int32))
        images = tf.image.rot90(images, turns)
        images = tf.cond(mirror >= 2, lambda: tf.reverse(images, [2]), lambda: images)
        return images, labels

    data = shuffled_batches(images, labels, batch_size, seed)
    keys = tf.data.Dataset.counter().map(lambda step: tf.stack([tf.cast(seed, tf.int64), step]))
    return tf.data.Dataset.zip(keys, data).map(transform).prefetch(2)


def run_methods(
    model,
    x,
    target,
    masks,
    methods: Sequence[str],
    parameters: dict[str, dict[str, Any]],
    *,
    seed: int = 0,
    metrics: Sequence[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """:func:`keras_explain.metrics.evaluate` method by method, with one progress bar.

    A method that fails is left out of the table and reported, as the demo does.
    ``metrics`` are the columns (default: ``evaluate``'s defaults).

    Returns:
        ``(rows, {skipped method: reason})``.
    """
    from tqdm import tqdm

    from keras_explain.metrics import evaluate

    rows, skipped = [], {}
    bar = tqdm(methods, desc="benchmark", unit="method", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        try:
            row = evaluate(
                {name: parameters.get(name, {})},
                model,
                x,
                target,
                masks=masks,
                metrics=metrics,
                seed=seed,
                verbose=0,
            )[0]
        except Exception as error:  # the table shows what works and says what did not
            skipped[name] = f"{type(error).__name__}: {first_line(error)}"
            bar.write(f"  skipped {name}: {skipped[name]}")
            continue
        rows.append(row)
    bar.close()
    return rows, skipped


def first_line(error: BaseException) -> str:
    """The first line of an error's message, at most 200 characters."""
    text = str(error).strip().splitlines()
    line = text[0] if text else ""
    return line if len(line) <= 200 else line[:197] + "..."


def _format(value: float) -> str:
    if not np.isfinite(value):
        return "nan"
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.3f}"


def shown_columns(rows: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The columns of the rows after ``method`` (:data:`COLUMNS` for the default metrics)."""
    return tuple(key for key in rows[0] if key != "method") if rows else columns()


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown (GitHub pipe) table, arrows saying which way is better."""
    arrow = {"lower": "↓", "higher": "↑"}
    shown, directions = shown_columns(rows), better()
    header = ["method", *(f"{column} {arrow[directions[column]]}" for column in shown)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["method"], *(_format(row[column]) for column in shown)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: Sequence[dict[str, Any]], path: str) -> None:
    """The rows as CSV, full precision, columns ``method`` then :func:`shown_columns`."""
    with open(path, "w", newline="") as handle:
        fields = ["method", *shown_columns(rows)]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row[key] for key in fields})


def plot_table(rows: Sequence[dict[str, Any]]):
    """One horizontal bar chart per column, methods top to bottom; returns the Figure."""
    from matplotlib.figure import Figure

    names = [row["method"] for row in rows]
    height = max(3.0, 0.22 * len(names) + 1.0)
    shown, directions = shown_columns(rows), better()
    grid = math.ceil(len(shown) / 3)
    figure = Figure(figsize=(16, 2 * height * grid / 3), layout="constrained")
    axes = figure.subplots(grid, 3, sharey=True, squeeze=False).ravel()
    for unused in axes[len(shown) :]:
        unused.set_axis_off()
    positions = np.arange(len(names))
    for axis, column in zip(axes, shown):
        values = np.array([row[column] for row in rows], dtype=float)
        axis.barh(positions, np.nan_to_num(values), color="tab:blue")
        axis.set_title(f"{column} ({directions[column]} is better)", fontsize=9)
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() > 0 and finite.max() > 20 * finite.min():
            axis.set_xscale("log")  # times and infidelities span decades
        axis.tick_params(labelsize=7)
    axes[0].set_yticks(positions, names)
    axes[0].invert_yaxis()
    return figure


def default_methods() -> list[str]:
    """Every registered method but :data:`SLOW_METHODS`, in registry order."""
    from keras_explain.analyzers import names

    return [name for name in names() if name not in SLOW_METHODS]


def benchmark(
    out: str = "keras_explain_benchmark",
    *,
    methods: Sequence[str] | None = None,
    quick: bool = False,
    samples: int | None = None,
    seed: int = 0,
    train: int | None = None,
    epochs: int | None = None,
    size: int | None = None,
    metrics: str | Sequence[str] | None = None,
) -> int:
    """Train the shapes CNN, evaluate the methods, print and save the table.

    Writes ``benchmark.csv``, ``benchmark.md`` and ``benchmark.png`` to ``out``.

    Args:
        out: Output directory.
        methods: Registry names (default: :func:`default_methods`, or
            :data:`QUICK_METHODS` with ``quick``).
        quick: Less training, fewer methods and samples (:data:`QUICK`).
        samples: Held-out images explained (default 32, 8 with ``quick``).
        seed: Seed of the data, the training and every random metric.
        train: Training images (default 40,000, 4,000 with ``quick``).
        epochs: Training epochs (default 5, 4 with ``quick``).
        size: Image side in pixels (default 32).
        metrics: The columns: registered metric names, ``"all"`` (every
            registered metric, :data:`keras_explain.metrics.METRICS`), or ``None``
            (the defaults of :func:`keras_explain.metrics.evaluate`).

    Returns:
        0, or 1 if no method worked.

    Raises:
        ValueError: For an unknown metric name (before any training).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    import tensorflow as tf

    from keras_explain.datasets import shapes

    tf.get_logger().setLevel("ERROR")  # dozens of analyzers, each traced once
    settings = dict(QUICK if quick else FULL)
    given = {"train": train, "epochs": epochs, "size": size, "samples": samples}
    settings.update({key: value for key, value in given.items() if value is not None})
    if methods is None:
        methods = list(QUICK_METHODS) if quick else default_methods()
    if metrics == "all":
        metrics = list(registry.names())
    elif metrics is not None:
        metrics = registry.check_metrics(metrics, masks=True, caller="benchmark")
    os.makedirs(out, exist_ok=True)

    print(
        f"Training a small CNN on kx.datasets.shapes ({settings['train']} images of "
        f"{settings['size']}x{settings['size']}, {settings['epochs']} epochs)"
    )
    model, accuracy = train_shapes_cnn(
        settings["train"], settings["epochs"], settings["size"], seed
    )
    print(f"Test accuracy: {accuracy:.3f} (1000 held-out images)")

    x, labels, masks = shapes(settings["samples"], size=settings["size"], seed=seed + 2)
    print(
        f"Evaluating {len(methods)} methods on {len(x)} held-out images (target: the true "
        "class; masks: the object)"
    )
    if methods == default_methods():
        print(f"  left out as slow (name them with --methods): {', '.join(SLOW_METHODS)}")
    rows, skipped = run_methods(
        model,
        x,
        labels,
        masks,
        methods,
        method_parameters(settings["size"]),
        seed=seed,
        metrics=metrics,
    )
    if not rows:
        print("No method worked on the benchmark model; no table written.")
        return 1
    table = markdown_table(rows)
    print()
    print(table)
    paths = {suffix: os.path.join(out, f"benchmark.{suffix}") for suffix in ("csv", "md", "png")}
    write_csv(rows, paths["csv"])
    with open(paths["md"], "w") as handle:
        handle.write(table)
    figure = plot_table(rows)
    figure.savefig(paths["png"], dpi=100)
    print(f"{len(rows)} methods evaluated, {len(skipped)} skipped.")
    if skipped:
        print("Skipped methods:")
        for name, reason in skipped.items():
            print(f"  {name}: {reason}")
    for path in paths.values():
        print(f"Wrote {os.path.abspath(path)}")
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0
