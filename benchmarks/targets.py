"""Run every benchmark that carries a target and print one table of their verdicts.

Usage::

    python benchmarks/targets.py                    # everything (about 25 minutes here)
    python benchmarks/targets.py --only concepts,first
    python benchmarks/targets.py --out /tmp/bench   # where each script's full output goes

Each script runs in its own process, one after the other (run it on a quiet machine:
ratios measured beside other jobs swing by 30%). A script's full output is written to
``--out/<name>.txt``; the table keeps the lines that carry a verdict (``met``, ``NOT
met``) and says which script printed them. The scripts' docstrings define each
measurement; ``benchmarks/README.md`` shows the last table.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

ANALYZER_METHODS = (
    "gradient,input_t_gradient,guided_backprop,deconvnet,integrated_gradients,smoothgrad,"
    "lrp.epsilon,lrp.z,lrp.z_plus,lrp.alpha_1_beta_0,deep_taylor,lrp.sequential_preset_a,"
    "lrp.alpha_2_beta_1"
)
#: name -> the script and its arguments.
SCRIPTS = {
    "analyzers": ["bench_analyzers.py", "--models", "cnn", "--methods", ANALYZER_METHODS],
    "text": ["bench_text.py"],
    "features": ["bench_features.py"],
    "metrics": ["bench_metrics.py"],
    "concepts": ["bench_concepts.py"],
    "report": ["bench_report.py"],
    "lifetime": ["bench_lifetime.py"],
    "first": ["bench_first.py"],
    "memory": ["bench_memory.py"],
}
VERDICT = re.compile(r"\b(NOT met|NOT MET|met)\b(?!\?)")  # not a header's "met?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated names")
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="keras_explain_bench_"))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {sorted(SCRIPTS)}")
    rows, failed = [], []
    for name in names:
        script, *script_args = SCRIPTS[name]
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, os.path.join(HERE, script), *script_args],
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        minutes = (time.perf_counter() - started) / 60
        with open(os.path.join(args.out, f"{name}.txt"), "w", encoding="utf-8") as handle:
            handle.write(result.stdout + result.stderr)
        lines = [line.rstrip() for line in result.stdout.splitlines() if VERDICT.search(line)]
        if not lines and result.returncode not in (0, 1):  # 1: a target not met
            failed.append(f"{script} exited with {result.returncode} (see {args.out})")
        rows += [(script, line) for line in lines]
        print(f"{script}: {len(lines)} verdicts in {minutes:.1f} min", file=sys.stderr, flush=True)
    width = max((len(script) for script, _ in rows), default=0)
    for script, line in rows:
        print(f"{script:<{width}}  {line}")
    met = sum(1 for _, line in rows if VERDICT.search(line).group(1) == "met")
    print(f"\n{met} of {len(rows)} targets met; full outputs in {args.out}")
    for message in failed:
        print(message)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
