"""Whole datasets (issue #13): samples per second and peak memory, in-process vs shards.

Usage::

    python benchmarks/bench_scale.py                        # 5,000 and 20,000 samples
    python benchmarks/bench_scale.py --sizes 2000 --ray     # also Ray Data, 1 and 2 actors

Model: the benchmark CNN of ``bench_analyzers.py`` (64x64x3 input), seeded; method
LRP-epsilon; ``batch_size=256``. Images are uniform noise, each seeded by its sample id, so
every mode explains the same samples.

Each case runs in a fresh subprocess and prints a JSON line; its peak resident memory
is the process's ``ru_maxrss``:

- ``analyze``: ``analyzer.analyze(x, batch_size=256)`` with all of ``x`` in memory
  (the input and the result are both held: memory grows with the dataset);
- ``explain_dataset``: ``kx.explain_dataset`` over a generator of batches, writing
  shards to a temporary directory and merging them (memory should stay flat);
- ``ray-1``, ``ray-2`` (with ``--ray``): ``kx.ray.Explainer`` in ``map_batches`` with
  1 and 2 actors on ``ray.init(num_cpus=2)``; images are generated inside Ray, the
  explanations consumed and dropped. Peak memory of the driver is not the workers',
  so it is not reported.

Figures are wall-clock on the machine at hand; they are measured in one run, not
asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # the checkout being benchmarked, first on every path
BATCH = 256
SHAPE = (64, 64, 3)


def images(ids):
    """The samples of the given ids: uniform noise, each sample seeded by its id.

    Per-sample seeds make a sample the same whichever batch it arrives in (Ray Data
    may put rows of several blocks, in any order, into one batch).
    """
    import numpy as np

    return np.stack(
        [np.random.default_rng(int(i)).uniform(0.0, 1.0, SHAPE).astype("float32") for i in ids]
    )


def child(mode: str, size: int) -> None:
    import resource
    import time

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, HERE)
    import numpy as np
    from bench_analyzers import cnn

    import keras_explain as kx

    model = cnn()
    model(images(range(2)))
    starts = range(0, size, BATCH)
    warm = kx.LRPEpsilon(model, verbose=0)
    warm.analyze(images(range(BATCH)))  # trace outside the timing, in every mode
    begin = time.perf_counter()
    if mode == "analyze":
        x = np.concatenate([images(range(s, min(s + BATCH, size))) for s in starts])
        begin = time.perf_counter()
        result = warm.analyze(x, batch_size=BATCH)
    elif mode == "explain_dataset":
        batches = (images(range(s, min(s + BATCH, size))) for s in starts)
        with tempfile.TemporaryDirectory() as out_dir:
            result = kx.explain_dataset(
                warm, model, batches, out_dir=out_dir, batch_size=BATCH, verbose=0
            )
            np.asarray(result[-1]).sum()  # read back from disk
            del result
    else:
        import ray

        actors = int(mode.split("-")[1])
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "model.keras")
            model.save(path)
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

            def make(batch):
                return {"id": batch["id"], "x": images(batch["id"])}

            # materialized ids: no read task waits for a CPU that the actors hold
            blocks = max(2, size // (4 * BATCH))
            dataset = ray.data.range(size, override_num_blocks=blocks).materialize()
            begin = time.perf_counter()
            dataset = dataset.map_batches(make, batch_size=BATCH)
            explained = dataset.map_batches(
                kx.ray.Explainer,
                fn_constructor_kwargs={"model_path": path, "method": "lrp.epsilon"},
                concurrency=actors,
                batch_size=BATCH,
            )
            count = sum(len(b["id"]) for b in explained.iter_batches(batch_size=BATCH))
            assert count == size, count
            ray.shutdown()
    seconds = time.perf_counter() - begin
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB -> MiB
    print(json.dumps({"mode": mode, "size": size, "seconds": seconds, "peak_mib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,20000")
    parser.add_argument("--ray", action="store_true", help="also Ray Data with 1 and 2 actors")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    modes = ["analyze", "explain_dataset"] + (["ray-1", "ray-2"] if args.ray else [])
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for mode in modes:
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(size)],
                capture_output=True,
                text=True,
                env={
                    **os.environ,
                    "TF_CPP_MIN_LOG_LEVEL": "3",
                    "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
                },
            )
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode or not lines:
                print(f"{mode} {size}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(lines[-1]))
            row = rows[-1]
            print(f"  done: {mode} {size}: {row['seconds']:.1f} s", file=sys.stderr)
    print(f"LRP-epsilon, benchmark CNN 64x64x3, batch_size={BATCH}, {os.cpu_count()} CPUs")
    print(f"{'mode':<16} {'samples':>8} {'seconds':>8} {'samples/s':>10} {'peak RSS MiB':>13}")
    for row in rows:
        peak = "-" if row["mode"].startswith("ray") else f"{row['peak_mib']:.0f}"
        rate = row["size"] / row["seconds"]
        print(f"{row['mode']:<16} {row['size']:>8} {row['seconds']:>8.1f} {rate:>10.0f} {peak:>13}")


if __name__ == "__main__":
    main()
