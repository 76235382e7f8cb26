"""Peak memory of the multiplying methods as steps / samples grow (issue #16).

Usage::

    python benchmarks/bench_memory.py                      # MobileNetV2 at 128x128, batch 4
    python benchmarks/bench_memory.py --model ResNet50 --size 160 --batch 8

Each memory case runs in a fresh subprocess: it builds the model (``weights=None``,
nothing downloaded), runs one forward pass, records the process's peak resident memory
(``resource.getrusage``) as the baseline, then runs ``analyze`` once and records the new
peak. "extra" is the difference: what the analysis itself needed. Cases: Integrated
Gradients (steps) and SmoothGrad (samples) at 16, 64 and 128, with the default memory
budget (bounded passes) and with ``internal_batch_size`` = every row at once (the
behaviour before issue #16).

Time: at 64 steps/samples, the bounded analyzer and the all-at-once one are timed in one
subprocess with paired timing (``_paired.py``): the ratio is the median of per-pair
ratios, bounded / all-at-once.

Targets: extra memory at 128 <= 1.3x extra memory at 16 (bounded), time at 64 within 10%
of all-at-once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _paired import in_fresh_process  # noqa: E402

COUNTS = (16, 64, 128)
METHODS = {"integrated_gradients": "steps", "smoothgrad": "samples"}


def child(args) -> None:
    """One case, in this (fresh) process; prints a JSON line."""
    import resource
    import time

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    import keras_explain as kx

    keras.utils.set_random_seed(0)
    build = getattr(keras.applications, args.model)
    model = build(weights=None, input_shape=(args.size, args.size, 3), classes=10)
    x = np.random.default_rng(0).uniform(0, 255, (args.batch, args.size, args.size, 3))
    x = x.astype("float32")
    model(x)

    def peak_gb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB

    def analyzer(all_at_once: bool, count: int):
        params = {METHODS[args.method]: count, "verbose": 0}
        if args.method == "smoothgrad":
            params["seed"] = 0
        if all_at_once:
            params["internal_batch_size"] = args.batch * count
        return kx.create_analyzer(args.method, model, **params)

    if args.case == "memory":
        before = peak_gb()
        started = time.perf_counter()
        analyzer(args.all_at_once, args.count).analyze(x)
        seconds = time.perf_counter() - started
        print(json.dumps({"before": before, "peak": peak_gb(), "seconds": seconds}))
        return
    sys.path.insert(0, HERE)
    from _paired import paired

    bounded, whole = analyzer(False, args.count), analyzer(True, args.count)
    result = paired(lambda: bounded.analyze(x), lambda: whole.analyze(x), args.repeats, 1)
    print(
        json.dumps(
            {
                "ratio": result.ratio,
                "bounded_s": result.method_ms / 1e3,
                "all_at_once_s": result.reference_ms / 1e3,
            }
        )
    )


def run_child(argv: list[str]) -> dict:
    return in_fresh_process(__file__, argv)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="MobileNetV2")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", default="memory", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--all-at-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    common = ["--model", args.model, "--size", str(args.size), "--batch", str(args.batch)]
    print(
        f"{args.model} at {args.size}x{args.size}, batch {args.batch}; peak RSS per fresh process"
    )
    print(
        f"{'method':<22} {'count':>5} {'mode':<12} {'before GB':>9} {'peak GB':>8} {'extra GB':>9}"
    )
    ok = True
    for method in args.methods.split(","):
        extras = {}
        for all_at_once in (False, True):
            mode = "all-at-once" if all_at_once else "bounded"
            for count in COUNTS:
                flags = ["--method", method, "--count", str(count)]
                flags += ["--all-at-once"] if all_at_once else []
                case = run_child(common + flags)
                extra = case["peak"] - case["before"]
                extras[mode, count] = extra
                print(
                    f"{method:<22} {count:>5} {mode:<12} {case['before']:>9.2f} "
                    f"{case['peak']:>8.2f} {extra:>9.2f}",
                    flush=True,
                )
        growth = extras["bounded", 128] / extras["bounded", 16]
        growth_before = extras["all-at-once", 128] / extras["all-at-once", 16]
        timing = run_child(
            common
            + [
                "--case",
                "time",
                "--method",
                method,
                "--count",
                "64",
                "--repeats",
                str(args.repeats),
            ]
        )
        met = growth <= 1.3 and timing["ratio"] <= 1.10
        ok &= met
        print(
            f"  {method}: bounded extra memory 128 / 16 = {growth:.2f}x (target <= 1.3x); "
            f"all-at-once 128 / 16 = {growth_before:.2f}x; "
            f"time at 64, bounded / all-at-once = {timing['ratio']:.3f}x "
            f"({timing['bounded_s']:.2f} s vs {timing['all_at_once_s']:.2f} s; target <= 1.10x)"
            f"  {'met' if met else 'NOT MET'}",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
