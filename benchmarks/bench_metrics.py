"""Benchmark of kx.metrics: perturbation curves against plain batched forward passes.

Deletion with 100 steps on 32 images of 64x64 (3,232 perturbed inputs) and pixel
flipping with 6x6 regions and 100 steps, each timed against a plain compiled model
call over the same number of perturbed inputs in the same chunks, with paired
timing (``_paired.py``: the two alternate, median of the per-pair ratios; target:
within 1.3x). The metric's time includes everything a user waits for: building
the evaluator, tracing, ranking, making the copies and the curve.

Run: python benchmarks/bench_metrics.py
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_explain as kx  # noqa: E402
from keras_explain import config  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _paired import paired  # noqa: E402
from bench_perturbation import chunked_model_call, cnn  # noqa: E402


def rows_per_pass(model, x):
    """The rows of one engine pass for this model, rounded to whole batches (as the engine)."""
    plan = kx.graph.Plan(model)
    rows = config.rows_per_pass(plan.bytes_per_sample(), 0, factor=0.2)
    return max(1, rows // len(x)) * len(x)


def main():
    model = cnn(64)
    images, labels, _ = kx.datasets.shapes(32, size=64, seed=0)
    relevance = kx.Gradient(model).analyze(images, labels)
    chunk = rows_per_pass(model, images)
    print(f"32 images 64x64, CNN of bench_perturbation; {chunk} rows per pass")
    print(f"{'metric':<34}{'copies':>8}{'metric ms':>12}{'forward ms':>12}{'ratio':>8}")
    cases = [
        (
            "deletion, 100 steps",
            lambda: kx.metrics.deletion(model, images, relevance, labels, steps=100),
            101,
        ),
        (
            "pixel_flipping, 6x6 regions, 100",
            lambda: kx.metrics.pixel_flipping(
                model, images, relevance, labels, region=(6, 6), steps=100
            ),
            101,
        ),
    ]
    for name, metric, count in cases:
        copies = np.repeat(images, count, axis=0)  # same number of rows; values irrelevant
        timing = paired(metric, chunked_model_call(model, copies, chunk), repeats=5, warmup=1)
        print(
            f"{name:<34}{len(copies):>8}{timing.method_ms:>12.0f}{timing.reference_ms:>12.0f}"
            f"{timing.ratio:>8.2f}"
        )


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    keras.config.disable_interactive_logging()
    main()
