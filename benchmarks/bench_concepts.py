"""Cost of minibatch CKA between two models and of TCAV with statistical testing (issue #11).

Usage::

    python benchmarks/bench_concepts.py                  # both parts, defaults below
    python benchmarks/bench_concepts.py --part cka --sizes 2500,10000
    python benchmarks/bench_concepts.py --part tcav --runs 10 --samples 500

(a) ``representations.similarity_matrix`` (minibatch linear CKA, minibatches of
256) of two 5-layer CNNs (different seeds; 32x32x3 inputs; conv 16, conv 16,
pool, conv 32, conv 32, pool, dense 10: the 5 layers with weights are compared,
a 5x5 matrix) on N random images. Each N runs in a fresh subprocess: it builds
the models and the inputs, runs one forward pass of a minibatch, records the
process's peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) as
the baseline, then runs ``similarity_matrix`` once and records the new peak.
"extra" = peak - baseline is what the computation needed on top of the inputs
(which are 12 KiB per image, in memory in both cases); bounded memory means the
extra at N = 10,000 is about the extra at N = 2,500. For comparison, one N x N
float64 kernel matrix of full (non-minibatch) CKA would take 8 N^2 bytes (0.8 GB
at N = 10,000, per layer). Time: the single run, and with paired timing
(``_paired.py``) at the smallest N the ratio ``similarity_matrix`` / a plain
``tf.function`` forward pass of both models over the same minibatches.

(b) ``concepts.TCAV`` with ``runs`` runs, 2 concepts, ``runs`` random sets (a list),
every set and the explained ``x`` of ``samples`` inputs, at the second convolution
(32x32x16 = 16,384 features), on the CNN of (a). The split: activations
(``kx.activations`` of every set), CAV fitting (the 3 x runs classifiers, 2 concepts
and random-vs-random, fitted at once as ``TCAV`` does with its default
``classifier="batched"``; the same CAVs fitted one by one with the original code's
``"linear"`` are timed too), gradients (``Gradient`` at the
layer on ``x``, what ``TCAV.run`` computes); each is timed on its own, once, after
a warm-up. The end-to-end ``TCAV(...).run`` is timed against a plain
``tf.function`` gradient of the logit with respect to the input on ``x`` (paired).

The issue's third benchmark, ``kx.features`` maximization, is in
``benchmarks/bench_features.py``.

The machine may be shared: times vary from run to run; memory figures do not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _paired import in_fresh_process  # noqa: E402

SIZE = 32
MINIBATCH = 256


def cnn(seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(name="pool1"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv3"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv4"),
            layers.GlobalAveragePooling2D(name="pool2"),
            layers.Dense(10, name="logits"),
        ]
    )


COMPARED = ["conv1", "conv2", "conv3", "conv4", "logits"]


def images(count: int, seed: int):
    import numpy as np

    return np.random.default_rng(seed).random((count, SIZE, SIZE, 3), dtype=np.float32)


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB


def child_cka(args) -> None:
    """One N, in this (fresh) process; prints a JSON line."""
    import tensorflow as tf

    from keras_explain import representations

    model_a, model_b = cnn(0), cnn(1)
    x = images(args.count, 0)
    model_a(x[:MINIBATCH]), model_b(x[:MINIBATCH])
    before = peak_mb()

    def method():
        return representations.similarity_matrix(
            model_a, model_b, x, layers_a=COMPARED, layers_b=COMPARED, batch_size=MINIBATCH
        )

    started = time.perf_counter()
    method()
    seconds = time.perf_counter() - started
    result = {"before": before, "peak": peak_mb(), "seconds": seconds}
    if args.paired:
        sys.path.insert(0, HERE)
        from _paired import paired

        forward = tf.function(lambda batch: (model_a(batch), model_b(batch)))
        parts = max(1, len(x) // MINIBATCH)
        import numpy as np

        bounds = np.cumsum([0] + [len(p) for p in np.array_split(np.arange(len(x)), parts)])

        def reference():
            for start, stop in zip(bounds[:-1], bounds[1:]):
                forward(tf.constant(x[start:stop]))

        timing = paired(method, reference, repeats=args.repeats, warmup=1)
        result.update(ratio=timing.ratio, method_s=timing.method_ms / 1e3)
        result.update(reference_s=timing.reference_ms / 1e3)
    print(json.dumps(result))


def child_tcav(args) -> None:
    import numpy as np
    import tensorflow as tf

    import keras_explain as kx
    from keras_explain import concepts

    sys.path.insert(0, HERE)
    from _paired import paired, timed

    model, layer, runs, count = cnn(0), "conv2", args.runs, args.samples
    sets = {name: images(count, seed) for seed, name in enumerate(("striped", "red"), start=1)}
    randoms = [images(count, 10 + k) for k in range(runs)]
    x = images(count, 99)

    def activations():
        return [kx.activations(model, layer, s) for s in [*sets.values(), *randoms]]

    acts = activations()  # warm-up (traces the engine)
    concept_acts, random_acts = acts[: len(sets)], acts[len(sets) :]

    def fitting(classifier):
        def fit():
            triples = [(c, random_acts[k], k) for c in concept_acts for k in range(runs)]
            triples += [(random_acts[(k + 1) % runs], random_acts[k], k) for k in range(runs)]
            if classifier == "batched":  # what TCAV does: every CAV in one fit
                return concepts._fit_cavs(triples, classifier)
            return [
                concepts.CAV.from_activations(c, r, classifier=classifier, seed=k)
                for c, r, k in triples
            ]

        return fit

    gradient = kx.Gradient(model, layer=layer, verbose=0)

    def gradients():
        return gradient.analyze(x, 0)

    gradients()
    fitting("batched")()  # warm-up (traces the fit)
    split = {
        "activations": timed(activations),
        "CAV fitting": timed(fitting("batched")),
        "gradients": timed(gradients),
    }
    original = timed(fitting("linear"))

    def method():
        return concepts.TCAV(model, layer, sets, randoms, runs=runs).run(x, 0)

    rows = method()
    logits = tf.function(lambda inputs: model(inputs)[:, 0])

    @tf.function
    def plain_gradient(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            output = logits(inputs)
        return tape.gradient(output, inputs)

    x_tensor = tf.constant(x)
    timing = paired(method, lambda: plain_gradient(x_tensor).numpy(), repeats=args.repeats)
    print(
        json.dumps(
            {
                "split": split,
                "original_fitting_s": original,
                "total_s": timing.method_ms / 1e3,
                "reference_s": timing.reference_ms / 1e3,
                "ratio": timing.ratio,
                "means": {row["concept"]: row["mean"] for row in rows},
                "features": int(np.prod(concept_acts[0].shape[1:])),
            }
        )
    )


def run_child(argv: list[str]) -> dict:
    return in_fresh_process(__file__, argv)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("cka", "tcav", "both"), default="both")
    parser.add_argument("--sizes", default="2500,10000", help="N for (a), comma-separated")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", default="cka", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--paired", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        (child_cka if args.case == "cka" else child_tcav)(args)
        return 0
    if args.part in ("cka", "both"):
        sizes = sorted(int(size) for size in args.sizes.split(","))
        print("(a) similarity_matrix, minibatch CKA (256), two 5-layer CNNs, 32x32x3, 5x5 layers")
        print("    peak RSS of a fresh process per N; extra = peak - baseline (models + inputs)")
        print(
            f"{'N':>7} {'inputs MB':>9} {'baseline MB':>11} {'peak MB':>8} {'extra MB':>9} "
            f"{'time s':>7} {'full-CKA gram MB':>16}"
        )
        extras = {}
        for size in sizes:
            flags = ["--case", "cka", "--count", str(size), "--repeats", str(args.repeats)]
            case = run_child(flags + (["--paired"] if size == sizes[0] else []))
            extras[size] = case["peak"] - case["before"]
            print(
                f"{size:>7} {size * SIZE * SIZE * 3 * 4 / 2**20:>9.0f} {case['before']:>11.0f} "
                f"{case['peak']:>8.0f} {extras[size]:>9.0f} {case['seconds']:>7.1f} "
                f"{8 * size**2 / 2**20:>16.0f}",
                flush=True,
            )
            if "ratio" in case:
                print(
                    f"        paired at N={size}: similarity_matrix / forward passes of both "
                    f"models = {case['ratio']:.2f}x ({case['method_s']:.2f} s vs "
                    f"{case['reference_s']:.2f} s, median of {args.repeats} pairs); target "
                    f"<= 3x: {'met' if case['ratio'] <= 3 else 'NOT met'}",
                    flush=True,
                )
        if len(sizes) > 1:
            print(
                f"    extra memory N={sizes[-1]} / N={sizes[0]}: "
                f"{extras[sizes[-1]] / extras[sizes[0]]:.2f}x for {sizes[-1] / sizes[0]:.0f}x "
                "the samples",
                flush=True,
            )
    if args.part in ("tcav", "both"):
        case = run_child(
            ["--case", "tcav", "--runs", str(args.runs), "--samples", str(args.samples)]
            + ["--repeats", str(args.repeats)]
        )
        print(
            f"(b) TCAV, {args.runs} runs, 2 concepts, {args.runs} random sets, {args.samples} "
            f"samples per set and explained, layer conv2 ({case['features']} features)"
        )
        print(f"{'part':<28} {'seconds':>8} {'share':>6}")
        parts = sum(case["split"].values())
        for name, seconds in case["split"].items():
            print(f"{name:<28} {seconds:>8.2f} {seconds / parts:>6.0%}")
        print(f"{'TCAV(...).run end to end':<28} {case['total_s']:>8.2f}")
        print(
            f"    (fitting the same 30 CAVs one by one with classifier='linear', the original "
            f"code's SGDClassifier: {case['original_fitting_s']:.2f} s)"
        )
        print(
            f"    paired: TCAV end to end / plain tf.function input gradient on the same "
            f"{args.samples} samples = {case['ratio']:.0f}x ({case['total_s']:.2f} s vs "
            f"{case['reference_s']:.3f} s, median of {args.repeats} pairs); target <= 20x: "
            f"{'met' if case['ratio'] <= 20 else 'NOT met'}"
        )
        print(f"    mean TCAV scores (random images, untrained CNN): {case['means']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
