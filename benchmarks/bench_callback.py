"""Overhead of ExplanationLogger on the demo's training (target: at most +5% fit time).

Trains the ``keras-explain demo`` CNN on scikit-learn's digits with and without
the callback (freq=1, one gradient-family analyzer on 8 images), alternating the
two in one run, several repetitions, and prints the median fit times and their
ratio, and the time spent inside the callback's own hooks (the overhead
measured directly, insensitive to the noise of a shared machine). Every fit
starts from a freshly built model, so the callback's
one-time costs (creating the analyzer, tracing it, the first summary writer)
are included.

Run: python benchmarks/bench_callback.py [--epochs 8] [--repeats 5] [--method gradient]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_explain.callbacks import ExplanationLogger  # noqa: E402
from keras_explain.demo import digits_cnn, digits_data, train  # noqa: E402


class TimedLogger(ExplanationLogger):
    """ExplanationLogger that adds up the wall time spent in its own hooks."""

    seconds = 0.0
    begin_seconds = 0.0

    def _timed(self, hook, *args):
        start = time.perf_counter()
        hook(*args)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        return elapsed

    def on_train_begin(self, logs=None):
        self.begin_seconds = self._timed(super().on_train_begin, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._timed(super().on_epoch_end, epoch, logs)

    def on_train_end(self, logs=None):
        self._timed(super().on_train_end, logs)


def fit_seconds(data, epochs, callbacks):
    model = digits_cnn()
    start = time.perf_counter()
    train(model, data, epochs, callbacks)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--method", default="gradient")
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()

    data = digits_data()
    shown = data[2][: args.images]
    fit_seconds(data, 1, [])  # warm-up: TensorFlow start-up costs, not the callback's
    plain, logged, inside, begins = [], [], [], []
    with tempfile.TemporaryDirectory() as log_root:
        for repeat in range(args.repeats):
            plain.append(fit_seconds(data, args.epochs, []))
            logger = TimedLogger(
                [args.method], shown, log_dir=os.path.join(log_root, str(repeat)), freq=1
            )
            logged.append(fit_seconds(data, args.epochs, [logger]))
            inside.append(logger.seconds)
            begins.append(logger.begin_seconds)
    without, with_callback = statistics.median(plain), statistics.median(logged)
    print(
        f"ExplanationLogger overhead ({args.method!r}, {args.images} images, freq=1, "
        f"{args.epochs} epochs of the demo CNN on 1437 digits, median of {args.repeats}):"
    )
    print(f"  fit without callback: {without:.3f} s  (all: {', '.join(f'{t:.2f}' for t in plain)})")
    print(
        f"  fit with callback:    {with_callback:.3f} s  "
        f"(all: {', '.join(f'{t:.2f}' for t in logged)})"
    )
    in_hooks, begin = statistics.median(inside), statistics.median(begins)
    print(
        f"  time inside the callback's hooks: {in_hooks:.3f} s = "
        f"{100 * in_hooks / without:.1f}% of the plain fit (target: <= 5%)"
    )
    per_epoch = (in_hooks - begin) / args.epochs
    print(
        f"    of which on_train_begin (analyzer creation, trace, first run): {begin:.3f} s; "
        f"per logged epoch: {1000 * per_epoch:.1f} ms = "
        f"{100 * per_epoch / (without / args.epochs):.1f}% of an epoch"
    )
    print(
        f"  difference of the medians: {100 * (with_callback / without - 1):+.1f}% "
        "(noisier: includes the machine's load)"
    )


if __name__ == "__main__":
    main()
