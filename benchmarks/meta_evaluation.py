"""Meta-evaluate metrics with MetaQuantus on the shapes CNN (slow; not a test).

Trains the shapes benchmark CNN (``train_shapes_cnn(20000, 4, 32)``; ``--train`` and
``--epochs`` change it; 4,000 images leave it at chance), then runs
``kx.metrics.meta_evaluate`` for a handful of registered metrics with the methods
gradient, integrated_gradients, grad_cam and lrp.epsilon, and prints one table:
the four criteria and MC for each test, the mean MC over both, and beside it the
MC MetaQuantus reports for the same kind of metric on MNIST (LeNet, 3 iterations
of K = 5; from the repository's tutorials/Tutorial-Reproduce-Experiments.ipynb,
the MNIST benchmarking table, cell 11).

    python benchmarks/meta_evaluation.py          # 32 samples, K = 5: 15 to 20 minutes
    python benchmarks/meta_evaluation.py --samples 64 --iterations 15
"""

from __future__ import annotations

import argparse
import math
import time

import keras_explain as kx
from keras_explain.benchmark import train_shapes_cnn

METHODS = ["gradient", "integrated_gradients", "grad_cam", "lrp.epsilon"]
METRICS = [
    "deletion_auc",
    "insertion_auc",
    "faithfulness_correlation",
    "sparseness",
    "relevance_mass",
    "pointing_game",
    "randomization",
    "random_logit",
    "complexity",
    "avg_sensitivity",
    "faithfulness_estimate",
    "monotonicity_correlation",
    "localisation_auc",
    "top_k_intersection",
]
#: MetaQuantus' MNIST MC (model test, input test, their mean MC̄) of the nearest Quantus
#: estimator, as the notebook prints them.
PAPER_MNIST = {
    "sparseness": ("Sparseness", 0.640, 0.476, 0.558),
    "complexity": ("Complexity", 0.541, 0.500, 0.521),
    "faithfulness_correlation": ("Faithfulness Correlation", 0.537, 0.543, 0.540),
    "deletion_auc": ("Pixel-Flipping", 0.609, 0.644, 0.626),
    "pointing_game": ("Pointing-Game", 0.672, 0.500, 0.586),
    "relevance_mass": ("Relevance Mass Accuracy", 0.613, 0.491, 0.552),
    "randomization": ("Model Parameter Randomisation Test", 0.624, 0.542, 0.583),
    "random_logit": ("Random Logit", 0.712, 0.620, 0.666),
    "sensitivity_max": ("Max-Sensitivity", 0.754, 0.545, 0.649),
    "local_lipschitz_estimate": ("Local Lipschitz Estimate", 0.726, 0.756, 0.741),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=5, help="K per test and level")
    parser.add_argument("--metrics", nargs="*", default=METRICS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=20000, help="training images")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    start = time.perf_counter()
    model, accuracy = train_shapes_cnn(args.train, args.epochs, 32, verbose=0)
    print(
        f"shapes CNN ({args.train} images, {args.epochs} epochs): test accuracy {accuracy:.3f} "
        f"({time.perf_counter() - start:.0f} s)"
    )
    x, _, masks = kx.datasets.shapes(args.samples, size=32, seed=2)
    chosen = [name for name in args.metrics if name in kx.metrics.METRICS]
    skipped = [name for name in args.metrics if name not in kx.metrics.METRICS]
    print(
        f"{args.samples} samples, K = {args.iterations} per test and level, methods {METHODS}"
        + (f"; not registered, skipped: {skipped}" if skipped else "")
    )
    header = (
        f"{'metric':<26}{'test':<7}{'IAC_NR':>7}{'IAC_AR':>7}{'IEC_NR':>7}{'IEC_AR':>7}"
        f"{'MC':>7}{'kept':>6}{'flip':>6}   paper MNIST MC (estimator)"
    )
    print(header)
    for metric in chosen:
        start = time.perf_counter()
        result = kx.metrics.meta_evaluate(
            metric,
            model,
            x,
            methods=METHODS,
            masks=masks,
            iterations=args.iterations,
            seed=args.seed,
            verbose=0,
        )
        paper = PAPER_MNIST.get(metric)
        for index, (test, outcome) in enumerate(result.tests.items()):
            c = outcome.criteria
            cells = "".join(f"{c[name]:7.3f}" for name in kx.metrics.meta.CRITERIA)
            kept = outcome.minor_kept.mean()
            flipped = outcome.disruptive_changed.mean()
            note = ""
            if paper is not None:
                note = f"   {paper[1 + index]:.3f} ({paper[0]})"
            print(f"{metric:<26}{test:<7}{cells}{outcome.mc:7.3f}{kept:6.2f}{flipped:6.2f}{note}")
        mean = result.mc
        paper_mean = "" if paper is None else f"   {paper[3]:.3f}"
        seconds = time.perf_counter() - start
        print(
            f"{metric:<26}{'mean':<7}{'':28}{mean:7.3f}{'':12}{paper_mean}"
            f"   [{seconds:.0f} s]"
            + ("" if math.isfinite(mean) else "  (NaN: a criterion is undefined)")
        )


if __name__ == "__main__":
    main()
