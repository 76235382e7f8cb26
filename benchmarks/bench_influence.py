"""Benchmark of kx.influence (issue #30, item 7), with paired timing.

1. TracIn on the last layer over 10,000 training images of 32x32 (a small CNN whose
   output layer is ``Dense(5, name="head")``; the closed-form fast path): building
   it and scoring 32 test images, which computes the training set's factors, against
   one plain compiled forward + backward pass over the same 10,000 images (the
   gradient of the mean loss over every trainable variable, in the same chunks).
   Target: within 2x.
2. Projected TracIn (every trainable variable, ``projection_dim=128``): the query of
   32 test images (their proponents, k=10) once the training projections are built.
   Target: within 1 s. The time to build the projections is printed too.
3. Scale (``--scale``): projected TracIn (``projection_dim=128``, ``cache_dir=``) over
   10,000 and 100,000 training images of 32x32 streamed from a ``tf.data.Dataset``
   (generated 1,000 at a time), each in a fresh process: its peak resident memory,
   the time to write the projections, and a query of 32 test points.
4. Index (``--index``): proponents (k=10) of 32 test points among 1,000,000 training
   rows of projected gradients (d=128) with ``index="hnsw"`` (faiss) against the
   exact blocked product: the index's build time, the query times and the recall of
   the exact top 10. The training rows are synthetic (Gaussian directions, log-normal
   norms, given through ``train_features=``): computing a million real gradients
   does not fit this benchmark's time; the test rows are real projected gradients
   of a small network. Section 2 prints the recall on the CNN's real projections.

Run: python benchmarks/bench_influence.py [--train 10000] [--scale] [--index [--rows N]]
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_explain as kx  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _paired import in_fresh_process, paired  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def cnn(size=32):
    seeds = iter(range(100))
    layers = keras.layers

    def init():
        return keras.initializers.GlorotUniform(seed=next(seeds))

    return keras.Sequential(
        [
            keras.Input((size, size, 3)),
            layers.Conv2D(8, 3, activation="relu", padding="same", kernel_initializer=init()),
            layers.MaxPooling2D(),
            layers.Conv2D(16, 3, activation="relu", padding="same", kernel_initializer=init()),
            layers.GlobalAveragePooling2D(),
            layers.Dense(5, name="head", kernel_initializer=init()),
        ]
    )


def plain_pass(model, x, y, rows):
    """One compiled forward + backward pass over x in chunks of ``rows``."""

    @tf.function(reduce_retracing=True)
    def step(batch, labels):
        with tf.GradientTape() as tape:
            value = LOSS(labels, model(batch, training=False))
        return tape.gradient(value, model.trainable_variables)

    chunks = [
        (tf.constant(x[i : i + rows]), tf.constant(y[i : i + rows])) for i in range(0, len(x), rows)
    ]
    for batch, labels in chunks[:1] + chunks[-1:]:
        step(batch, labels)

    def run():
        for batch, labels in chunks:
            [g.numpy() for g in step(batch, labels)]

    return run


def verdict(value, goal):
    return "met" if value <= goal else "NOT met"


def streamed(count):
    """``count`` shapes images of 32x32 with labels, generated 1,000 at a time."""

    def generate():
        for part in range(0, count, 1000):
            x, y, _ = kx.datasets.shapes(min(1000, count - part), size=32, seed=1000 + part)
            yield x, y

    signature = (
        tf.TensorSpec((None, 32, 32, 3), tf.float32),
        tf.TensorSpec((None,), tf.int64),
    )
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def child(count):
    """One scale run in this (fresh) process; prints a JSON line."""
    model = cnn()
    x_test, y_test, _ = kx.datasets.shapes(32, size=32, seed=0)
    with tempfile.TemporaryDirectory() as cache_dir:
        tracin = kx.influence.TracIn(
            model, streamed(count), loss=LOSS, projection_dim=128, cache_dir=cache_dir
        )
        start = time.perf_counter()
        tracin.self_influence()
        built = time.perf_counter() - start
        tracin.proponents(x_test, y_test, k=10)
        start = time.perf_counter()
        tracin.proponents(x_test, y_test, k=10)
        query = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"built": built, "query": query, "peak_mib": peak}))


def scale():
    print("projected TracIn (d=128) with cache_dir, training images streamed, fresh processes:")
    for count in (10_000, 100_000):
        result = in_fresh_process(__file__, [str(count)])
        print(
            f"  {count:>7} training images: peak RSS {result['peak_mib']:.0f} MiB; projections "
            f"written in {result['built']:.1f} s; query of 32 points {result['query'] * 1e3:.0f} ms"
        )


def recall(expected, found):
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(expected, found)]))


def median_time(function, repeats=5):
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def index(rows):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(5)]
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 8)).astype("float32")
    y = rng.integers(0, 5, rows)
    d = 128
    directions = rng.normal(size=(rows, 1, d)).astype("float32")
    directions /= np.linalg.norm(directions, axis=2, keepdims=True)
    norms = rng.lognormal(0.0, 0.75, size=(rows, 1)).astype("float32")
    given = (directions * norms[:, :, None], norms.astype(np.float64) ** 2)
    options = dict(loss=LOSS, projection_dim=d, train_features=given)
    exact = kx.influence.TracIn(model, (x, y), **options)
    indexed = kx.influence.TracIn(model, (x, y), index="hnsw", **options)
    queries = (x[:32], y[:32])
    start = time.perf_counter()
    indexed.proponents(*queries, k=1)
    built = time.perf_counter() - start
    exact_time = median_time(lambda: exact.proponents(*queries, k=10))
    index_time = median_time(lambda: indexed.proponents(*queries, k=10))
    found = recall(exact.proponents(*queries, k=10)[0], indexed.proponents(*queries, k=10)[0])
    opposed = recall(exact.opponents(*queries, k=10)[0], indexed.opponents(*queries, k=10)[0])
    print(f"{rows} training rows (synthetic, d={d}), 32 queries, k=10:")
    print(f"  exact blocked product: {exact_time * 1e3:.0f} ms per query of 32 points")
    print(
        f"  hnsw (faiss): built in {built:.1f} s; {index_time * 1e3:.1f} ms per query of 32 "
        f"points; recall@10 proponents {found:.3f}, opponents {opposed:.3f}"
    )


def main():
    if "--child" in sys.argv:
        child(int(sys.argv[sys.argv.index("--child") + 1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10_000)
    parser.add_argument("--scale", action="store_true", help="the peak memory runs only")
    parser.add_argument("--index", action="store_true", help="the nearest-neighbour index only")
    parser.add_argument("--rows", type=int, default=1_000_000, help="training rows of --index")
    args = parser.parse_args()
    if args.scale:
        scale()
        return
    if args.index:
        index(args.rows)
        return
    model = cnn()
    x, y, _ = kx.datasets.shapes(args.train + 32, size=32, seed=0)
    x_train, y_train, x_test, y_test = x[:-32], y[:-32], x[-32:], y[-32:]
    print(f"{args.train} training images 32x32, CNN of {model.count_params()} parameters")

    probe = kx.influence.TracIn(model, (x_train, y_train), loss=LOSS, layers=["head"])
    rows = probe.gradients.rows()
    probe.influence(x_test, y_test)  # traced: later instances of the same shapes reuse nothing

    def fast():
        tracin = kx.influence.TracIn(model, (x_train, y_train), loss=LOSS, layers=["head"])
        tracin.influence(x_test, y_test)

    timing = paired(fast, plain_pass(model, x_train, y_train, rows), repeats=5, warmup=1)
    print(
        f"TracIn, last layer, build + 32 queries: {timing.method_ms:.0f} ms; one forward + "
        f"backward pass: {timing.reference_ms:.0f} ms; ratio {timing.ratio:.2f} "
        f"(target <= 2x: {verdict(timing.ratio, 2.0)})"
    )

    projected = kx.influence.TracIn(model, (x_train, y_train), loss=LOSS, projection_dim=128)
    start = time.perf_counter()
    projected.self_influence()  # builds the training projections
    built = time.perf_counter() - start
    projected.proponents(x_test, y_test, k=10)  # traced for 32 rows
    times = []
    for _ in range(5):
        start = time.perf_counter()
        projected.proponents(x_test, y_test, k=10)
        times.append(time.perf_counter() - start)
    query = float(np.median(times))
    print(
        f"projected TracIn (d=128, {projected.gradients.parameters} parameters): projections "
        f"built in {built:.1f} s; query of 32 points: {query * 1e3:.0f} ms "
        f"(target <= 1 s: {verdict(query, 1.0)})"
    )
    train = projected.features(x_train, y_train)
    given = (np.stack([f.full for f in train], 1), np.stack([f.squared_norms for f in train], 1))
    indexed = kx.influence.TracIn(
        model, (x_train, y_train), loss=LOSS, projection_dim=128, train_features=given, index="hnsw"
    )
    start = time.perf_counter()
    indexed.proponents(x_test, y_test, k=1)
    built = time.perf_counter() - start
    query = median_time(lambda: indexed.proponents(x_test, y_test, k=10))
    found = recall(
        projected.proponents(x_test, y_test, k=10)[0], indexed.proponents(x_test, y_test, k=10)[0]
    )
    print(
        f"  with index='hnsw': built in {built:.1f} s; query of 32 points {query * 1e3:.0f} ms; "
        f"recall@10 of the exact projected ranking {found:.3f}"
    )


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    main()
