"""Every KerasHub family we can build small, explained by five methods (slow step).

Each family's task model (a classifier or a causal LM) is built from a tiny config with
random weights (no download) and explained with the gradient, Integrated Gradients
(complete within 1% of the score difference), LRP-ε, AttnLRP and one perturbation
method (occlusion for images and text classifiers; token ablation through
``kx.text.explain_generation`` for causal LMs). The families that fail are in
:data:`FAILING`, with the error they give; ``docs/guide/relevance.md`` lists them (a
test checks both agree), and a family that starts working fails its test until it is
taken off the list.
"""

import re
from pathlib import Path

import helpers
import keras
import numpy as np
import pytest

import keras_explain as kx

keras_hub = pytest.importorskip("keras_hub")
models = keras_hub.models if keras_hub is not None else None

pytestmark = pytest.mark.slow

#: family -> what fails (the documented reason, as a regular expression of the error)
FAILING: dict[str, str] = {}

TEXT = {
    "bert": lambda: models.BertTextClassifier(
        models.BertBackbone(30, 2, 2, 8, 16, max_sequence_length=8), 3, preprocessor=None
    ),
    "roberta": lambda: models.RobertaTextClassifier(
        models.RobertaBackbone(30, 2, 2, 8, 16, max_sequence_length=8), 3, preprocessor=None
    ),
    "distil_bert": lambda: models.DistilBertTextClassifier(
        models.DistilBertBackbone(30, 2, 2, 8, 16, max_sequence_length=8), 3, preprocessor=None
    ),
    "albert": lambda: models.AlbertTextClassifier(
        models.AlbertBackbone(30, 2, 2, 8, 8, 16, max_sequence_length=8), 3, preprocessor=None
    ),
    "deberta_v3": lambda: models.DebertaV3TextClassifier(
        models.DebertaV3Backbone(30, 2, 2, 8, 16, max_sequence_length=8), 3, preprocessor=None
    ),
}
IMAGES = {
    "vit": lambda: models.ViTImageClassifier(
        models.ViTBackbone((16, 16, 3), 8, 1, 2, 8, 16), 3, preprocessor=None
    ),
    "deit": lambda: models.DeiTImageClassifier(
        models.DeiTBackbone((16, 16, 3), 8, 1, 2, 8, 16), 3, preprocessor=None
    ),
    "dinov2": lambda: dinov2_classifier(),
    "swin": lambda: models.SwinTransformerImageClassifier(
        models.SwinTransformerBackbone((16, 16, 3), 8, [2], [2], 2, patch_size=4),
        3,
        preprocessor=None,
    ),
}
LMS = {
    "gpt2": lambda: models.GPT2CausalLM(
        models.GPT2Backbone(30, 2, 2, 8, 16, max_sequence_length=16), preprocessor=None
    ),
    "llama": lambda: models.LlamaCausalLM(
        models.LlamaBackbone(30, 2, 4, 16, 32, num_key_value_heads=2), preprocessor=None
    ),
    "mistral": lambda: models.MistralCausalLM(
        models.MistralBackbone(30, 2, 4, 16, 32, num_key_value_heads=2), preprocessor=None
    ),
    "qwen": lambda: models.QwenCausalLM(
        models.QwenBackbone(30, 2, 4, 2, 16, 32), preprocessor=None
    ),
    "phi3": lambda: models.Phi3CausalLM(
        models.Phi3Backbone(30, 2, 16, 32, 4, 2), preprocessor=None
    ),
    "gemma": lambda: models.GemmaCausalLM(
        models.GemmaBackbone(30, 2, 4, 2, 16, 32, 4), preprocessor=None
    ),
    # text only (no vision encoder); the task model calls its backbone as backbone(inputs=x)
    "gemma3": lambda: models.Gemma3CausalLM(
        backbone=models.Gemma3Backbone(30, 16, 2, 4, 2, 16, 32, 4), preprocessor=None
    ),
}


def dinov2_classifier():
    """DINOV2 has no task model: its backbone with a dense head on the class token."""
    backbone = models.DINOV2Backbone(
        4, 1, 8, 2, 16, image_shape=(16, 16, 3), position_embedding_shape=(16, 16, 3)
    )
    logits = keras.layers.Dense(3)(backbone.outputs[0][:, 0])
    return keras.Model(backbone.inputs, logits)


def text_batch(model):
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 30, (2, 8)).astype("int32")
    names = [tensor.name for tensor in model.inputs]
    batch = {"token_ids": ids, "padding_mask": np.ones_like(ids)}
    if any("segment_ids" in name for name in names):
        batch["segment_ids"] = np.zeros_like(ids)
    return batch


def explained(family, check):
    """Run ``check``; for a family of :data:`FAILING`, expect its error instead."""
    if family not in FAILING:
        check()
        return
    with pytest.raises((ValueError, TypeError), match=re.compile(FAILING[family], re.DOTALL)):
        check()


def test_the_guide_lists_the_failing_families():
    guide = (Path(__file__).resolve().parents[2] / "docs/guide/relevance.md").read_text()
    listed = re.search(r"KerasHub families that fail(.*?)\n\n", guide, re.DOTALL)
    assert listed is not None
    assert sorted(re.findall(r"^- `(\w+)`", listed.group(1), re.MULTILINE)) == sorted(FAILING)
    assert bool(FAILING) != ("fail: none" in listed.group(0))


def check_backward(model, x, target, score, baseline):
    for name in ("gradient", "lrp.epsilon", "lrp.attn"):
        result = kx.create_analyzer(name, model).analyze(x, target)
        values = result["token_ids"] if isinstance(result, dict) else result
        assert np.all(np.isfinite(values)) and np.abs(values).sum() > 0, name
    params = {} if isinstance(x, dict) else {"baseline": baseline[0]}
    ig = kx.create_analyzer("integrated_gradients", model, steps=512, **params).analyze(x, target)
    ig = ig["token_ids"] if isinstance(ig, dict) else ig
    delta = score(x) - score(baseline)
    total = ig.reshape(len(delta), -1).sum(1)
    np.testing.assert_allclose(total, delta, rtol=0.01, atol=0.01 * np.abs(delta).max())


@pytest.mark.parametrize("family", sorted(TEXT))
def test_text_classifiers(family):
    helpers.seeded(0)
    model = TEXT[family]()
    x = text_batch(model)
    baseline = {**x, "token_ids": np.zeros_like(x["token_ids"])}

    def check():
        score = lambda inputs: np.asarray(model(inputs))[:, 1]  # noqa: E731
        check_backward(model, x, 1, score, baseline)
        # occlusion replaces one token at a time by id 0, the mask and segments held
        occlusion = kx.create_analyzer("occlusion", model, window=1).analyze(x, 1)
        drops = np.zeros(x["token_ids"].shape)
        for i in range(drops.shape[1]):
            tokens = x["token_ids"].copy()
            tokens[:, i] = 0
            drops[:, i] = score(x) - score({**x, "token_ids": tokens})
        scale = np.abs(drops).max()
        np.testing.assert_allclose(occlusion["token_ids"], drops, atol=1e-4 * scale)

    explained(family, check)


@pytest.mark.parametrize("family", sorted(IMAGES))
def test_image_classifiers(family):
    helpers.seeded(0)
    model = IMAGES[family]()
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")

    def check():
        score = lambda inputs: np.asarray(model(inputs))[:, 1]  # noqa: E731
        # a grey baseline: at a black image Swin's first LayerNorm sees a constant patch
        # embedding (zero variance), where the model's own gradient is 1.6e12
        check_backward(model, x, 1, score, np.full_like(x, 0.5))
        occlusion = kx.create_analyzer("occlusion", model, window=4).analyze(x, 1)
        assert occlusion.shape == x.shape and np.all(np.isfinite(occlusion))

    explained(family, check)


@pytest.mark.parametrize("family", sorted(LMS))
def test_causal_lms(family):
    helpers.seeded(0)
    model = LMS[family]()
    x = text_batch(model)
    baseline = {**x, "token_ids": np.zeros_like(x["token_ids"])}

    def check():
        score = lambda inputs: np.asarray(model(inputs))[:, -1, 3]  # noqa: E731
        check_backward(model, x, lambda out: out[:, -1, 3], score, baseline)

    explained(family, check)
    method = "input_t_gradient" if family in FAILING else "lrp.attn"
    generation = kx.text.explain_generation(
        model, x["token_ids"][0], max_new_tokens=2, method=method
    )
    ablation = kx.text.explain_generation(
        model, x["token_ids"][0], continuation=generation.generated, method="ablation"
    )
    assert np.all(np.isfinite(generation.attributions))
    assert np.all(np.isfinite(ablation.attributions))
