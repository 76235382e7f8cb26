"""Paths that must agree: chunked vs whole evaluation, subclassed model vs Functional twin.

- ``internal_batch_size``: every perturbation method and every method that multiplies
  the work (SmoothGrad, SquareGrad, VarGrad, Integrated Gradients, Score-CAM) gives the
  result of the unchunked run when the chunk size does not divide the work (a last,
  partial chunk). For the compiled perturbation loop the progress bar shows that the
  work really ran in that many model calls.
- A subclassed model (no layer graph) and a Functional model with the same layers and
  weights give the same result for every method that accepts a subclassed model; every
  other registry name refuses it with a clear TypeError. The two lists must cover the
  registry.

Tolerances: the same per-row arithmetic runs in differently sized batches (float32
kernels may block a matmul differently for another batch size) and RISE accumulates
its chunks' sums in another order, so chunked results agree to float32 round-off,
rtol 1e-5; a skipped, repeated or misplaced chunk changes results by orders of
magnitude more.
"""

import re

import helpers
import numpy as np
import pytest

import keras_explain as kx

# 8 superpixels of 2 x 4 pixels: 4 row bands x 2 column halves
GRID = np.kron(np.arange(8).reshape(4, 2), np.ones((2, 4), int)).astype("int32")
ROW_GROUPS = np.arange(64).reshape(8, 8) // 8  # 8 groups, one per image row

# name: (parameters, internal_batch_size that does not divide the work for a batch of 3)
CHUNKED = {
    # 16 windows, 3 per call: 6 calls, the last with 1 window
    "occlusion": ({"window": 3, "stride": 2}, 10),
    # 2 + 5 * 7 = 37 evaluations, 3 per call
    "shapley_sampling": ({"samples": 5, "feature_mask": ROW_GROUPS, "seed": 0}, 10),
    # 8 row groups, 3 per call
    "feature_ablation": ({"feature_mask": ROW_GROUPS, "baseline": 0.5}, 10),
    "feature_permutation": ({"feature_mask": ROW_GROUPS, "seed": 0}, 10),
    # 40 masks, 3 per call
    "rise": ({"samples": 40, "cells": 3, "seed": 0}, 10),
    # 7 noisy copies or path points, 2 per pass
    "smoothgrad": ({"samples": 7, "seed": 0}, 7),
    "squaregrad": ({"samples": 7, "seed": 0}, 7),
    "vargrad": ({"samples": 7, "seed": 0}, 7),
    "integrated_gradients": ({"steps": 7}, 7),
    # 6 channels, 4 masked inputs per pass
    "score_cam": ({}, 12),
    # learns one mask for the batch; internal_batch_size must not change it
    "meaningful_perturbation": ({"steps": 5, "mask_size": 4, "seed": 0}, 5),
}
COMPILED_CALLS = {"occlusion": 6, "shapley_sampling": 13, "rise": 14}


@pytest.fixture(scope="module")
def conv():
    return helpers.conv_sequential()


@pytest.mark.parametrize("name", sorted(CHUNKED))
def test_chunked_equals_unchunked(conv, name, capsys):
    params, rows = CHUNKED[name]
    x = helpers.data((8, 8, 2), seed=2, batch=3)
    target = np.array([0, 3, 1])
    unchunked = {"internal_batch_size": None}
    whole = kx.create_analyzer(name, conv, **params, **unchunked).analyze(x, target)
    extra = {"verbose": 1} if name in COMPILED_CALLS else {}
    analyzer = kx.create_analyzer(name, conv, **params, internal_batch_size=rows, **extra)
    chunked = analyzer.analyze(x, target)
    scale = np.abs(whole).max()
    assert scale > 0
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6 * scale)
    if name in COMPILED_CALLS:  # the compiled loop really ran chunk by chunk
        calls = re.findall(r"(\d+)/(\d+) \[", capsys.readouterr().err)[-1]
        assert calls == (str(COMPILED_CALLS[name]),) * 2


@pytest.mark.parametrize("name", ["lime", "kernel_shap"])
def test_surrogates_in_chunks_of_rows_equal_the_whole_run(conv, name):
    pytest.importorskip("lime")
    pytest.importorskip("shap")
    x = helpers.data((8, 8, 2), seed=3, batch=2)
    params = {"samples": 50, "segmentation": GRID, "seed": 0}
    whole = kx.create_analyzer(name, conv, **params).analyze(x, 1)
    sizes = []

    def callable_model(z):
        sizes.append(len(z))
        return conv(z).numpy()

    chunked = kx.create_analyzer(name, callable_model, **params, internal_batch_size=7)
    np.testing.assert_allclose(chunked.analyze(x, 1), whole, rtol=1e-4, atol=1e-5)
    assert max(sizes) == 7 and 7 in sizes and any(size % 7 for size in sizes)


# -- subclassed model vs Functional twin --------------------------------------------------
SUBCLASSED_PARAMS = {
    "gradient": {},
    "input_t_gradient": {},
    "smoothgrad": {"samples": 4, "seed": 0},
    "squaregrad": {"samples": 4, "seed": 0},
    "vargrad": {"samples": 4, "seed": 0},
    "integrated_gradients": {"steps": 5},
    "gradient_shap": {
        "background": np.random.default_rng(1).uniform(size=(3, 6, 6, 2)),
        "samples": 4,
        "noise_scale": 0.1,
        "seed": 0,
    },
    "occlusion": {"window": 2},
    "feature_ablation": {"feature_mask": GRID[:6, :6]},
    "feature_permutation": {"feature_mask": GRID[:6, :6], "seed": 0},
    "shapley_sampling": {"samples": 5, "seed": 0},
    "rise": {"samples": 20, "cells": 2, "seed": 0},
    "meaningful_perturbation": {"steps": 3, "mask_size": 3, "seed": 0},
    "lime": {"samples": 30, "segmentation": GRID[:6, :6], "seed": 0},
    "kernel_shap": {"samples": 20, "segmentation": GRID[:6, :6], "seed": 0},
}
NEEDS_A_GRAPH = [
    name for name in kx.analyzers.names() if name not in SUBCLASSED_PARAMS
]  # relevance family, guided backprop, deconvnet, the CAM family


def test_the_methods_that_need_a_graph_are_exactly_these():
    """A new registry name must be added to one list or the other, knowingly."""
    expected_graph_only = {"guided_backprop", "deconvnet", "guided_grad_cam", "score_cam"}
    expected_graph_only |= {"cam", "grad_cam", "grad_cam_pp", "layer_cam"}
    expected_graph_only |= {"deeplift", "deeplift_shap"}
    expected_graph_only |= {n for n in kx.analyzers.names() if n.startswith(("lrp", "deep_"))}
    assert set(NEEDS_A_GRAPH) == expected_graph_only
    assert set(SUBCLASSED_PARAMS) <= set(kx.analyzers.names())


@pytest.fixture(scope="module")
def twins():
    return helpers.subclassed_cnn_and_twin()


@pytest.mark.parametrize("name", sorted(SUBCLASSED_PARAMS))
def test_subclassed_model_equals_its_functional_twin(twins, name):
    subclassed, functional = twins
    x = np.random.default_rng(0).uniform(size=(2, 6, 6, 2)).astype("float32")
    params = SUBCLASSED_PARAMS[name]
    expected = kx.create_analyzer(name, functional, **params).analyze(x, 1)
    result = kx.create_analyzer(name, subclassed, **params).analyze(x, 1)
    assert np.abs(expected).max() > 0
    # the same layers on the same weights: the plan re-executes the twin op by op
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NEEDS_A_GRAPH)
def test_methods_that_walk_the_graph_refuse_a_subclassed_model(twins, name):
    with pytest.raises(
        TypeError,
        match=r"Model 'subclassed_cnn' of class SubclassedCNN is a subclassed model with no "
        r"layer graph, so rule-based analyzers cannot walk it\. Rebuild it with the "
        r"Functional or Sequential API",
    ):
        kx.create_analyzer(name, twins[0])
