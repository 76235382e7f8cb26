"""``keras-explain demo``: a small CNN trained on scikit-learn's digits, then every method drawn.

The digits (8x8, bundled with scikit-learn, no download) train :func:`digits_cnn`
with the TensorBoard callbacks; :func:`explain_all` runs every registered method
with the parameters of :func:`keras_explain.benchmark.method_parameters` for the
image size. Then a second CNN learns 64x64 :func:`keras_explain.datasets.shapes`
(0.95 or more test accuracy); a grid of one method per family and a
:func:`keras_explain.report.report` page of those shapes, with their masks, join the
digits grid in the output directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

DEMO_SAMPLES = 6
#: Training epochs of the digits CNN.
DEMO_EPOCHS = 8
#: Training images, epochs and batch size of the demo's second model, on 64x64 shapes
#: (0.93 to 0.98 test accuracy in under a minute on two CPU cores).
DEMO_SHAPES_TRAIN = 8000
DEMO_SHAPES_EPOCHS = 10
DEMO_SHAPES_BATCH = 16


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

    from keras_explain.benchmark import seeded_initializer

    layers = keras.layers

    def conv(filters, index):
        return layers.Conv2D(
            filters,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=seeded_initializer(seed, index),
            name=f"conv{index}",
        )

    inputs = keras.Input((8, 8, 1), name="digits")
    h = conv(32, 2)(conv(16, 1)(inputs))
    h = layers.MaxPooling2D(name="pool")(h)
    h = conv(64, 3)(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = layers.Dense(
        10, activation="softmax", kernel_initializer=seeded_initializer(seed, 4), name="classes"
    )(h)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train(model, data, epochs: int, callbacks=(), verbose: int = 0):
    """The demo's training: ``model.fit`` on the digits with validation, batch size 32.

    The batches are shuffled from a fixed seed (no global random state is used).
    """
    from keras_explain.benchmark import shuffled_batches

    x_train, y_train, x_test, y_test = data
    return model.fit(
        shuffled_batches(x_train, y_train, 32, seed=0),
        epochs=epochs,
        shuffle=False,  # shuffled in the pipeline
        validation_data=(x_test, y_test),
        callbacks=list(callbacks),
        verbose=verbose,
    )


def explain_all(
    model,
    x,
    *,
    methods: Sequence[str] | None = None,
    parameters: dict[str, dict[str, Any]] | None = None,
    log=print,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run every registered method (or ``methods``) on ``x``; skip the ones that fail.

    ``parameters`` maps names to their keyword arguments (default: the table of
    :func:`keras_explain.benchmark.method_parameters` for the images of ``x``,
    ``(N, size, size, channels)``).

    Returns:
        ``({name: relevance}, {skipped name: reason})``.
    """
    import numpy as np

    from keras_explain.analyzers import registry
    from keras_explain.benchmark import first_line, method_parameters

    if parameters is None:
        parameters = method_parameters(x.shape[1], x.shape[-1])
    results, skipped = {}, {}
    for name in registry.names() if methods is None else methods:
        start = time.perf_counter()
        try:
            analyzer = registry.create_analyzer(name, model, **parameters.get(name, {}))
            relevance = analyzer.analyze(x)
            if isinstance(relevance, list):
                raise ValueError("returned one result per input")
            relevance = np.asarray(relevance)
            if relevance.shape != x.shape and relevance.shape != x.shape[:-1]:
                raise ValueError(f"returned shape {relevance.shape}, not an image map")
            if not np.all(np.isfinite(relevance)):
                raise ValueError("returned NaN or Inf values")
        except Exception as error:  # a demo shows what works and says what did not
            skipped[name] = f"{type(error).__name__}: {first_line(error)}"
            log(f"  skipped {name}: {skipped[name]}")
            continue
        results[name] = relevance
        log(f"  {name:<28} {time.perf_counter() - start:6.2f} s")
    return results, skipped


def demo(
    out: str = "keras_explain_demo",
    *,
    epochs: int | None = None,
    samples: int = DEMO_SAMPLES,
    methods: Sequence[str] | None = None,
) -> int:
    """Train the digits CNN with the TensorBoard callbacks and draw every image method.

    Then the same on 64x64 :func:`keras_explain.datasets.shapes`: a second small
    CNN (:func:`keras_explain.benchmark.shapes_cnn`) trained on
    :data:`DEMO_SHAPES_TRAIN` images turned and mirrored at random
    (:data:`DEMO_SHAPES_EPOCHS` epochs, batches of :data:`DEMO_SHAPES_BATCH`),
    a second grid of ``methods`` (default: one per family,
    :data:`keras_explain.benchmark.QUICK_METHODS`), and a
    :func:`keras_explain.report.report` page of a few methods on those shapes,
    with their masks (so the page's metrics include the pointing game).

    Args:
        out: Output directory; receives ``explanations.png``, ``shapes.png``,
            ``report.html`` and ``logs/``.
        epochs: Training epochs of both models (default :data:`DEMO_EPOCHS` for
            the digits, :data:`DEMO_SHAPES_EPOCHS` for the shapes).
        samples: Number of test images explained.
        methods: Registry names to draw (default: every registered method).

    Returns:
        0, or 1 when no method worked on the digits model.
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
    digits_epochs = DEMO_EPOCHS if epochs is None else epochs
    print(
        f"Training a small CNN on scikit-learn digits ({len(x_train)} images, "
        f"{digits_epochs} epochs)"
    )
    train(model, (x_train, y_train, x_test, y_test), digits_epochs, callbacks, verbose=2)
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

    shapes_epochs = DEMO_SHAPES_EPOCHS if epochs is None else epochs
    shapes_png, shapes_drawn, page = _shapes(out, shapes_epochs, samples, methods)

    print(f"\n{len(results)} methods drawn, {len(skipped)} skipped.")
    if skipped:
        print("Skipped methods:")
        for name, reason in skipped.items():
            print(f"  {name}: {reason}")
    print(f"Explanation grid: {os.path.abspath(png)}")
    if shapes_drawn:
        print(f"Shapes grid ({shapes_drawn} methods): {os.path.abspath(shapes_png)}")
    if page:
        print(f"Explanation report (open it in a browser): {page}")
    if callbacks:
        print(f"TensorBoard logs: {os.path.abspath(log_dir)}")
        print(f"  view them with: tensorboard --logdir {log_dir}")
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0


#: Methods of the demo's HTML report (those of them that worked on the shapes).
DEMO_REPORT_METHODS = ("gradient", "integrated_gradients", "grad_cam", "lrp.epsilon", "occlusion")


def _demo_report(model, x, labels, masks, worked: Sequence[str], out: str) -> str | None:
    """The demo's kx.report page of the shapes: a few methods, the masks, the top 3 classes."""
    from keras_explain.benchmark import method_parameters
    from keras_explain.datasets import CLASSES
    from keras_explain.report import report

    chosen = [name for name in DEMO_REPORT_METHODS if name in worked] or list(worked)[:3]
    if not chosen:
        return None
    parameters = method_parameters(x.shape[1], x.shape[-1])
    methods = {name: parameters.get(name, {}) for name in chosen}
    return report(
        methods,
        model,
        x,
        labels=labels,
        class_names=list(CLASSES),
        masks=masks,
        out=os.path.join(out, "report.html"),
        title="keras-explain demo: a small CNN on 64x64 shapes",
    )


def _shapes(out: str, epochs: int, samples: int, methods) -> tuple[str, int, str | None]:
    """The demo on 64x64 shapes: train, explain, draw, report.

    Returns:
        ``(PNG path, methods drawn, report path or None)``.
    """
    import numpy as np

    from keras_explain.benchmark import QUICK_METHODS, train_shapes_cnn
    from keras_explain.datasets import CLASSES, shapes
    from keras_explain.visualize import plot_explanations

    size = 64
    print(
        f"\nTraining a small CNN on kx.datasets.shapes ({DEMO_SHAPES_TRAIN} images of "
        f"{size}x{size}, turned and mirrored at random, {epochs} epochs)"
    )
    started = time.perf_counter()
    model, accuracy = train_shapes_cnn(
        DEMO_SHAPES_TRAIN, epochs, size, test=500, batch_size=DEMO_SHAPES_BATCH, augment=True
    )
    print(
        f"Test accuracy: {accuracy:.3f} (500 held-out images; "
        f"data and training {time.perf_counter() - started:.1f} s)"
    )
    x, labels, masks = shapes(samples, size=size, seed=2)
    if methods is None:  # one per family: the digits grid above has every method
        methods = list(QUICK_METHODS)
    print(f"Explaining {samples} shapes with {len(methods)} methods:")
    results, _ = explain_all(model, x, methods=methods)
    png = os.path.join(out, "shapes.png")
    if not results:
        return png, 0, None
    predictions = np.argmax(model.predict(x, verbose=0), axis=1)
    titles = [f"{CLASSES[t]} / pred {CLASSES[p]}" for t, p in zip(labels, predictions)]
    figure = plot_explanations(x, results, labels=titles, cell_size=1.3, max_columns=11)
    figure.savefig(png, dpi=100)
    return png, len(results), _demo_report(model, x, labels, masks, list(results), out)
