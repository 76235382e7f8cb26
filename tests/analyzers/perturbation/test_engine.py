"""The batched evaluator of perturbed inputs: its compiled loop, counted by the progress bar."""

import re

import helpers
import numpy as np

import keras_explain as kx


def test_progress_bar_counts_the_model_calls_of_the_compiled_loop(capsys):
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=1)
    # 20 masks, 6 rows per call (one sample): ceil(20 / 6) = 4 calls of the compiled loop
    chunked = kx.RISE(model, samples=20, cells=2, seed=0, internal_batch_size=6, verbose=1)
    result = chunked.analyze(x)
    bar = capsys.readouterr().err
    assert "RISE" in bar
    assert re.findall(r"(\d+)/(\d+) \[", bar)[-1] == ("4", "4")
    whole = kx.RISE(model, samples=20, cells=2, seed=0, verbose=0).analyze(x)
    assert capsys.readouterr().err == ""
    np.testing.assert_allclose(result, whole, rtol=1e-5, atol=1e-6)
