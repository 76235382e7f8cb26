"""Benchmark of kx.report: file size, open time in headless Chromium, generation time split.

The issue's case: 100 images of 64x64 (kx.datasets.shapes) x 8 methods x the top 3
classes (2,400 maps) with the default metrics (deletion and insertion AUC with 100
steps, and sparseness) on the 64x64 CNN of kx.benchmark (untrained: the timings and
sizes do not depend on the weights; the maps of a trained model compress alike).

Printed:
- the page's size (target: at most ~15 MB);
- the generation time split that kx.report records in the page (explanations,
  metrics, encoding = quantized PNGs, colour tables and JSON) and the write;
- paired timing (``_paired.py``: calls alternate, median of per-pair ratios) of
  the encoding and writing against the explanations they encode (target: well
  below 1, the explanations dominate);
- the open time in Debian's headless Chromium: ``goto(file://...)`` until the page
  has drawn its first sample (``window.kxReady``), the median of 5 fresh pages
  (target: < 2 s).

Run: python benchmarks/bench_report.py [--samples 100] [--out /tmp/report.html]
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_explain as kx  # noqa: E402
from keras_explain import benchmark  # noqa: E402
from keras_explain.metrics.table import parse_methods  # noqa: E402
from keras_explain.report import _compute, _encode, _explanations  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(1, os.path.join(os.path.dirname(__file__), "..", "tests"))
import helpers  # noqa: E402  (Debian's chromium with the tests' flags)
from _paired import paired  # noqa: E402

METHODS = (
    "gradient",
    "input_t_gradient",
    "smoothgrad",
    "integrated_gradients",
    "guided_backprop",
    "grad_cam",
    "lrp.epsilon",
    "lrp.alpha_1_beta_0",
)


def open_times(path, pages=5):
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as playwright:
        browser = helpers.launch_chromium(playwright)
        for _ in range(pages):
            page = browser.new_page()
            start = time.perf_counter()
            page.goto(f"file://{path}")
            page.wait_for_function("() => window.kxReady === true", timeout=60_000)
            times.append(time.perf_counter() - start)
            page.close()
        browser.close()
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--out", default=os.path.join(tempfile.mkdtemp(), "report.html"))
    args = parser.parse_args()
    size = 64
    model = benchmark.shapes_cnn(size)
    x, labels, _ = kx.datasets.shapes(args.samples, size=size, seed=0)
    parameters = benchmark.method_parameters(size)
    methods = {name: parameters.get(name, {}) for name in METHODS}
    print(
        f"{args.samples} shapes {size}x{size}, {len(METHODS)} methods, top 3 classes, "
        "default metrics; shapes_cnn (untrained)"
    )
    kx.report(methods, model, x[:2], metrics=[], out=args.out)  # warm up TensorFlow
    start = time.perf_counter()
    names = kx.datasets.CLASSES
    path = kx.report(methods, model, x, labels=labels, class_names=names, out=args.out)
    total = time.perf_counter() - start
    text = open(path, encoding="utf-8").read()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1))
    timings = data["timings"]
    written = total - sum(timings.values())
    print(f"file size: {os.path.getsize(path) / 1e6:.2f} MB ({path})")
    print(f"{'part':<34}{'seconds':>10}{'share':>8}")
    for part, seconds in (*timings.items(), ("write (page assembly, rename)", written)):
        print(f"{part:<34}{seconds:>10.2f}{seconds / total:>8.1%}")
    print(f"{'total':<34}{total:>10.2f}")
    share = sum(seconds for part, seconds in timings.items() if "metric" in part) / total
    verdict = "met" if share <= 0.4 else "NOT met"
    print(f"metrics' share of the time: {share:.0%}; target <= 40%: {verdict}")
    if data["failed"]:
        print("failed:", data["failed"])

    # paired: encoding + writing the maps vs computing them (the same 2,400 maps)
    chosen = parse_methods(methods, "report")
    scores = model.predict(x, verbose=0)
    classes = _compute.top_classes(scores, 3)
    maps = _compute.explain(model, x, chosen, classes, "image")[0]
    out = os.path.join(os.path.dirname(path), "encoded.html")

    def encode_and_write():
        page = {"explanations": _explanations(maps, x, "image", None, None)}
        page["colormaps"] = _encode.colour_tables()
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(_encode.page(page, "bench"))

    result = paired(
        encode_and_write, lambda: _compute.explain(model, x, chosen, classes, "image"), 3, 1
    )
    print(
        f"encode+write {result.method_ms / 1e3:.2f} s vs explanations "
        f"{result.reference_ms / 1e3:.2f} s: ratio {result.ratio:.3f} (median of 3 pairs)"
    )

    try:
        times = open_times(path)
    except Exception as error:  # no chromium or playwright here
        print(f"open time: not measured ({type(error).__name__}: {error})")
    else:
        print(
            f"open time in headless Chromium: median {statistics.median(times):.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} fresh pages)"
        )
    print("(a shared machine: 2 cores used by other jobs at the same time)")


if __name__ == "__main__":
    main()
