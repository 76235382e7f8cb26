"""kx.text.explain_generation: each generated token attributed to the tokens before it."""

import helpers
import keras
import numpy as np
import pytest
from keras import layers

import keras_explain as kx

keras_hub = pytest.importorskip("keras_hub")

PROMPT = np.array([5, 9, 3, 17])


def score(model, sequence, position, token, padding=True):
    inputs = sequence[None].astype("int32")
    if padding:
        inputs = {"token_ids": inputs, "padding_mask": np.ones_like(inputs)}
    return float(np.asarray(model(inputs))[0, position, token])


def test_greedy_tokens_and_each_row_equal_the_analyzer_on_that_token():
    model = helpers.keras_hub_causal_lm("gpt2")
    generation = kx.text.explain_generation(
        model, PROMPT, max_new_tokens=3, method="input_t_gradient"
    )
    # greedy decoding, by hand
    sequence = list(PROMPT)
    for _ in range(3):
        inputs = np.asarray([sequence], "int32")
        logits = model({"token_ids": inputs, "padding_mask": np.ones_like(inputs)})
        sequence.append(int(np.argmax(np.asarray(logits)[0, -1])))
    np.testing.assert_array_equal(generation.generated, sequence[4:])
    np.testing.assert_array_equal(generation.prompt, PROMPT)
    assert generation.attributions.shape == (3, 7) and generation.tokens == [
        str(i) for i in sequence
    ]
    full = np.asarray(sequence)
    inputs = {"token_ids": full[None].astype("int32"), "padding_mask": np.ones((1, 7), "int32")}
    analyzer = kx.create_analyzer("input_t_gradient", model)
    for row, token in enumerate(generation.generated):
        position = 3 + row
        expected = analyzer.analyze(inputs, lambda out, p=position, t=token: out[:, p, t])
        expected = expected["token_ids"][0]
        np.testing.assert_allclose(generation.attributions[row], expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(generation.attributions[row, position + 1 :], 0.0)
        assert generation.scores[row] == pytest.approx(score(model, full, position, token), 1e-5)


def test_integrated_gradients_rows_are_complete():
    model = helpers.keras_hub_causal_lm("llama")
    answer = np.array([7, 2])
    generation = kx.text.explain_generation(
        model, PROMPT, continuation=answer, method="integrated_gradients", steps=128
    )
    full = np.concatenate([PROMPT, answer])
    for row, token in enumerate(answer):
        position = 3 + row
        # the baseline is token 0 everywhere; later positions do not reach position p
        delta = score(model, full, position, token) - score(
            model, np.zeros_like(full), position, token
        )
        assert generation.attributions[row].sum() == pytest.approx(delta, rel=0.02, abs=1e-3)


def test_ablation_is_the_score_drop_with_each_position_replaced():
    model = helpers.keras_hub_causal_lm("gpt2")
    answer = np.array([11, 4])
    generation = kx.text.explain_generation(
        model, PROMPT, continuation=answer, method="ablation", baseline=1
    )
    full = np.concatenate([PROMPT, answer])
    for row, token in enumerate(answer):
        position = 3 + row
        for column in range(len(full)):
            ablated = full.copy()
            ablated[column] = 1
            expected = score(model, full, position, token) - score(model, ablated, position, token)
            if column > position:
                expected = 0.0  # causal: it cannot change the score (and is zeroed)
            assert generation.attributions[row, column] == pytest.approx(expected, abs=1e-5)


def test_attn_lrp_on_a_plain_keras_causal_model_and_the_heatmap():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((None,), dtype="int32")
    x = layers.Embedding(30, 8)(tokens)
    x = layers.Add()([x, layers.MultiHeadAttention(2, 4)(x, x, use_causal_mask=True)])
    model = keras.Model(tokens, layers.Dense(30)(layers.LayerNormalization()(x)))
    generation = kx.text.explain_generation(model, [3, 4, 5], max_new_tokens=2)
    assert generation.attributions.shape == (2, 5)
    assert np.all(np.isfinite(generation.attributions))
    html = generation.text_heatmap(0)
    assert html.count("<span") == 4  # the prompt and the explained token
    # a token's own prediction does not see later positions: zero there
    np.testing.assert_array_equal(generation.attributions[0, 3:], 0.0)


def test_bad_arguments_are_named():
    model = helpers.keras_hub_causal_lm("gpt2")
    with pytest.raises(ValueError, match=r"target must be 'logit' or 'logprob'. Received: "):
        kx.text.explain_generation(model, PROMPT, target="prob")
    with pytest.raises(ValueError, match=r"'lrp.attn' explains logits .* target='logprob'"):
        kx.text.explain_generation(model, PROMPT, target="logprob", max_new_tokens=1)
    with pytest.raises(TypeError, match=r"a string prompt needs the model's tokenizer"):
        kx.text.explain_generation(model, "hello")
    with pytest.raises(ValueError, match=r"nothing to explain"):
        kx.text.explain_generation(model, PROMPT, max_new_tokens=0)
    # GPT-2's learned positions: 16 (max_sequence_length)
    with pytest.raises(
        ValueError,
        match=r"the prompt \(14 tokens\) and the 4 tokens to explain do not fit the 16 "
        r"positions of 'position_embedding'. Received: 18 tokens",
    ):
        kx.text.explain_generation(model, np.arange(1, 15), max_new_tokens=4)
    with pytest.raises(ValueError, match=r"prompt token ids must be in \[0, 40\), .* 1 to 50"):
        kx.text.explain_generation(model, np.array([1, 50, 2]), max_new_tokens=1)
    with pytest.raises(ValueError, match=r"continuation token ids must be in \[0, 40\)"):
        kx.text.explain_generation(model, PROMPT, continuation=[3, -1])


def test_a_model_that_is_not_a_causal_lm_is_named():
    inputs = keras.Input((4,), dtype="int32")
    classifier = keras.Model(
        inputs, layers.Dense(3)(layers.Flatten()(layers.Embedding(40, 2)(inputs))), name="clf"
    )
    with pytest.raises(
        ValueError,
        match=r"causal_lm must map token ids \(batch, length\) to next-token logits .* "
        r"Received: model 'clf' with inputs \['.*'\] and output shape \(None, 3\)",
    ):
        kx.text.explain_generation(classifier, PROMPT)


def test_log_probabilities_with_a_gradient_method():
    model = helpers.keras_hub_causal_lm("gpt2")
    answer = np.array([7])
    generation = kx.text.explain_generation(
        model, PROMPT, continuation=answer, method="integrated_gradients", target="logprob"
    )
    full = np.concatenate([PROMPT, answer])

    def logprob(sequence):
        inputs = {"token_ids": sequence[None].astype("int32"), "padding_mask": np.ones((1, 5))}
        logits = np.asarray(model(inputs), "float64")[0, 3]
        return logits[7] - np.log(np.exp(logits - logits.max()).sum()) - logits.max()

    assert generation.scores[0] == pytest.approx(logprob(full), abs=1e-5)
    delta = logprob(full) - logprob(np.zeros_like(full))
    assert generation.attributions[0].sum() == pytest.approx(delta, rel=0.02, abs=1e-3)


def test_an_analyzer_passed_in_is_reused_and_gives_the_same_rows():
    model = helpers.keras_hub_causal_lm("gpt2")
    answer = np.array([7, 2, 9])
    analyzer = kx.create_analyzer("lrp.attn", model)
    first = kx.text.explain_generation(model, PROMPT, continuation=answer, method=analyzer)
    traces = helpers.tracing_counts(analyzer)
    again = kx.text.explain_generation(model, PROMPT, continuation=answer, method=analyzer)
    assert helpers.tracing_counts(analyzer) == traces  # the compiled function is reused
    by_name = kx.text.explain_generation(model, PROMPT, continuation=answer)
    np.testing.assert_array_equal(first.attributions, again.attributions)
    np.testing.assert_allclose(first.attributions, by_name.attributions, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match=r"target='logprob' with an analyzer"):
        kx.text.explain_generation(
            model, PROMPT, continuation=answer, method=analyzer, target="logprob"
        )


def test_a_string_prompt_is_tokenized_by_the_models_preprocessor():
    """A tiny in-memory byte-pair tokenizer (no download): the same rows as its ids."""
    vocabulary = {"<|endoftext|>": 0, "a": 1, "b": 2, "c": 3, "Ġ": 4, "Ġa": 5, "Ġb": 6}
    vocabulary.update({"Ġc": 7, "ab": 8, "Ġab": 9})
    tokenizer = keras_hub.tokenizers.GPT2Tokenizer(
        vocabulary=vocabulary, merges=["a b", "Ġ a", "Ġ b", "Ġ c", "Ġa b"]
    )
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=16)
    model = helpers.keras_hub_causal_lm("gpt2", vocabulary_size=10, preprocessor=preprocessor)
    generation = kx.text.explain_generation(model, "ab c a", max_new_tokens=2)
    np.testing.assert_array_equal(generation.prompt, [8, 7, 5])  # "ab", " c", " a"
    assert generation.tokens[:3] == ["ab", "Ġc", "Ġa"]
    from_ids = kx.text.explain_generation(model, np.array([8, 7, 5]), max_new_tokens=2)
    np.testing.assert_array_equal(generation.generated, from_ids.generated)
    np.testing.assert_array_equal(generation.attributions, from_ids.attributions)


def test_the_generation_page_shows_every_method_per_generated_token(tmp_path):
    model = helpers.keras_hub_causal_lm("gpt2")
    relevance = kx.text.explain_generation(model, PROMPT, max_new_tokens=3)
    ablation = kx.text.explain_generation(
        model, PROMPT, continuation=relevance.generated, method="ablation"
    )
    path = kx.text.generation_page(
        {"lrp.attn": relevance, "ablation": ablation}, str(tmp_path / "g.html"), title="<GPT-2>"
    )
    page = open(path, encoding="utf-8").read()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "&lt;GPT-2&gt;" in page and "<th>lrp.attn</th><th>ablation</th>" in page
    assert page.count("<tr>") == 1 + 3  # the header and one row per generated token
    # each row: a heatmap per method of the P + t + 1 tokens up to the explained one
    assert page.count("<span") == 2 * sum(len(PROMPT) + t + 1 for t in range(3))
    assert not (tmp_path / "g.html.partial").exists()
    other = kx.text.explain_generation(model, PROMPT[:2], max_new_tokens=1)
    with pytest.raises(ValueError, match=r"every generation must explain the same tokens"):
        kx.text.generation_page({"a": relevance, "b": other}, str(tmp_path / "h.html"))
    with pytest.raises(ValueError, match=r"no generation to show"):
        kx.text.generation_page({}, str(tmp_path / "h.html"))
    # kx.report on a causal LM writes the same page: every method explains the
    # first one's generation
    reported = kx.report(
        ["lrp.attn", "ablation"],
        model,
        PROMPT,
        out=str(tmp_path / "r.html"),
        max_new_tokens=3,
        title="<GPT-2>",
    )
    assert open(reported, encoding="utf-8").read() == page
    with pytest.warns(UserWarning, match=r"report: methods left out of the page: lime: "):
        kx.report(["lrp.attn", "lime"], model, PROMPT, out=str(tmp_path / "w.html"))
