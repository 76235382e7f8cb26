"""Shared pytest fixtures: tiny seeded models and their inputs (no downloads)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import helpers  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(params=sorted(helpers.ALL_GRAPH_MODELS))
def graph_model(request):
    """Every graph fixture: Sequential, conv, all ReLU forms, nested, shared layer, raw ops."""
    model = helpers.ALL_GRAPH_MODELS[request.param]()
    return model, helpers.data(tuple(model.inputs[0].shape[1:]))


@pytest.fixture
def dense_model():
    """Dense Sequential ending in a fused softmax."""
    return helpers.dense_sequential()


@pytest.fixture
def logit_model():
    """Dense Sequential without a softmax (3 logits)."""
    return helpers.dense_sequential(softmax=False)


@pytest.fixture
def conv_model():
    return helpers.conv_sequential()


@pytest.fixture
def multi_input_model():
    """Two inputs (6,), (4,) and two outputs (3,), (2,)."""
    return helpers.multi_input()


@pytest.fixture
def multi_input_data():
    return [helpers.data((6,), seed=1), helpers.data((4,), seed=2)]


@pytest.fixture
def subclassed_model():
    return helpers.subclassed()


@pytest.fixture
def x6():
    """Four samples for the (6,)-input helpers."""
    return helpers.data((6,))


@pytest.fixture(scope="module")
def conv():
    """A randomized conv_sequential and ten (8, 8, 2) samples (streaming, distributed)."""
    model = helpers.randomize(helpers.conv_sequential())
    return model, helpers.data((8, 8, 2), seed=3, batch=10)
