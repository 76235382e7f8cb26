"""KerasHub models explained as users load them: tiny random backbones, no download.

Their layers are unknown to the layer table and opened into their keras.ops
operations (encoder blocks when the plan is built, ViT's patching when the shapes of
a run are known); the padding mask and segment ids are held constant.
"""

import itertools
import math

import helpers
import numpy as np
import pytest
import tensorflow as tf

import keras_explain as kx

keras_hub = pytest.importorskip("keras_hub")


def bert(seed=0):
    helpers.seeded(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=8,
    )
    return keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=3, preprocessor=None, activation=None
    )


def bert_batch():
    rng = np.random.default_rng(0)
    mask = np.ones((2, 8), "int32")
    mask[1, 5:] = 0
    return {
        "token_ids": rng.integers(1, 30, (2, 8)).astype("int32") * mask,
        "segment_ids": np.zeros((2, 8), "int32"),
        "padding_mask": mask,
    }


def test_bert_classifier_is_opened_and_explained_with_its_mask_held():
    model, x = bert(), bert_batch()
    plan = helpers.plan_of(model)
    kinds = {type(s.op.layer).__name__: s.op.kind for s in plan.steps}
    assert "TransformerEncoder" not in kinds  # opened into its operations
    assert kinds["MultiHeadAttention"] == "attention" and kinds["PositionEmbedding"] == "constant"
    values = plan.run([tf.constant(x[spec.name]) for spec in plan.input_specs])
    np.testing.assert_allclose(
        values[plan.output_keys[0]].numpy(), model(x).numpy(), rtol=1e-6, atol=1e-6
    )
    ig = kx.IntegratedGradients(model, steps=256).analyze(x, target=1)
    assert set(ig) == {"token_ids", "segment_ids", "padding_mask"}
    np.testing.assert_array_equal(ig["padding_mask"], 0.0)
    np.testing.assert_array_equal(ig["token_ids"][1, 5:], 0.0)  # padding reaches nothing
    baseline = {**x, "token_ids": np.zeros_like(x["token_ids"])}
    delta = model(x).numpy()[:, 1] - model(baseline).numpy()[:, 1]
    np.testing.assert_allclose(ig["token_ids"].sum(1), delta, atol=1e-3)
    relevance = kx.LRP(model, "epsilon").analyze(x, target=1)
    assert np.all(np.isfinite(relevance["token_ids"]))
    assert np.abs(relevance["token_ids"]).sum() > 0


def test_perturbation_methods_replace_tokens_and_hold_the_mask():
    """Occlusion and Shapley sampling perturb the token ids only (baseline id 0)."""
    model, x = bert(), bert_batch()
    logits = model(x).numpy()[:, 1]
    expected = np.zeros((2, 8))  # the score drop with token i replaced by id 0
    for i in range(8):
        tokens = x["token_ids"].copy()
        tokens[:, i] = 0
        expected[:, i] = logits - model({**x, "token_ids": tokens}).numpy()[:, 1]
    occlusion = kx.Occlusion(model, window=1).analyze(x, target=1)
    assert set(occlusion) == {"token_ids", "segment_ids", "padding_mask"}
    np.testing.assert_allclose(occlusion["token_ids"], expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(occlusion["padding_mask"], 0.0)
    np.testing.assert_array_equal(occlusion["segment_ids"], 0.0)
    shapley = kx.ShapleySampling(model, samples=3, seed=0).analyze(x, target=1)
    empty = model({**x, "token_ids": np.zeros_like(x["token_ids"])}).numpy()[:, 1]
    # efficiency: every permutation's marginals add up to f(x) - f(all tokens replaced)
    np.testing.assert_allclose(shapley["token_ids"].sum(1), logits - empty, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(shapley["token_ids"][1, 5:], 0.0)  # padding changes nothing
    with pytest.raises(ValueError, match=r"RISE blends inputs with soft masks, which token ids"):
        kx.RISE(model)
    with pytest.raises(
        ValueError,
        match=r"Lime explains models with one input \(it scores numpy rows on the host\)"
        r"; model 'bert_text_classifier\w*' has inputs \['padding_mask', 'segment_ids', "
        r"'token_ids'\]. Use 'occlusion' or 'shapley_sampling', which hold masks and segment "
        r"ids constant \(KernelSHAP does, for token ids\)",
    ):
        kx.Lime(model)


def exact_shapley(score, tokens, off=0):
    """Shapley values of the token positions by enumerating every coalition."""
    count = len(tokens)
    coalitions = np.array(list(itertools.product([0, 1], repeat=count)), bool)
    values = score(np.where(coalitions, tokens, off).astype(tokens.dtype))
    value_of = dict(zip(map(tuple, coalitions), values.astype(np.float64)))
    result = np.zeros(count)
    for coalition in coalitions:
        size = int(coalition.sum())
        for i in np.flatnonzero(~coalition):
            joined = coalition.copy()
            joined[i] = True
            weight = math.factorial(size) * math.factorial(count - size - 1)
            weight /= math.factorial(count)
            result[i] += weight * (value_of[tuple(joined)] - value_of[tuple(coalition)])
    return result


def test_kernel_shap_explains_token_ids_with_the_mask_held():
    """Every coalition enumerated (nsamples >= 2^8 - 2): shap's values are the exact ones."""
    model, x = bert(), bert_batch()
    result = kx.KernelShap(model, samples=300, seed=0).analyze(x, target=1)
    assert set(result) == {"token_ids", "segment_ids", "padding_mask"}
    np.testing.assert_array_equal(result["padding_mask"], 0.0)
    for row in range(2):
        others = {k: np.repeat(v[row : row + 1], 256, 0) for k, v in x.items() if k != "token_ids"}

        def score(tokens, others=others):
            return model({**others, "token_ids": tokens}).numpy()[:, 1]

        expected = exact_shapley(score, x["token_ids"][row])
        scale = np.abs(expected).max()
        np.testing.assert_allclose(result["token_ids"][row], expected, atol=1e-4 * scale)
    np.testing.assert_allclose(result["token_ids"][1, 5:], 0.0, atol=1e-6)  # padding


def test_faithfulness_metrics_on_dict_inputs_perturb_the_token_ids_only():
    """The curves perturb the token ids only: equal to a loop over the model."""
    model, x = bert(), bert_batch()
    attributions = kx.IntegratedGradients(model, steps=16).analyze(x, target=1)
    order = np.argsort(-attributions["token_ids"], axis=1, kind="stable")
    expected = np.zeros((2, 9))
    for k in range(9):  # the k most relevant tokens replaced by id 0
        tokens = x["token_ids"].copy()
        np.put_along_axis(tokens, order[:, :k], 0, axis=1)
        expected[:, k] = model({**x, "token_ids": tokens}).numpy()[:, 1]
    deletion = kx.metrics.deletion(model, x, attributions, target=1, steps=8)
    np.testing.assert_allclose(deletion.scores, expected, rtol=1e-5, atol=1e-8)
    flipped = kx.metrics.pixel_flipping(
        model, x, attributions["token_ids"], target=1, region=1, steps=8
    )
    np.testing.assert_allclose(flipped.scores, expected, rtol=1e-5, atol=1e-8)
    # faithfulness correlation: the same subsets of tokens as a loop over the model
    correlation = kx.metrics.faithfulness_correlation(
        model, x, attributions, target=1, subset=0.25, samples=6, seed=3
    )
    draws = np.random.default_rng(3).random((6, 8))
    removed = np.argsort(np.argsort(draws, axis=1), axis=1) < 2
    drops = np.stack(
        [
            model(x).numpy()[:, 1]
            - model({**x, "token_ids": np.where(r, 0, x["token_ids"])}).numpy()[:, 1]
            for r in removed
        ],
        axis=1,
    )
    sums = attributions["token_ids"] @ removed.T.astype("float32")
    expected = [np.corrcoef(sums[b], drops[b])[0, 1] for b in range(2)]
    np.testing.assert_allclose(correlation, expected, rtol=1e-3)
    # completeness: IG's sum against f(x) - f(all tokens 0), the mask held
    gap = kx.metrics.completeness(model, x, attributions, target=1)
    empty = model({**x, "token_ids": np.zeros_like(x["token_ids"])}).numpy()[:, 1]
    total = attributions["token_ids"].sum(1) - (model(x).numpy()[:, 1] - empty)
    np.testing.assert_allclose(gap, total, rtol=1e-4, atol=1e-8)
    with pytest.raises(
        ValueError,
        match=r"deletion: a dict x needs exactly one feature input beside the masks, segment "
        r"ids and positions \(named like them\). Received: keys \['a', 'b'\], features",
    ):
        kx.metrics.deletion(model, {"a": x["token_ids"], "b": x["token_ids"]}, attributions)
    with pytest.raises(
        ValueError, match=r"infidelity takes one input, an array. Received: a dict with keys"
    ):
        kx.metrics.infidelity(model, x, attributions)


def test_catalogue_metrics_on_dict_inputs_perturb_the_token_ids_only():
    """Quantus' catalogue beside a padding mask: equal to loops over the model on token ids."""
    model, x = bert(), bert_batch()
    attributions = kx.IntegratedGradients(model, steps=16).analyze(x, target=1)
    a = attributions["token_ids"].astype(np.float64)
    ids = x["token_ids"]

    def probability(tokens):  # the default probabilities=True: softmax of class 1
        logits = model({**x, "token_ids": tokens}).numpy().astype(np.float64)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp[:, 1] / exp.sum(axis=1)

    # faithfulness estimate, one token per group: pearson(a_i, f(x) - f(x, token i -> id 0))
    clean = probability(ids)
    drops = np.stack([clean - probability(np.where(np.arange(8) == i, 0, ids)) for i in range(8)])
    expected = [np.corrcoef(a[b], drops[:, b])[0, 1] for b in range(2)]
    estimate = kx.metrics.faithfulness_estimate(model, x, attributions, target=1)
    np.testing.assert_allclose(estimate, expected, rtol=1e-4)
    # monotonicity: tokens inserted in increasing attribution order into all-0 ids
    position = np.argsort(np.argsort(a, axis=1, kind="stable"), axis=1)
    curve = np.stack([probability(np.where(position <= k, ids, 0)) for k in range(8)], axis=1)
    monotonic = np.all(np.diff(curve, axis=1) >= 0, axis=1).astype(np.float32)
    np.testing.assert_array_equal(kx.metrics.monotonicity(model, x, attributions, 1), monotonic)
    # sensitivity-n: the same random subsets of tokens (logits, as the default)
    result = kx.metrics.sensitivity_n(model, x, attributions, 1, ns=[2, 4], samples=5, seed=3)
    draws = np.random.default_rng(3).random((2, 5, 8))
    removed = np.argsort(np.argsort(draws, axis=2), axis=2) < np.array([2, 4])[:, None, None]
    logit = model(x).numpy()[:, 1]
    for s in range(2):
        drops = np.stack(
            [
                logit - model({**x, "token_ids": np.where(r, 0, ids)}).numpy()[:, 1]
                for r in removed[s]
            ],
            axis=1,
        )
        sums = a @ removed[s].T
        expected = [np.corrcoef(sums[b], drops[b])[0, 1] for b in range(2)]
        np.testing.assert_allclose(result.correlations[:, s], expected, rtol=1e-3)

    # the batch-neighbour metrics and the attribution-only ones read the token ids' maps
    def on_ids(tokens):  # copies come copy-major: row r is a copy of sample r % 2
        rows = np.arange(len(tokens)) % 2
        return model({**{k: v[rows] for k, v in x.items()}, "token_ids": tokens.astype("int32")})

    for metric in (kx.metrics.consistency, kx.metrics.sufficiency, kx.metrics.non_sensitivity):
        np.testing.assert_array_equal(metric(model, x, attributions), metric(on_ids, ids, a))
    for metric in (kx.metrics.complexity, kx.metrics.effective_complexity, kx.metrics.sparseness):
        np.testing.assert_array_equal(metric(attributions), metric(a))
    # random logit: the gradient of class 1 against that of the seeded other class
    gradient = kx.Gradient(model)
    others = (1 + np.random.default_rng(0).integers(1, 3, size=2)) % 3
    expected = kx.metrics.similarity(
        gradient.analyze(x, 1)["token_ids"],
        gradient.analyze(x, others)["token_ids"],
        "spearman_abs",
    )
    np.testing.assert_allclose(kx.metrics.random_logit(gradient, x, 1), expected, rtol=1e-6)
    changes = kx.metrics.efficient_mprt(
        "integrated_gradients", model, x, 1, layers=["logits", "transformer_layer_1"], steps=8
    )
    assert changes.shape == (2,) and np.all(np.isfinite(changes))
    with pytest.raises(
        ValueError, match=r"efficient_mprt: layer 'position_embedding' has no initializer"
    ):
        kx.metrics.efficient_mprt("gradient", model, x, 1)
    # metrics that give tokens continuous values are refused, the token ids named
    for call, what in [
        (
            lambda: kx.metrics.monotonicity_correlation(model, x, attributions, 1),
            "replaces features by uniform random values",
        ),
        (
            lambda: kx.metrics.smooth_mprt("gradient", model, x, 1),
            r"adds Gaussian noise to the inputs \(SmoothGrad\)",
        ),
        (
            lambda: kx.metrics.avg_sensitivity(gradient, x, 1),
            "perturbs inputs with small continuous changes",
        ),
    ]:
        with pytest.raises(
            ValueError,
            match=what + r"; it is not defined for integer inputs \(token ids\). "
            r"Received: x of dtype int32",
        ):
            call()


def test_relevance_layer_by_layer_of_a_dict_input_model():
    """analyze_layers keyed by layer; the token embedding's relevance is the tokens'."""
    model, x = bert(), bert_batch()
    analyzer = kx.LRP(model, "attn_lrp")
    layers = analyzer.analyze_layers(x, target=1)
    assert {"token_embedding", "transformer_layer_1"} <= set(layers)
    tokens = analyzer.analyze(x, target=1)["token_ids"]
    assert np.abs(tokens).max() > 0
    np.testing.assert_allclose(layers["token_embedding"].sum(-1), tokens, rtol=1e-5, atol=1e-9)


def test_randomization_of_a_dict_input_model_and_of_a_transformer_block():
    """The token ids' attributions compared; a block's LayerNorm γ drawn from its own γ init."""
    model, x = bert(), bert_batch()
    weights = [w.copy() for w in model.get_weights()]
    result = kx.metrics.randomization(
        "gradient", model, x, target=1, layers=["logits", "transformer_layer_1"]
    )
    assert list(result) == ["logits", "transformer_layer_1"]  # top-down, cascading
    for values in result.values():
        assert values.shape == (2,) and np.all(np.abs(values) <= 1)
    assert np.all(result["transformer_layer_1"] < 0.99)  # the explanation changed
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)  # the model is untouched


def test_masks_and_sequences_that_do_not_fit_are_named():
    model, x = bert(), bert_batch()
    analyzer = kx.Gradient(model)
    short_mask = {**x, "padding_mask": x["padding_mask"][:, :5]}
    with pytest.raises(
        ValueError,
        match=r"Gradient: input 'padding_mask' of model 'bert_text_classifier\w*' must have the "
        r"shape of the token ids 'token_ids', \(2, 8\). Received: shape \(2, 5\)",
    ):
        analyzer.analyze(short_mask)
    long = {key: np.concatenate([value, value], axis=1) for key, value in x.items()}
    with pytest.raises(
        ValueError,
        match=r"input 'token_ids' of model 'bert_text_classifier\w*' holds sequences of 16 "
        r"tokens; its position embedding 'position_embedding' has 8 positions",
    ):
        analyzer.analyze(long)
    with pytest.raises(ValueError, match=r"outside the Embedding vocabulary \[0, 30\)"):
        analyzer.analyze({**x, "token_ids": x["token_ids"] + 30})


def test_vit_patching_is_opened_when_the_shapes_of_a_run_are_known():
    helpers.seeded(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(8, 8, 3), patch_size=4, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16
    )
    model = keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=3, preprocessor=None, activation=None
    )
    plan = helpers.plan_of(model)
    (patching,) = [s for s in plan.steps if type(s.op.layer).__name__ == "ViTPatchingAndEmbedding"]
    assert patching.op.deferred is not None
    x = np.random.default_rng(0).uniform(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        kx.Gradient(model).analyze(x, target=0),
        helpers.tape_gradient(model, x, 0),
        rtol=1e-4,
        atol=1e-7,
    )
    analyzer = kx.LRP(model, "epsilon_plus")
    relevance = analyzer.analyze(x, target=0)
    assert relevance.shape == x.shape and np.all(np.isfinite(relevance))
    # the patch convolution, opened at the first call, got the convolutions' rule
    rules = helpers.assigned_rules(analyzer)
    assert rules["patch_embedding"].startswith("AlphaBeta(alpha=1, beta=0")


def test_attn_lrp_on_llama_equals_lxt_recipe():
    """Rotary embeddings, grouped-query attention, RMS norms and SwiGLU, opened at run time."""
    model, x = helpers.keras_hub_causal_lm("llama"), helpers.keras_hub_lm_batch()
    expected, _ = helpers.attn_lrp_llama_reference(model, x, -1, 7)
    result = kx.create_analyzer("lrp.attn", model).analyze(x, lambda out: out[:, -1, 7])
    assert set(result) == {"token_ids", "padding_mask"}
    np.testing.assert_array_equal(result["padding_mask"], 0.0)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(result["token_ids"], expected, rtol=1e-4, atol=1e-5 * scale)


def test_gpt2_decoder_blocks_open_and_attn_lrp_runs():
    """KerasHub's TransformerDecoder calls CachedMultiHeadAttention with cache=None."""
    model, x = helpers.keras_hub_causal_lm("gpt2"), helpers.keras_hub_lm_batch()
    analyzer = kx.create_analyzer("lrp.attn", model)
    result = analyzer.analyze(x, lambda out: out[:, -1, 7])["token_ids"]
    assert result.shape == (2, 6) and np.all(np.isfinite(result))
    text = analyzer.describe()
    assert "TransformerDecoder" in text and "opened into its operations" in text
    # the gradient through the opened blocks is the model's own
    np.testing.assert_allclose(
        kx.IntegratedGradients(model, steps=128)
        .analyze(x, lambda out: out[:, -1, 7])["token_ids"]
        .sum(1),
        model(x).numpy()[:, -1, 7]
        - model({**x, "token_ids": np.zeros_like(x["token_ids"])}).numpy()[:, -1, 7],
        rtol=0.02,
        atol=1e-3,
    )
