"""Fresh Python subprocesses: a hard kill, devices configured before TensorFlow starts."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _python_environment():
    paths = [str(REPO_ROOT), str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def run_python(code, timeout=300):
    """Run ``code`` in a fresh Python with this checkout and ``tests/`` first on the path."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=_python_environment(),
        cwd=str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_python(code):
    """Start ``code`` as :func:`run_python` does, without waiting: a ``subprocess.Popen``."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=_python_environment(),
        cwd=str(REPO_ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
