"""The ``keras-explain`` console command, quiet: TensorFlow's start-up logs are held back.

Importing TensorFlow writes a dozen lines to the process' standard error from C++
(oneDNN, CUDA stubs, the CPU feature guard) before its own log level is read, so
``TF_CPP_MIN_LOG_LEVEL`` alone does not silence them, and setting up the devices adds
a ``cuInit`` error on a machine without a GPU. This module lives outside the
``keras_explain`` package because importing any part of the package imports
TensorFlow: it sets ``TF_CPP_MIN_LOG_LEVEL=2`` (warnings and info off, errors kept),
points file descriptor 2 at a temporary file while :mod:`keras_explain.cli` is
imported and the devices are listed, and then hands over to
:func:`keras_explain.cli.main`. If that fails, what TensorFlow wrote is replayed to
standard error before the exception.

A user's own ``TF_CPP_MIN_LOG_LEVEL`` wins (then nothing is redirected), and
``--verbose`` anywhere on the command line keeps every log.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence

#: The log level the command sets when the user has not: errors only.
QUIET_LEVEL = "2"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``keras-explain`` with TensorFlow's start-up logs held back.

    Args:
        argv: The arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status of :func:`keras_explain.cli.main`.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    quiet = "--verbose" not in argv and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    if quiet:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LEVEL
    with held_stderr() if quiet else contextlib.nullcontext():
        import tensorflow as tf

        from keras_explain import cli

        # the devices are set up at their first use, which logs too (cuInit on a
        # machine without a GPU): set them up here, still held back
        tf.config.list_physical_devices()
    try:
        return cli.main(argv)
    except BrokenPipeError:  # `keras-explain methods | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


@contextlib.contextmanager
def held_stderr() -> Iterator[None]:
    """File descriptor 2 goes to a temporary file; replayed only if the block raises."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no standard error to hold back (a windowed process)
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            _restore(saved)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            sys.stderr.flush()
            raise
        _restore(saved)


def _restore(saved: int) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
