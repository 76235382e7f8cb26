"""Benchmark of kx.crp (issue #24, item 8), with paired timing.

CRP for 32 concepts of one layer against one LRP pass over the same images (the
anchor CNN of ``bench_analyzers.py``: 64x64x3, two convolutions, batch 8,
``epsilon_plus_flat``). The 32 conditional heatmaps share the forward pass and the
backward pass down to the layer; the part below it is vectorized over the 32
concepts. Target: within 4x of the one LRP pass. A layer's depth sets the cost: the
deeper the layer, the more of the backward pass runs once per concept. The second
table pairs CRP with one LRP pass over 32 copies of the images (what a heatmap per
concept costs as ordinary LRP passes, the masking left out).

Run: python benchmarks/bench_crp_spray.py
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_explain as kx  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _paired import paired  # noqa: E402

layers = keras.layers


def cnn() -> keras.Model:
    seeds = iter(range(100))

    def init():
        return keras.initializers.GlorotUniform(seed=next(seeds))

    return keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            layers.Conv2D(32, 3, activation="relu", name="conv1", kernel_initializer=init()),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, activation="relu", name="conv2", kernel_initializer=init()),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu", kernel_initializer=init()),
            layers.Dense(10, kernel_initializer=init()),
        ],
        name="cnn",
    )


def verdict(value, goal):
    return "met" if value <= goal else "NOT met"


def main():
    model = cnn()
    x = np.random.default_rng(0).uniform(size=(8, 64, 64, 3)).astype("float32")
    lrp = kx.LRP(model, "epsilon_plus_flat")
    print("CRP, 32 concepts, 8 images 64x64, epsilon_plus_flat, paired against one LRP pass")
    print(f"{'layer':<8} {'CRP ms':>8} {'LRP ms':>8} {'ratio':>7}  target")
    for name in ("conv2", "conv1"):
        crp = kx.crp.CRP(model, name, composite="epsilon_plus_flat")
        timing = paired(lambda crp=crp: crp.conditional(x), lambda: lrp.analyze(x))
        print(
            f"{name:<8} {timing.method_ms:>8.0f} {timing.reference_ms:>8.0f} "
            f"{timing.ratio:>7.2f}  <= 4x: {verdict(timing.ratio, 4.0)}"
        )
    copies = np.tile(x, (32, 1, 1, 1))
    print("the same, paired against one LRP pass over 32 copies of the 8 images")
    print(f"{'layer':<8} {'CRP ms':>8} {'LRP ms':>8} {'ratio':>7}")
    for name in ("conv2", "conv1"):
        crp = kx.crp.CRP(model, name, composite="epsilon_plus_flat")
        timing = paired(lambda crp=crp: crp.conditional(x), lambda: lrp.analyze(copies), repeats=5)
        print(
            f"{name:<8} {timing.method_ms:>8.0f} {timing.reference_ms:>8.0f} {timing.ratio:>7.2f}"
        )


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    main()
