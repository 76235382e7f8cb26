"""Benchmark of kx.metrics: perturbation curves against plain batched forward passes.

Deletion with 100 steps on 32 images of 64x64 (3,232 perturbed inputs) and pixel
flipping with 6x6 regions and 100 steps, each timed against a plain compiled model
call over the same number of perturbed inputs in the same chunks, with paired
timing (``_paired.py``: the two alternate, median of the per-pair ratios; targets:
deletion within 1.3x, pixel flipping within 1.2x (issue #27)). The metric's time
includes everything a user waits for: building the evaluator, tracing, ranking,
making the copies and the curve.

Then the perturbation metrics of issue #25 (faithfulness estimate, monotonicity,
monotonicity correlation, sensitivity-n, IROF, ROAD) on the same images, each
against the plain forward passes of as many inputs as it evaluates (target: within
1.3x, issue #25 item 6).

Randomization (cascading, every layer of a CNN with five weighted layers) against
the explanations it recomputes: the original and one per randomized layer, by an
analyzer already traced (target: within 1.3x, issue #27; 1.5x before). Its time
includes cloning the model, building and tracing the analyzer on the clone,
re-initializing each layer and the Spearman similarities.

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


def verdict(ratio: float, goal: float) -> str:
    return "met" if ratio <= goal else "NOT met"


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
    print(f"{'metric':<34}{'copies':>8}{'metric ms':>12}{'forward ms':>12}{'ratio':>8}  target")
    cases = [
        (
            "deletion, 100 steps",
            lambda: kx.metrics.deletion(model, images, relevance, labels, steps=100),
            101,
            1.3,
        ),
        (
            "pixel_flipping, 6x6 regions, 100",
            lambda: kx.metrics.pixel_flipping(
                model, images, relevance, labels, region=(6, 6), steps=100
            ),
            101,
            1.2,
        ),
    ]
    for name, metric, count, goal in cases + catalogue_cases(model, images, labels, relevance):
        copies = np.repeat(images, count, axis=0)  # same number of rows; values irrelevant
        timing = paired(metric, chunked_model_call(model, copies, chunk), repeats=5, warmup=1)
        print(
            f"{name:<34}{len(copies):>8}{timing.method_ms:>12.0f}{timing.reference_ms:>12.0f}"
            f"{timing.ratio:>8.2f}  <= {goal}x: {verdict(timing.ratio, goal)}"
        )


def catalogue_cases(model, images, labels, relevance):
    """The perturbation metrics of issue #25, about 100 copies per image (target: 1.3x).

    Each row counts every input the metric sends through the model, the clean
    image included (counted in the engine's traces): faithfulness estimate and
    monotonicity with 100 groups of 41
    pixels (4,096 / 41), monotonicity correlation with 10 groups x 10 draws,
    sensitivity-n with its 10 default sizes x 10 subsets, IROF with 64 square
    segments, ROAD with its 9 percentages (its noisy linear imputation, a sparse
    solve per image and percentage, is part of the metric's time).
    """
    m, x, t, a = model, images, labels, relevance
    segments = np.arange(64 * 64).reshape(64, 64)
    segments = (segments // 64 // 8) * 8 + (segments % 64) // 8  # 8x8 squares of 8x8 pixels
    return [
        (
            "faithfulness_estimate, 100 groups",
            lambda: kx.metrics.faithfulness_estimate(m, x, a, t, features_in_step=41),
            101,
            1.3,
        ),
        (
            "monotonicity, 100 groups",
            lambda: kx.metrics.monotonicity(m, x, a, t, features_in_step=41),
            101,
            1.3,
        ),
        (
            "monotonicity_correlation, 10x10",
            lambda: kx.metrics.monotonicity_correlation(
                m, x, a, t, features_in_step=410, samples=10
            ),
            101,
            1.3,
        ),
        (
            "sensitivity_n, 10 sizes x 10",
            lambda: kx.metrics.sensitivity_n(m, x, a, t, samples=10),
            101,
            1.3,
        ),
        ("irof, 64 segments", lambda: kx.metrics.irof(m, x, a, t, segmentation=segments), 65, 1.3),
        ("road, 9 percentages", lambda: kx.metrics.road(m, x, a, t), 10, 1.3),
    ]


def five_layer_cnn(size=64):
    """Four ReLU convolutions and a Dense layer: five layers with weights."""
    keras.utils.set_random_seed(0)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            layers.Conv2D(16, 3, activation="relu", padding="same"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, activation="relu", padding="same"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, activation="relu", padding="same"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu", padding="same"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(5),
        ]
    )


def randomization_cases():
    model = five_layer_cnn(64)
    images, labels, _ = kx.datasets.shapes(32, size=64, seed=0)
    weighted = sum(1 for layer in model.layers if layer.weights)
    print(f"\nrandomization, cascading: CNN with {weighted} weighted layers, 32 images 64x64")
    print(f"{'method':<34}{'explained':>10}{'metric ms':>12}{'explain ms':>12}{'ratio':>8}  target")
    for name in ("gradient", "lrp.epsilon", "grad_cam", "integrated_gradients"):
        analyzer = kx.create_analyzer(name, model, verbose=0)
        analyzer.analyze(images, labels)  # traced: the reference is the explanations only

        def explanations(analyzer=analyzer, count=weighted + 1):
            for _ in range(count):
                analyzer.analyze(images, labels)

        def metric(name=name):
            kx.metrics.randomization(name, model, images, labels, verbose=0)

        timing = paired(metric, explanations, repeats=5, warmup=1)
        print(
            f"{name:<34}{weighted + 1:>10}{timing.method_ms:>12.0f}"
            f"{timing.reference_ms:>12.0f}{timing.ratio:>8.2f}  <= 1.3x: "
            f"{verdict(timing.ratio, 1.3)}"
        )


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    keras.config.disable_interactive_logging()
    main()
    randomization_cases()
