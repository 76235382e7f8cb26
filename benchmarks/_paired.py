"""Paired timing, shared by every benchmark script.

A method and its reference are called alternately (the order flips every
repeat), so load drift on a shared machine hits both; the figure reported is
the median of the per-pair ratios, which is far steadier than a ratio of
medians taken at different times.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Paired:
    """Per-pair timings of a method and its reference."""

    method_times: list[float] = field(default_factory=list)
    reference_times: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Median of the per-pair ratios method / reference."""
        return statistics.median(m / r for m, r in zip(self.method_times, self.reference_times))

    @property
    def method_ms(self) -> float:
        return statistics.median(self.method_times) * 1e3

    @property
    def reference_ms(self) -> float:
        return statistics.median(self.reference_times) * 1e3


def timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def pair(method: Callable, reference: Callable, repeats: int, result: Paired, index: int) -> None:
    """One pair: both calls, the order flipped on odd ``index``."""
    if index % 2 == 0:
        result.reference_times.append(timed(reference))
        result.method_times.append(timed(method))
    else:
        result.method_times.append(timed(method))
        result.reference_times.append(timed(reference))


def paired(method: Callable, reference: Callable, repeats: int = 7, warmup: int = 2) -> Paired:
    """Time ``method`` against ``reference`` in ``repeats`` alternating pairs after a warm-up."""
    for _ in range(warmup):
        method()
        reference()
    result = Paired()
    for index in range(repeats):
        pair(method, reference, repeats, result, index)
    return result


def in_fresh_process(script: str, argv: list[str]) -> dict:
    """Run ``script --child *argv`` in a new Python process; its last stdout line, as JSON.

    For figures a process must measure from its own start (peak resident memory).
    """
    output = subprocess.run(
        [sys.executable, script, "--child", *argv], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def application_parser(doc: str, size: int, methods: tuple[str, ...]):
    """Flags of a script timing methods on a ``keras.applications`` model in child processes."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--model", default="EfficientNetB0")
    parser.add_argument("--size", type=int, default=size)
    parser.add_argument("--methods", default=",".join(methods))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="", help=argparse.SUPPRESS)
    return parser


def application(args):
    """``args.model`` at ``args.size`` (``weights=None``, seeded, called once) and one image."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    build = getattr(keras.applications, args.model)
    model = build(weights=None, input_shape=(args.size, args.size, 3), classes=10)
    x = np.random.default_rng(0).uniform(0, 255, (1, args.size, args.size, 3)).astype("float32")
    model(x)
    return model, x


def parsed_or_child(parser, argv, child):
    """The parsed flags; or, in a child process (``--child``), run ``child`` and return None."""
    args = parser.parse_args(argv)
    if not args.child:
        return args
    child(args)
    return None


def application_flags(args) -> list[str]:
    """The flags a child process needs to build the same model."""
    return ["--model", args.model, "--size", str(args.size)]


def new_plain_gradient(model, x):
    """A new ``tf.function`` gradient of output 0 w.r.t. the input, as a call on ``x``.

    What a user's own code would trace: each call of this factory is a new trace.
    """
    import tensorflow as tf

    @tf.function
    def gradient(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            score = model(inputs, training=False)[:, 0]
        return tape.gradient(score, inputs)

    return lambda: gradient(tf.constant(x)).numpy()
