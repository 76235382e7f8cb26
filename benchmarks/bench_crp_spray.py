"""Benchmark of kx.crp (issue #24, item 8), with paired timing.

CRP for 32 concepts of one layer against one LRP pass over the same images (the
anchor CNN of ``bench_analyzers.py``: 64x64x3, two convolutions, batch 8,
``epsilon_plus_flat``). The 32 conditional heatmaps share the forward pass and the
backward pass down to the layer; the part below it is vectorized over the 32
concepts. Target: within 4x of the one LRP pass. A layer's depth sets the cost: the
deeper the layer, the more of the backward pass runs once per concept. The second
table pairs CRP with one LRP pass over 32 copies of the images (what a heatmap per
concept costs as ordinary LRP passes, the masking left out).

SpRAy (``--spray``): ``kx.spray.analyze`` on 50,000 maps of 32x32 (two synthetic
strategies, a blob anywhere or in a corner, written to a memory-mapped ``.npy``
file), each embedding in a fresh process: the wall time and the peak resident
memory, against the memory of the maps themselves (200 MB). Target: under a minute
on 2 CPU cores, memory flat.

Run: python benchmarks/bench_crp_spray.py [--spray [--maps 50000]]
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

layers = keras.layers


def cnn() -> keras.Model:
    seeds = iter(range(100))

    def init():
        return keras.initializers.GlorotUniform(seed=next(seeds))

    return keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            layers.Conv2D(32, 3, activation="relu", name="conv1", kernel_initializer=init()),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, activation="relu", name="conv2", kernel_initializer=init()),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu", kernel_initializer=init()),
            layers.Dense(10, kernel_initializer=init()),
        ],
        name="cnn",
    )


def verdict(value, goal):
    return "met" if value <= goal else "NOT met"


def synthetic_maps(path, count, size=32, seed=0):
    """``count`` maps of two strategies into a ``.npy`` file, 5,000 at a time; the truth."""
    rng = np.random.default_rng(seed)
    maps = np.lib.format.open_memmap(path, "w+", np.float32, (count, size, size))
    ys, xs = np.mgrid[:size, :size] / size
    corner = rng.random(count) < 0.2
    for start in range(0, count, 5000):
        part = slice(start, min(start + 5000, count))
        n = len(corner[part])
        centre = np.where(corner[part, None], 0.08, rng.uniform(0.3, 0.8, (n, 2)))
        blob = np.exp(-((ys - centre[:, :1, None]) ** 2 + (xs - centre[:, 1:, None]) ** 2) / 0.01)
        maps[part] = blob + rng.uniform(0, 0.1, (n, size, size))
    maps.flush()
    return corner


def spray_child(path, embedding):
    maps = np.load(path, mmap_mode="r")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after the imports
    start = time.perf_counter()
    result = kx.spray.analyze(maps, embedding=embedding)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    truth = np.load(path.replace(".npy", "_truth.npy"))
    from sklearn.metrics import adjusted_rand_score

    ari = adjusted_rand_score(truth, result.clusters)
    found = {"seconds": seconds, "peak_mib": peak, "before_mib": before, "ari": ari}
    print(json.dumps({**found, "k": result.suggested}))


def spray(count):
    print(f"SpRAy on {count} maps of 32x32 (memory-mapped), each run in a fresh process")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "maps.npy")
        np.save(path.replace(".npy", "_truth.npy"), synthetic_maps(path, count))
        for embedding in ("spectral", "tsne"):
            found = in_fresh_process(__file__, [path, embedding])
            print(
                f"  embedding={embedding!r}: {found['seconds']:.1f} s, peak RSS "
                f"{found['peak_mib']:.0f} MiB ({found['before_mib']:.0f} MiB before the "
                f"call), eigengap {found['k']}, adjusted Rand index "
                f"{found['ari']:.3f} (target < 60 s: {verdict(found['seconds'], 60)})"
            )


def main():
    if "--child" in sys.argv:
        position = sys.argv.index("--child")
        spray_child(sys.argv[position + 1], sys.argv[position + 2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spray", action="store_true", help="the SpRAy runs only")
    parser.add_argument("--maps", type=int, default=50_000)
    args = parser.parse_args()
    if args.spray:
        spray(args.maps)
        return
    model = cnn()
    x = np.random.default_rng(0).uniform(size=(8, 64, 64, 3)).astype("float32")
    lrp = kx.LRP(model, "epsilon_plus_flat")
    print("CRP, 32 concepts, 8 images 64x64, epsilon_plus_flat, paired against one LRP pass")
    print(f"{'layer':<8} {'CRP ms':>8} {'LRP ms':>8} {'ratio':>7}  target")
    for name in ("conv2", "conv1"):
        crp = kx.crp.CRP(model, name, composite="epsilon_plus_flat")
        timing = paired(lambda crp=crp: crp.conditional(x), lambda: lrp.analyze(x))
        print(
            f"{name:<8} {timing.method_ms:>8.0f} {timing.reference_ms:>8.0f} "
            f"{timing.ratio:>7.2f}  <= 4x: {verdict(timing.ratio, 4.0)}"
        )
    copies = np.tile(x, (32, 1, 1, 1))
    print("the same, paired against one LRP pass over 32 copies of the 8 images")
    print(f"{'layer':<8} {'CRP ms':>8} {'LRP ms':>8} {'ratio':>7}")
    for name in ("conv2", "conv1"):
        crp = kx.crp.CRP(model, name, composite="epsilon_plus_flat")
        timing = paired(lambda crp=crp: crp.conditional(x), lambda: lrp.analyze(copies), repeats=5)
        print(
            f"{name:<8} {timing.method_ms:>8.0f} {timing.reference_ms:>8.0f} {timing.ratio:>7.2f}"
        )


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    main()
