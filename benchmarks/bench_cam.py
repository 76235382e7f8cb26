"""Benchmark the CAM family against a plain compiled gradient, measured in the same run.

Model: the foundation benchmark CNN, Input(64, 64, 3) -> Conv2D(16, 3, relu) -> MaxPool ->
Conv2D(32, 3, relu) -> MaxPool -> Flatten -> Dense(64, relu) -> Dense(10), batch 32, seeded.
Each method's ``analyze`` call and a plain ``tf.function`` GradientTape gradient of the
target logit w.r.t. the input run alternately after a warm-up call (which traces); the
table prints both medians and the median of the per-pair ratios. Score-CAM is compared
with one compiled forward pass over as many masked inputs as it evaluates (batch *
channels). CAM needs GAP + Dense, so it
runs on the same model with ``Flatten -> Dense(64) -> Dense(10)`` replaced by
``GlobalAveragePooling2D -> Dense(10)``, against that model's own plain gradient.

Run: ``python benchmarks/bench_cam.py [--runs 10]``.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_explain as kx  # noqa: E402
from keras_explain.analyzers import cam  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _paired import paired  # noqa: E402

BATCH = 32
layers = keras.layers


def foundation_model(gap_head=False):
    keras.utils.set_random_seed(0)
    body = [
        keras.Input((64, 64, 3)),
        layers.Conv2D(16, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(),
    ]
    if gap_head:
        head = [layers.GlobalAveragePooling2D(), layers.Dense(10)]
    else:
        head = [layers.Flatten(), layers.Dense(64, activation="relu"), layers.Dense(10)]
    return keras.Sequential(body + head)


def compare(method, reference, runs):
    """Paired timing (``_paired.py``): median times and the median of per-pair ratios."""
    result = paired(method, reference, repeats=runs, warmup=1)
    return result.method_ms / 1e3, result.reference_ms / 1e3, result.ratio


def plain_gradient(model, x, target):
    @tf.function
    def gradient(inputs, indices):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            logits = model(inputs, training=False)
            score = tf.gather(logits, indices, axis=1, batch_dims=1)
        return tape.gradient(score, inputs)

    inputs, indices = tf.constant(x), tf.constant(target)
    return lambda: gradient(inputs, indices).numpy()


def plain_forward(model, rows):
    masked = tf.constant(np.random.default_rng(1).random((rows, 64, 64, 3), dtype=np.float32))
    forward = tf.function(lambda inputs: model(inputs, training=False))
    return lambda: forward(masked).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    x = np.random.default_rng(0).random((BATCH, 64, 64, 3), dtype=np.float32)
    target = np.arange(BATCH, dtype=np.int64) % 10

    model = foundation_model()
    gap_model = foundation_model(gap_head=True)
    gradient = plain_gradient(model, x, target)
    gap_gradient = plain_gradient(gap_model, x, target)
    print(f"TF {tf.__version__}, Keras {keras.__version__}, batch {BATCH}, runs {args.runs}")
    print(f"{'method':<38}{'median ms':>10}{'reference ms':>14}{'ratio':>8}  reference")
    rows = [
        ("grad_cam", cam.GradCAM(model), gradient),
        ("grad_cam_pp", cam.GradCAMPlusPlus(model), gradient),
        ("layer_cam", cam.LayerCAM(model), gradient),
        ("guided_grad_cam", cam.GuidedGradCAM(model), gradient),
        ("cam (GAP variant)", cam.CAM(gap_model), gap_gradient),
    ]
    for name, analyzer, reference in rows:
        seconds, base, ratio = compare(
            lambda a=analyzer: a.analyze(x, target), reference, args.runs
        )
        print(f"{name:<38}{seconds * 1e3:10.2f}{base * 1e3:14.2f}{ratio:8.2f}x plain gradient")

    channels = kx.create_analyzer("score_cam", model).layer.output.shape[-1]
    forward = plain_forward(model, BATCH * channels)
    for size in (256, BATCH * channels, None):
        analyzer = cam.ScoreCAM(model, internal_batch_size=size, verbose=0)
        seconds, base, ratio = compare(
            lambda a=analyzer: a.analyze(x, target), forward, max(3, args.runs // 2)
        )
        name = f"score_cam (internal_batch_size={size or 'budget'})"
        print(
            f"{name:<38}{seconds * 1e3:10.2f}{base * 1e3:14.2f}{ratio:8.2f}x forward of "
            f"{BATCH * channels} masked inputs"
        )


if __name__ == "__main__":
    main()
