"""Benchmark of the model-agnostic family (occlusion, RISE, LIME, KernelSHAP).

Occlusion and RISE: ratio of the method's time to the time of evaluating the
same perturbed inputs with a plain compiled model call in the same chunks,
with paired timing (``_paired.py``: the two alternate, median of the per-pair
ratios; target: within 1.3x). LIME and KernelSHAP: where the time goes
(segmentation, model, the package's sampling and surrogate fit).

Run: python benchmarks/bench_perturbation.py
"""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_explain.analyzers.perturbation import RISE, KernelShap, Lime, Occlusion  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _paired import paired  # noqa: E402


def cnn(size=32):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )


def chunked_model_call(model, copies, rows):
    """A plain compiled model call over the same perturbed inputs, in the same chunks."""
    call = tf.function(lambda batch: model(batch, training=False))
    chunks = [tf.constant(copies[i : i + rows]) for i in range(0, len(copies), rows)]
    for chunk in chunks[:1] + chunks[-1:]:
        call(chunk)  # trace both chunk shapes

    def run():
        for chunk in chunks:
            call(chunk).numpy()

    return run


def occlusion_row(model, x):
    analyzer = Occlusion(model, window=4, stride=4, verbose=0)
    covers = analyzer.covers(x.shape)
    copies = []
    for rows in covers[0]:
        for cols in covers[1]:
            mask = np.outer(rows, cols)[None, :, :, None]
            copies.append(x * (1 - mask))
    copies = np.concatenate(copies).astype("float32")  # same count; order irrelevant
    per_chunk = analyzer.copies_per_pass([x], backward=False) * len(x)
    timing = paired(lambda: analyzer.analyze(x), chunked_model_call(model, copies, per_chunk))
    return timing, len(copies)


def rise_row(model, x, samples):
    analyzer = RISE(model, samples=samples, cells=7, seed=0, verbose=0)
    rng = np.random.default_rng(0)
    masks = rng.random((samples, *x.shape[1:3], 1)).astype("float32")
    copies = (x[None] * masks[:, None]).reshape(-1, *x.shape[1:])
    per_chunk = analyzer.copies_per_pass([x], backward=False) * len(x)
    timing = paired(lambda: analyzer.analyze(x), chunked_model_call(model, copies, per_chunk))
    return timing, len(copies)


def main():
    model = cnn()
    x = np.random.default_rng(0).random((8, 32, 32, 3)).astype("float32")
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, model {model.count_params()} "
        f"params, input {x.shape}"
    )
    print(f"{'method':<28}{'rows':>8}{'method s':>10}{'model s':>10}{'ratio':>8}")
    for name, (timing, rows) in (
        ("occlusion (4x4, stride 4)", occlusion_row(model, x)),
        ("rise (1000 masks)", rise_row(model, x, 1000)),
    ):
        print(
            f"{name:<28}{rows:>8}{timing.method_ms / 1e3:>10.3f}"
            f"{timing.reference_ms / 1e3:>10.3f}{timing.ratio:>8.2f}"
        )

    print()
    print(f"{'method':<32}{'total s':>9}{'segment.':>10}{'model':>9}{'package':>9}")
    images = x[:4]
    for name, analyzer in (
        ("lime (quickshift, 1000)", Lime(model, samples=1000, seed=0, verbose=0)),
        ("lime (slic, 1000)", Lime(model, samples=1000, segmentation="slic", seed=0, verbose=0)),
        ("kernel_shap (slic, 1000)", KernelShap(model, samples=1000, seed=0, verbose=0)),
    ):
        analyzer.analyze(images[:1])
        start = time.perf_counter()
        analyzer.analyze(images)
        total = time.perf_counter() - start
        timings = analyzer.last_timings
        print(
            f"{name:<32}{total:>9.3f}{timings['segmentation']:>10.3f}"
            f"{timings['model']:>9.3f}{timings['surrogate']:>9.3f}"
        )
    data = np.random.default_rng(1).normal(size=(500, 20)).astype("float32")
    keras.utils.set_random_seed(0)
    tabular = keras.Sequential(
        [keras.Input((20,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(3)]
    )
    for name, analyzer in (
        ("lime tabular (20 f, 5000)", Lime(tabular, samples=5000, training_data=data, seed=0)),
        ("kernel_shap tabular (20 f)", KernelShap(tabular, background=data[:50], seed=0)),
    ):
        analyzer.analyze(data[:1])
        start = time.perf_counter()
        analyzer.analyze(data[:8])
        total = time.perf_counter() - start
        timings = analyzer.last_timings
        print(
            f"{name:<32}{total:>9.3f}{timings['segmentation']:>10.3f}"
            f"{timings['model']:>9.3f}{timings['surrogate']:>9.3f}"
        )


if __name__ == "__main__":
    main()
