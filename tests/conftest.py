"""Shared pytest fixtures: tiny seeded models and their inputs (no downloads)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import models  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(params=sorted(models.ALL_GRAPH_MODELS))
def graph_model(request):
    """Every graph fixture: Sequential, conv, all ReLU forms, nested, shared layer, raw ops."""
    model = models.ALL_GRAPH_MODELS[request.param]()
    return model, models.data(tuple(model.inputs[0].shape[1:]))


@pytest.fixture
def dense_model():
    """Dense Sequential ending in a fused softmax."""
    return models.dense_sequential()


@pytest.fixture
def logit_model():
    """Dense Sequential without a softmax (3 logits)."""
    return models.dense_sequential(softmax=False)


@pytest.fixture
def conv_model():
    return models.conv_sequential()


@pytest.fixture
def multi_input_model():
    """Two inputs (6,), (4,) and two outputs (3,), (2,)."""
    return models.multi_input()


@pytest.fixture
def multi_input_data():
    return [models.data((6,), seed=1), models.data((4,), seed=2)]


@pytest.fixture
def subclassed_model():
    return models.subclassed()


@pytest.fixture
def x6():
    """Four samples for the (6,)-input models."""
    return models.data((6,))
