"""``kx.random``: fresh seeds per call, and no global random state read or changed."""

import helpers
import numpy as np

import keras_explain as kx


def test_no_global_random_state_is_read_or_changed():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=2)
    numpy_state = np.random.get_state()
    python_state = __import__("random").getstate()
    kx.SmoothGrad(model, samples=4).analyze(x)  # no seed: a fresh one per call
    kx.Occlusion(model, window=4).analyze(x)
    after = np.random.get_state()
    assert numpy_state[0] == after[0] and np.array_equal(numpy_state[1], after[1])
    assert numpy_state[2:] == after[2:]
    assert python_state == __import__("random").getstate()


def test_fresh_seeds_differ_between_calls_without_a_seed():
    model = helpers.conv_sequential()
    x = helpers.data((8, 8, 2), batch=2)
    analyzer = kx.SmoothGrad(model, samples=4)
    assert not np.allclose(analyzer.analyze(x), analyzer.analyze(x))
