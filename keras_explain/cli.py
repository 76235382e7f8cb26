"""The ``keras-explain`` command: ``demo``, ``benchmark``, ``report``, ``influence``, ``methods``.

This module parses the arguments and dispatches: the demo is :mod:`keras_explain.demo`,
the benchmark :mod:`keras_explain.benchmark`, the report :func:`keras_explain.report.report`
(``influence`` too, with a :mod:`keras_explain.influence` panel).
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
from collections.abc import Sequence

from keras_explain.demo import DEMO_EPOCHS, DEMO_SAMPLES, DEMO_SHAPES_EPOCHS, demo


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
        parents=[_verbose()],
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo",
        parents=[_verbose()],
        help="train small CNNs on digits and 64x64 shapes and explain them",
        description=(
            "Train a small CNN on scikit-learn's bundled 8x8 digits (no download), log "
            "explanations to TensorBoard while it trains, and write a PNG grid of every "
            "image method in the registry; then train a second one on generated 64x64 "
            "shapes, draw one method per family and write an HTML report of them."
        ),
    )
    demo_parser.add_argument(
        "--out", default="keras_explain_demo", help="output directory (default: %(default)s)"
    )
    demo_parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help=f"training epochs of both models (default: {DEMO_EPOCHS} on the digits, "
        f"{DEMO_SHAPES_EPOCHS} on the shapes)",
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
    _add_influence(commands)
    _add_spray(commands)
    commands.add_parser("methods", help="list every analyzer name", parents=[_verbose()])
    args = parser.parse_args(argv)
    if args.command == "methods":
        return _methods()
    if args.command == "report":
        return _report(args, parser)
    if args.command == "influence":
        return _influence(args, parser)
    if args.command == "spray":
        return _spray(args, parser)
    if args.command == "benchmark":
        from keras_explain.benchmark import benchmark
        from keras_explain.metrics import registry

        metrics = args.metrics
        if metrics is not None and metrics.strip() == "all":
            metrics = "all"
        elif metrics is not None:
            try:
                metrics = registry.check_metrics(
                    [m.strip() for m in metrics.split(",") if m.strip()],
                    masks=True,
                    caller="benchmark --metrics",
                )
            except ValueError as error:
                parser.error(str(error))
        return benchmark(
            args.out,
            methods=args.methods,
            quick=args.quick,
            samples=args.samples,
            seed=args.seed,
            train=args.train,
            epochs=args.epochs,
            size=args.size,
            metrics=metrics,
        )
    return demo(args.out, epochs=args.epochs, samples=args.samples, methods=args.methods)


def _verbose() -> argparse.ArgumentParser:
    """The ``--verbose`` flag every command takes; read by the launcher (keras_explain_cli)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="keep TensorFlow's start-up logs (hidden by default unless TF_CPP_MIN_LOG_LEVEL "
        "is set)",
    )
    return parent


def _add_benchmark(commands) -> None:
    parser = commands.add_parser(
        "benchmark",
        parents=[_verbose()],
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
    parser.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metric columns, or 'all' (every registered metric; default: "
        "kx.metrics.evaluate's defaults)",
    )


def _add_report(commands) -> None:
    parser = commands.add_parser(
        "report",
        parents=[_verbose()],
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


def _add_influence(commands) -> None:
    parser = commands.add_parser(
        "influence",
        parents=[_verbose()],
        help="a report of the training images that most influenced each test image",
        description=(
            "Score the training images of a .npz (x, y) against the test images of another "
            "(x, optional labels) with kx.influence, and write kx.report's page with each "
            "test image's proponents and opponents beside its explanations."
        ),
    )
    parser.add_argument("--model", required=True, help="a saved model (.keras)")
    parser.add_argument("--train", required=True, help="a .npz with the training x and y")
    parser.add_argument("--test", required=True, help="a .npz with x and optional labels")
    parser.add_argument(
        "--method",
        choices=("tracin", "influence_function", "similarity"),
        default="tracin",
        help="kx.influence method (default: %(default)s)",
    )
    parser.add_argument(
        "--layers",
        default=None,
        help="comma-separated layer names the gradients cover (similarity: the one layer "
        "compared; default: every trainable layer, and for similarity the layer before the "
        "last)",
    )
    parser.add_argument(
        "--loss",
        default=None,
        help="a Keras loss class name, e.g. SparseCategoricalCrossentropy (default: the "
        "saved model's compiled loss)",
    )
    parser.add_argument(
        "--from-logits", action="store_true", help="the model outputs logits (for --loss)"
    )
    parser.add_argument(
        "--checkpoints",
        default=None,
        help="a folder of .weights.h5 files (kx.callbacks.Checkpoints(path=...)), for TracIn",
    )
    parser.add_argument(
        "--k", type=_positive_int, default=3, help="examples per side (default: %(default)s)"
    )
    parser.add_argument(
        "--methods",
        type=_names,
        default=["gradient"],
        help="explanation methods shown beside them (default: gradient)",
    )
    parser.add_argument(
        "--out", default="influence.html", help="output file (default: %(default)s)"
    )


def _influence(args, parser) -> int:
    import glob

    import keras
    import numpy as np

    from keras_explain import influence
    from keras_explain.report import report

    arrays = {}
    for name, path, keys in (("train", args.train, ("x", "y")), ("test", args.test, ("x",))):
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in keys if key not in data]
            if missing:
                parser.error(
                    f"influence: {name}.npz must hold {' and '.join(keys)}. Received keys: "
                    f"{sorted(data.files)} in {path}."
                )
            arrays[name] = {key: data[key] for key in data.files}
    model = keras.models.load_model(args.model, compile=args.loss is None)
    loss = None
    if args.loss is not None:
        loss = keras.losses.get(
            {"class_name": args.loss, "config": {"from_logits": args.from_logits}}
        )
    layers = None if args.layers is None else [n.strip() for n in args.layers.split(",")]
    train = (arrays["train"]["x"], arrays["train"]["y"])
    if args.method == "similarity":
        layer = layers[0] if layers else model.layers[-2].name
        method = influence.Similarity(model, train, layer)
    elif args.method == "influence_function":
        method = influence.InfluenceFunction(model, train, loss=loss, layers=layers, damping=0.01)
    else:
        checkpoints = None
        if args.checkpoints is not None:
            checkpoints = sorted(glob.glob(os.path.join(args.checkpoints, "*.weights.h5")))
            if not checkpoints:
                parser.error(f"influence: no .weights.h5 file in {args.checkpoints}.")
        method = influence.TracIn(model, train, checkpoints=checkpoints, loss=loss, layers=layers)
    test = arrays["test"]
    path = report(
        args.methods,
        model,
        test["x"],
        labels=test.get("labels"),
        metrics=[],
        influence=method,
        influence_k=args.k,
        out=args.out,
    )
    print(f"Report: {path}")
    return 0


def _add_spray(commands) -> None:
    parser = commands.add_parser(
        "spray",
        parents=[_verbose()],
        help="SpRAy: cluster a dataset's heatmaps per class and write an interactive page",
        description=(
            "Explain the images of a .npz (x, optional y) with one method, cluster each "
            "class's heatmaps with kx.spray (the strategies the model uses, shortcuts "
            "included), and write an offline HTML page: the 2-D embedding coloured by "
            "cluster, each sample's heatmap, the clusters' prototypes and, with --layer, "
            "a concept atlas per cluster (kx.crp)."
        ),
    )
    parser.add_argument("--model", required=True, help="a saved model (.keras)")
    parser.add_argument("--data", required=True, help="a .npz with x and optional y (labels)")
    parser.add_argument(
        "--method",
        default="lrp.epsilon_plus_flat",
        help="explanation method (default: %(default)s)",
    )
    parser.add_argument(
        "--size",
        type=_positive_int,
        default=32,
        help="maps downsampled to size x size "
        "(default: %(default)s; smaller finds coarse strategies, e.g. 8 for 32x32 images)",
    )
    parser.add_argument(
        "--clusters", type=_positive_int, default=None, help="clusters (default: the eigengap)"
    )
    parser.add_argument("--layer", default=None, help="a layer for the concept atlas (CRP)")
    parser.add_argument("--out", default="spray.html", help="output file (default: %(default)s)")


def _spray(args, parser) -> int:
    import keras
    import numpy as np

    from keras_explain import analyzers
    from keras_explain.report.spray import spray_report

    if args.method not in analyzers.names():
        parser.error(f"spray: unknown method {args.method!r}; see `keras-explain methods`")
    with np.load(args.data, allow_pickle=False) as data:
        if "x" not in data:
            parser.error(f"spray: {args.data} must hold x. Received keys: {sorted(data.files)}.")
        x, labels = data["x"], (data["y"] if "y" in data else None)
    model = keras.models.load_model(args.model, compile=False)
    path = spray_report(
        model,
        x,
        labels,
        out=args.out,
        method=args.method,
        size=(args.size, args.size),
        clusters=args.clusters,
        layer=args.layer,
    )
    print(f"SpRAy page: {path}")
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
    from keras_explain.lrp import composites

    cls, presets = registry.analyzer_class(name)
    preset = presets.get("composite")
    if isinstance(preset, str) and preset in composites.PRESETS:  # LRP with a preset
        return f"{composites.PRESETS[preset].summary} [kx.LRP(model, {preset!r})]"
    doc = inspect.getdoc(cls) or ""
    line = doc.splitlines()[0] if doc else getattr(cls, "__name__", "")
    # Plain text for a terminal: ":class:`~a.b.C`" -> "C", "``x``" -> "x".
    line = re.sub(r":\w+:`~([\w.]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], line)
    line = re.sub(r":\w+:`([^`]+)`", r"\1", line).replace("``", "")
    if presets:
        line += " [" + ", ".join(f"{key}={value!r}" for key, value in presets.items()) + "]"
    return line


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
