"""Time to the first explanation: creating an analyzer and its first ``analyze`` (issue #27).

Usage::

    python benchmarks/bench_first.py                       # EfficientNetB0 at 96x96, 3 processes
    python benchmarks/bench_first.py --model ResNet50 --size 128 --processes 5

What a user waits for the first time they explain an image: the analyzer's creation,
its trace and the run, against what they would wait for a plain gradient of their own
(a new ``tf.function`` with a ``GradientTape``: its trace and its run). Each method runs
in fresh subprocesses: a process builds the model (``weights=None``, nothing
downloaded), runs one forward pass and one plain gradient in a first ``tf.function``
(TensorFlow's one-time start-up, paid by whichever comes first), then times a second
new plain ``tf.function`` gradient's first call (the reference) and the method's first
explanation, one image each. The ratio is the median over ``--processes`` processes of
the per-process ratios. The second call of each is printed too (the run alone).

Target: at most 1.3x the plain gradient's first call.
"""

from __future__ import annotations

import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _paired  # noqa: E402

METHODS = ("gradient", "lrp.epsilon", "lrp.epsilon_plus_flat", "integrated_gradients")
TARGET = 1.3


def child(args) -> None:
    """One method against the plain reference, in this fresh process; prints a JSON line."""
    import json
    import time

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import keras_explain as kx

    model, x = _paired.application(args)

    _paired.new_plain_gradient(model, x)()  # TensorFlow's one-time start-up

    def first_and_second(make):
        started = time.perf_counter()
        call = make()
        call()
        first = time.perf_counter() - started
        started = time.perf_counter()
        call()
        return first, time.perf_counter() - started

    def explanation():
        analyzer = kx.create_analyzer(args.method, model, verbose=0)
        return lambda: analyzer.analyze(x)

    reference = first_and_second(lambda: _paired.new_plain_gradient(model, x))
    method = first_and_second(explanation)
    print(json.dumps({"reference": reference, "method": method}))


def main(argv=None) -> int:
    parser = _paired.application_parser(__doc__, 96, METHODS)
    parser.add_argument("--processes", type=int, default=3)
    args = _paired.parsed_or_child(parser, argv, child)
    if args is None:
        return 0
    common = _paired.application_flags(args)
    print(f"{args.model} at {args.size}x{args.size}, one image; first call = create + trace + run")
    print(
        f"{'method':<24} {'first s':>8} {'plain first s':>14} {'ratio':>7} "
        f"{'second ms':>10} {'plain second ms':>16}  target <= {TARGET}x"
    )
    ok = True
    for method in args.methods.split(","):
        runs = [
            _paired.in_fresh_process(__file__, [*common, "--method", method])
            for _ in range(args.processes)
        ]
        ratio = statistics.median(run["method"][0] / run["reference"][0] for run in runs)
        first = statistics.median(run["method"][0] for run in runs)
        plain = statistics.median(run["reference"][0] for run in runs)
        second = statistics.median(run["method"][1] for run in runs) * 1e3
        plain_second = statistics.median(run["reference"][1] for run in runs) * 1e3
        met = ratio <= TARGET
        ok &= met
        print(
            f"{method:<24} {first:>8.2f} {plain:>14.2f} {ratio:>6.2f}x {second:>10.1f} "
            f"{plain_second:>16.1f}  {'met' if met else 'NOT met'}",
            flush=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
