"""Memory kept per analyzer created and dropped, as in a notebook loop (issue #27).

Usage::

    python benchmarks/bench_lifetime.py                          # EfficientNetB0, 64x64
    python benchmarks/bench_lifetime.py --model ResNet50 --loops 6 --methods lrp.epsilon

Each method runs in a fresh subprocess: it builds the model (``weights=None``, nothing
downloaded), runs one forward pass, then ``--loops`` times creates the analyzer,
analyzes one image, drops it and collects garbage, reading the resident set size
(``/proc/self/statm``) after each. The reference, in its own fresh process, does the
same with a plain gradient in a new ``tf.function`` each time (what a user's own code
keeps). The figure is the median growth per loop after the first (the first loop also
pays TensorFlow's one-time start-up).

Target: a new analyzer keeps no more than a plain new ``tf.function`` gradient does.
"""

from __future__ import annotations

import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _paired  # noqa: E402

METHODS = ("gradient", "lrp.epsilon", "lrp.epsilon_plus_flat", "integrated_gradients")


def child(args) -> None:
    """One method (or the plain reference), in this fresh process; prints a JSON line."""
    import gc
    import json

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import keras_explain as kx

    def resident_mib() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    model, x = _paired.application(args)

    readings = [resident_mib()]
    for _ in range(args.loops):
        if args.method == "plain":
            _paired.new_plain_gradient(model, x)()
        else:
            kx.create_analyzer(args.method, model, verbose=0).analyze(x)
        gc.collect()
        readings.append(resident_mib())
    print(json.dumps({"readings": readings}))


def growth(readings: list[float]) -> float:
    """Median MiB kept per loop, the first loop left out."""
    return statistics.median(b - a for a, b in zip(readings[1:], readings[2:]))


def main(argv=None) -> int:
    parser = _paired.application_parser(__doc__, 64, METHODS)
    parser.add_argument("--loops", type=int, default=5)
    args = _paired.parsed_or_child(parser, argv, child)
    if args is None:
        return 0
    common = [*_paired.application_flags(args), "--loops", str(args.loops)]
    plain = growth(_paired.in_fresh_process(__file__, [*common, "--method", "plain"])["readings"])
    print(f"{args.model} at {args.size}x{args.size}; resident memory kept per loop (MiB)")
    print(f"{'method':<26} {'kept MiB':>9} {'plain tf.function':>18}  target met?")
    ok = True
    for method in args.methods.split(","):
        kept = growth(_paired.in_fresh_process(__file__, [*common, "--method", method])["readings"])
        met = kept <= max(plain, 0.0) + 1.0  # 1 MiB: the allocator's page granularity
        ok &= met
        verdict = "met" if met else "NOT met"
        print(f"{method:<26} {kept:>9.1f} {plain:>18.1f}  {verdict}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
