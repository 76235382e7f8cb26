"""The ``keras-explain`` command: ``demo``, ``benchmark``, ``report`` and ``methods``."""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any


def grid_segments(image) -> Any:
    """Superpixels for the 8x8 digits: a 4x4 grid of 2x2 cells (labels 0..15)."""
    from keras_explain.benchmark import grid_segments as cells

    return cells(image, cell=2)


#: Parameters suited to 8x8 digit images, per registry name. Keyword arguments
#: a method does not take are dropped, so the table may name parameters of
#: methods that are still being written.
DEMO_PARAMETERS: dict[str, dict[str, Any]] = {
    "smoothgrad": {"samples": 32, "seed": 0},
    "squaregrad": {"samples": 32, "seed": 0},
    "vargrad": {"samples": 32, "seed": 0},
    "integrated_gradients": {"steps": 32},
    "deep_taylor.bounded": {"low": 0.0, "high": 1.0},
    "lrp.epsilon_gamma_box": {"low": 0.0, "high": 1.0},
    "occlusion": {"window": 2, "stride": 1, "baseline": 0.0},
    "shapley_sampling": {"samples": 16, "segmentation": grid_segments, "seed": 0},
    "lime": {"samples": 300, "segmentation": grid_segments, "seed": 0},
    "kernel_shap": {"samples": 200, "segmentation": grid_segments, "seed": 0},
    "rise": {"samples": 500, "cells": 4, "seed": 0},
    "meaningful_perturbation": {
        "steps": 100,
        "mask_size": 4,
        "blur_sigma": 1.0,
        "seed": 0,
    },
}

DEMO_SAMPLES = 6
#: Training images of the demo's second model, on 64x64 shapes.
DEMO_SHAPES_TRAIN = 2000


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``keras-explain`` command.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status (0 on success).
    """
    parser = argparse.ArgumentParser(
        prog="keras-explain",
        description="Explain Keras 3 models on TensorFlow (keras_explain).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo",
        help="train a small CNN on scikit-learn's digits and explain it",
        description=(
            "Train a small CNN on scikit-learn's bundled 8x8 digits (no download), log "
            "explanations to TensorBoard while it trains, and write a PNG grid of every "
            "image method in the registry."
        ),
    )
    demo_parser.add_argument(
        "--out", default="keras_explain_demo", help="output directory (default: %(default)s)"
    )
    demo_parser.add_argument(
        "--epochs", type=_positive_int, default=8, help="training epochs (default: %(default)s)"
    )
    demo_parser.add_argument(
        "--samples",
        type=_positive_int,
        default=DEMO_SAMPLES,
        help="test images to explain (default: %(default)s)",
    )
    demo_parser.add_argument(
        "--methods",
        type=_names,
        default=None,
        help="comma-separated registry names to draw (default: every registered method)",
    )
    _add_benchmark(commands)
    _add_report(commands)
    commands.add_parser("methods", help="list every analyzer name")
    args = parser.parse_args(argv)
    if args.command == "methods":
        return _methods()
    if args.command == "report":
        return _report(args, parser)
    if args.command == "benchmark":
        from keras_explain.benchmark import benchmark

        return benchmark(
            args.out,
            methods=args.methods,
            quick=args.quick,
            samples=args.samples,
            seed=args.seed,
            train=args.train,
            epochs=args.epochs,
            size=args.size,
        )
    return demo(args.out, epochs=args.epochs, samples=args.samples, methods=args.methods)


def _add_benchmark(commands) -> None:
    parser = commands.add_parser(
        "benchmark",
        help="rank the image methods on a CNN trained on shapes with ground-truth masks",
        description=(
            "Train a small CNN on kx.datasets.shapes (generated, no download), explain "
            "held-out images with every image method and score each with kx.metrics.evaluate "
            "(time, deletion, insertion, infidelity, sensitivity-max, pointing game, relevance "
            "mass, randomization, sparseness). Prints the table and writes benchmark.csv, "
            "benchmark.md and benchmark.png."
        ),
    )
    parser.add_argument(
        "--out", default="keras_explain_benchmark", help="output directory (default: %(default)s)"
    )
    parser.add_argument(
        "--methods",
        type=_names,
        default=None,
        help="comma-separated registry names (default: every method but the slow "
        "meaningful_perturbation, lime and kernel_shap)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 10 methods, 8 samples, 4,000 training images, 4 epochs",
    )
    parser.add_argument(
        "--samples", type=_positive_int, default=None, help="held-out images (default: 32)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    parser.add_argument(
        "--train", type=_positive_int, default=None, help="training images (default: 40000)"
    )
    parser.add_argument(
        "--epochs", type=_positive_int, default=None, help="training epochs (default: 5)"
    )
    parser.add_argument(
        "--size", type=_size, default=None, help="image side in pixels, >= 16 (default: 32)"
    )


def _add_report(commands) -> None:
    parser = commands.add_parser(
        "report",
        help="write one offline HTML page of a model's explanations (kx.report)",
        description=(
            "Explain the samples of a .npz file with a saved Keras model and write one "
            "self-contained HTML page (kx.report): gallery, overlays per top class, metrics "
            "table and curves. The .npz holds x (required) and optionally labels, masks, "
            "class_names, tokens (one row of strings per sample) and feature_names."
        ),
    )
    parser.add_argument("--model", required=True, help="a saved model (.keras)")
    parser.add_argument("--data", required=True, help="a .npz file with x and optional extras")
    parser.add_argument(
        "--methods", type=_names, required=True, help="comma-separated registry names"
    )
    parser.add_argument(
        "--top-k", type=_positive_int, default=3, help="classes explained (default: %(default)s)"
    )
    parser.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metric columns, or 'none' (default: deletion_auc, "
        "insertion_auc, sparseness, and the localisation metrics when the data has masks)",
    )
    parser.add_argument("--title", default=None, help="page title")
    parser.add_argument("--out", default="report.html", help="output file (default: %(default)s)")


#: Optional arrays of ``keras-explain report --data``, by kx.report argument.
REPORT_KEYS = ("labels", "masks", "class_names", "tokens", "feature_names")


def _report(args, parser) -> int:
    import keras
    import numpy as np

    from keras_explain.report import report

    with np.load(args.data, allow_pickle=False) as data:
        if "x" not in data:
            parser.error(
                f"report: data.npz must hold the samples under the key 'x'. Received keys: "
                f"{sorted(data.files)} in {args.data}."
            )
        extras = {key: data[key] for key in REPORT_KEYS if key in data}
        x = data["x"]
    for key in ("class_names", "tokens", "feature_names"):
        if key in extras:
            extras[key] = extras[key].astype(str).tolist()
    metrics = None
    if args.metrics is not None:
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip() not in ("", "none")]
    model = keras.models.load_model(args.model, compile=False)
    path = report(
        args.methods,
        model,
        x,
        targets=args.top_k,
        metrics=metrics,
        out=args.out,
        title=args.title,
        **extras,
    )
    print(f"Report: {path}")
    return 0


def _size(text: str) -> int:
    value = _positive_int(text)
    if value < 16:
        raise argparse.ArgumentTypeError(f"must be at least 16 pixels, got {text}")
    return value


def _names(text: str) -> list[str]:
    from keras_explain import analyzers

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in analyzers.names()]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {unknown or text!r}; see `keras-explain methods`"
        )
    return names


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _methods() -> int:
    from keras_explain import analyzers

    width = max(len(name) for name in analyzers.names())
    for name in analyzers.names():
        print(f"{name:<{width}}  {_summary(name)}")
    return 0


def _summary(name: str) -> str:
    from keras_explain.analyzers import registry

    cls, presets = registry.analyzer_class(name)
    doc = inspect.getdoc(cls) or ""
    line = doc.splitlines()[0] if doc else getattr(cls, "__name__", "")
    # Plain text for a terminal: ":class:`~a.b.C`" -> "C", "``x``" -> "x".
    line = re.sub(r":\w+:`~([\w.]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], line)
    line = re.sub(r":\w+:`([^`]+)`", r"\1", line).replace("``", "")
    if presets:
        line += " [" + ", ".join(f"{key}={value!r}" for key, value in presets.items()) + "]"
    return line


def digits_data(seed: int = 0):
    """scikit-learn's bundled 8x8 digits as float32 images in [0, 1].

    Returns:
        ``(x_train, y_train, x_test, y_test)``; images are ``(N, 8, 8, 1)``.
    """
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(images))
    split = int(0.8 * len(images))
    train, test = order[:split], order[split:]
    return images[train], labels[train], images[test], labels[test]


def digits_cnn(seed: int = 0):
    """The demo's small CNN for 8x8x1 digits: three ReLU convolutions, GAP, Dense + softmax."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = keras.Input((8, 8, 1), name="digits")
    h = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(h)
    h = layers.MaxPooling2D(name="pool")(h)
    h = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = layers.Dense(10, activation="softmax", name="classes")(h)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train(model, data, epochs: int, callbacks=(), verbose: int = 0):
    """The demo's training: ``model.fit`` on the digits with validation, batch size 32."""
    x_train, y_train, x_test, y_test = data
    return model.fit(
        x_train,
        y_train,
        epochs=epochs,
        batch_size=32,
        validation_data=(x_test, y_test),
        callbacks=list(callbacks),
        verbose=verbose,
    )


def method_parameters(name: str) -> dict[str, Any]:
    """The demo parameters of ``name`` that its class takes (``Analyzer.parameters()``)."""
    from keras_explain.analyzers import registry

    wanted = DEMO_PARAMETERS.get(name, {})
    accepted = set(registry.parameters(name))
    return {key: value for key, value in wanted.items() if key in accepted}


def explain_all(
    model,
    x,
    *,
    methods: Sequence[str] | None = None,
    parameters: dict[str, dict[str, Any]] | None = None,
    log=print,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run every registered method (or ``methods``) on ``x``; skip the ones that fail.

    ``parameters`` maps names to their keyword arguments (default: the digits'
    :data:`DEMO_PARAMETERS`).

    Returns:
        ``({name: relevance}, {skipped name: reason})``.
    """
    import numpy as np

    from keras_explain import benchmark
    from keras_explain.analyzers import registry

    results, skipped = {}, {}
    for name in registry.names() if methods is None else methods:
        start = time.perf_counter()
        try:
            chosen = method_parameters(name) if parameters is None else parameters.get(name, {})
            takes = registry.parameters(name)
            if "background" in takes and "background" not in chosen:  # DeepLiftShap & co.
                chosen = {**chosen, "background": benchmark.background(x.shape[1:])}
            analyzer = registry.create_analyzer(name, model, **chosen)
            relevance = analyzer.analyze(x)
            if isinstance(relevance, list):
                raise ValueError("returned one result per input")
            relevance = np.asarray(relevance)
            if relevance.shape != x.shape and relevance.shape != x.shape[:-1]:
                raise ValueError(f"returned shape {relevance.shape}, not an image map")
            if not np.all(np.isfinite(relevance)):
                raise ValueError("returned NaN or Inf values")
        except Exception as error:  # a demo shows what works and says what did not
            from keras_explain.benchmark import first_line

            skipped[name] = f"{type(error).__name__}: {first_line(error)}"
            log(f"  skipped {name}: {skipped[name]}")
            continue
        results[name] = relevance
        log(f"  {name:<28} {time.perf_counter() - start:6.2f} s")
    return results, skipped


def demo(
    out: str = "keras_explain_demo",
    *,
    epochs: int = 8,
    samples: int = DEMO_SAMPLES,
    methods: Sequence[str] | None = None,
) -> int:
    """Train the digits CNN with the TensorBoard callbacks and draw every image method.

    Then the same on 64x64 :func:`keras_explain.datasets.shapes`: a second small
    CNN (:func:`keras_explain.benchmark.shapes_cnn`) trained on
    :data:`DEMO_SHAPES_TRAIN` images for ``epochs``, and a second grid of
    ``methods`` (default: one per family,
    :data:`keras_explain.benchmark.QUICK_METHODS`).

    Args:
        out: Output directory; receives ``explanations.png``, ``report.html``
            (:func:`keras_explain.report.report` of a few methods), ``shapes.png``
            and ``logs/``.
        epochs: Training epochs.
        samples: Number of test images explained.
        methods: Registry names to draw (default: every registered method).

    Returns:
        0.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_explain.callbacks import ExplanationLogger

    # The demo builds dozens of analyzers, each tracing its own tf.function once;
    # TensorFlow would warn about "retracing" although nothing is traced twice.
    tf.get_logger().setLevel("ERROR")

    os.makedirs(out, exist_ok=True)
    log_dir = os.path.join(out, "logs")
    x_train, y_train, x_test, y_test = digits_data()
    model = digits_cnn()
    shown = x_test[:samples]
    callbacks = []
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        print('TensorBoard logs skipped: pip install "keras-explainer[tensorboard]".')
    else:
        callbacks = [
            keras.callbacks.TensorBoard(log_dir=log_dir),
            ExplanationLogger(["gradient", "integrated_gradients"], shown, log_dir=log_dir),
        ]
    print(f"Training a small CNN on scikit-learn digits ({len(x_train)} images, {epochs} epochs)")
    train(model, (x_train, y_train, x_test, y_test), epochs, callbacks, verbose=2)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"Test accuracy: {accuracy:.3f}")

    which = "every registered method" if methods is None else f"{len(methods)} methods"
    print(f"Explaining {samples} test images with {which}:")
    results, skipped = explain_all(model, shown, methods=methods)
    predictions = np.argmax(model.predict(shown, verbose=0), axis=1)
    labels = [f"true {t} / pred {p}" for t, p in zip(y_test[:samples], predictions)]

    from keras_explain.visualize import plot_explanations

    if not results:
        print("No method worked on the demo model; no grid written.")
        return 1
    figure = plot_explanations(shown, results, labels=labels, cell_size=1.1, max_columns=11)
    png = os.path.join(out, "explanations.png")
    figure.savefig(png, dpi=100)
    page = _demo_report(model, shown, y_test[:samples], list(results), out)

    shapes_png, shapes_drawn = _shapes_grid(out, epochs, samples, methods)

    print(f"\n{len(results)} methods drawn, {len(skipped)} skipped.")
    if skipped:
        print("Skipped methods:")
        for name, reason in skipped.items():
            print(f"  {name}: {reason}")
    print(f"Explanation grid: {os.path.abspath(png)}")
    print(f"Explanation report (open it in a browser): {page}")
    if shapes_drawn:
        print(f"Shapes grid ({shapes_drawn} methods): {os.path.abspath(shapes_png)}")
    if callbacks:
        print(f"TensorBoard logs: {os.path.abspath(log_dir)}")
        print(f"  view them with: tensorboard --logdir {log_dir}")
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0


#: Methods of the demo's HTML report (those of them that worked on the digits).
DEMO_REPORT_METHODS = ("gradient", "integrated_gradients", "grad_cam", "lrp.epsilon", "occlusion")


def _demo_report(model, x, labels, worked: Sequence[str], out: str) -> str:
    """The demo's kx.report page of the digits: a few methods, the top 3 classes."""
    from keras_explain.report import report

    chosen = [name for name in DEMO_REPORT_METHODS if name in worked] or list(worked)[:3]
    methods = {name: method_parameters(name) for name in chosen}
    digits = [str(digit) for digit in range(10)]
    return report(
        methods,
        model,
        x,
        labels=labels,
        class_names=digits,
        out=os.path.join(out, "report.html"),
        title="keras-explain demo: a small CNN on scikit-learn digits",
    )


def _shapes_grid(out: str, epochs: int, samples: int, methods) -> tuple[str, int]:
    """The demo on 64x64 shapes: train, explain, draw; returns the PNG path and methods drawn."""
    import numpy as np

    from keras_explain.benchmark import QUICK_METHODS, train_shapes_cnn
    from keras_explain.benchmark import method_parameters as sized
    from keras_explain.datasets import CLASSES, shapes
    from keras_explain.visualize import plot_explanations

    size = 64
    print(
        f"\nTraining a small CNN on kx.datasets.shapes ({DEMO_SHAPES_TRAIN} images of "
        f"{size}x{size}, {epochs} epochs)"
    )
    model, accuracy = train_shapes_cnn(DEMO_SHAPES_TRAIN, epochs, size, test=500)
    print(f"Test accuracy: {accuracy:.3f} (500 held-out images)")
    x, labels, _ = shapes(samples, size=size, seed=2)
    if methods is None:  # one per family: the digits grid above has every method
        methods = list(QUICK_METHODS)
    print(f"Explaining {samples} shapes with {len(methods)} methods:")
    results, _ = explain_all(model, x, methods=methods, parameters=sized(size))
    png = os.path.join(out, "shapes.png")
    if results:
        predictions = np.argmax(model.predict(x, verbose=0), axis=1)
        titles = [f"{CLASSES[t]} / pred {CLASSES[p]}" for t, p in zip(labels, predictions)]
        figure = plot_explanations(x, results, labels=titles, cell_size=1.3, max_columns=11)
        figure.savefig(png, dpi=100)
    return png, len(results)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
