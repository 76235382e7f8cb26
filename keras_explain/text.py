"""Language models: which earlier tokens made each generated token (``explain_generation``).

A causal language model (KerasHub's ``GPT2CausalLM``, ``LlamaCausalLM``, ... or any
Keras model mapping token ids ``(B, T)`` to logits ``(B, T, V)`` whose position ``p``
reads positions ``<= p`` only) generates greedily, or is given the continuation to
explain; each generated token's score (its logit, or its log-probability) is then
attributed to every position before it. With a backward method (any gradient or
relevance method of the registry) all rows are one batched call of the analyzer:
row ``t`` explains the score at position ``p_t`` of the whole sequence, and causality
keeps later positions out of it. ``method="ablation"`` is Captum's
``LLMAttribution`` with ``FeatureAblation``: each context position in turn is replaced
by a baseline token and the drop of every generated token's score is its
attribution.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _graph
from keras_explain.analyzers.registry import analyzer_class, create_analyzer


@dataclasses.dataclass(frozen=True)
class Generation:
    """The tokens of a generation and their attributions.

    Attributes:
        prompt: The prompt's token ids, ``(P,)``.
        generated: The generated (or given) token ids, ``(N,)``.
        attributions: ``(N, P + N)``: row ``t`` attributes the score of generated
            token ``t`` (predicted at position ``P + t - 1``) to the positions
            ``0 .. P + t - 1`` of ``prompt + generated``; zeros after them.
        scores: The explained score of each generated token, ``(N,)``.
        tokens: The strings of ``prompt + generated`` when the model has a
            tokenizer, else the ids as strings.
    """

    prompt: np.ndarray
    generated: np.ndarray
    attributions: np.ndarray
    scores: np.ndarray
    tokens: list[str]

    def text_heatmap(self, row: int = -1, **kwargs: Any) -> str:
        """HTML of one row: the context of generated token ``row`` coloured by its attribution.

        Args:
            row: Which generated token (default the last).
            **kwargs: For :func:`keras_explain.visualize.text_heatmap`.

        Returns:
            The HTML string (the explained token is the last one shown).

        Example:
            >>> html = generation.text_heatmap(0)  # doctest: +SKIP
        """
        from keras_explain.visualize import text_heatmap

        row = range(len(self.generated))[row]
        end = len(self.prompt) + row + 1  # the context and the explained token
        scores = np.append(self.attributions[row, : end - 1], 0.0)
        return text_heatmap(self.tokens[:end], scores, **kwargs)


def generation_page(
    generations: Generation | dict[str, Generation],
    out: str = "generation.html",
    *,
    title: str = "Explained generation",
    **kwargs: Any,
) -> str:
    """Write one offline HTML page: each generated token's context, coloured, per method.

    One row per generated token; in it, one heatmap per method (the context of the
    token coloured by its attribution, the explained token last and uncoloured), so
    the methods read side by side, as :func:`keras_explain.report` shows classifiers.
    The page has no script and loads nothing; it is written to a temporary name and
    renamed (a failure leaves no partial page).

    Args:
        generations: A :class:`Generation`, or ``{method name: Generation}`` of the
            same prompt and generated tokens (e.g. ``"lrp.attn"`` and ``"ablation"``).
        out: The HTML file to write.
        title: The page title.
        **kwargs: For :func:`keras_explain.visualize.text_heatmap` (``cmap``, ``signed``).

    Returns:
        ``out``.

    Raises:
        ValueError: For no generation, or generations of other tokens.

    Example:
        >>> import os, tempfile, numpy as np, keras_explain as kx
        >>> generation = kx.text.Generation(np.array([1, 2]), np.array([3]),
        ...     np.array([[0.5, -0.5, 0.0]], "float32"), np.array([1.0], "float32"),
        ...     ["a", "b", "c"])
        >>> path = kx.text.generation_page(generation, os.path.join(tempfile.mkdtemp(), "g.html"))
        >>> open(path).read().count("<span")
        3
    """
    import html

    from keras_explain._shards import write_atomic

    if isinstance(generations, Generation):
        generations = {"attribution": generations}
    if not generations:
        raise ValueError("generation_page: no generation to show. Pass at least one.")
    first = next(iter(generations.values()))
    for name, generation in generations.items():
        if generation.tokens != first.tokens:
            raise ValueError(
                "generation_page: every generation must explain the same tokens. Received: "
                f"{name!r} explains {generation.tokens}, the first {first.tokens}."
            )
    rows = []
    for row, token in enumerate(first.tokens[len(first.prompt) :]):
        cells = "".join(
            f"<td>{generation.text_heatmap(row, **kwargs)}</td>"
            for generation in generations.values()
        )
        rows.append(f"<tr><th>{html.escape(token)}</th>{cells}</tr>")
    head = "".join(f"<th>{html.escape(str(name))}</th>" for name in generations)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif}}"
        "td,th{border-bottom:1px solid #ddd;padding:4px;text-align:left;vertical-align:top}"
        f"</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>Prompt: {html.escape(' '.join(first.tokens[: len(first.prompt)]))}</p>"
        f"<table><tr><th>generated token</th>{head}</tr>{''.join(rows)}</table>"
        "</body></html>\n"
    )
    write_atomic(out, lambda handle: handle.write(page.encode("utf-8")))
    return out


def explain_generation(
    causal_lm: Any,
    prompt: Any,
    *,
    max_new_tokens: int = 8,
    method: str = "lrp.attn",
    target: str = "logit",
    continuation: Any = None,
    baseline: int = 0,
    **params: Any,
) -> Generation:
    """Attribute every generated token's score to the tokens before it.

    Args:
        causal_lm: A causal language model: token ids (a dict with
            ``"token_ids"`` and ``"padding_mask"``, as KerasHub's, or one int
            input) to logits ``(B, T, V)``.
        prompt: Token ids ``(P,)``, a dict of the model's inputs for one
            sequence, or a string (tokenized with ``causal_lm.preprocessor``).
        max_new_tokens: How many tokens to generate greedily (ignored with
            ``continuation``).
        method: A registry name (``"lrp.attn"``, ``"gradient"``,
            ``"input_t_gradient"``, ``"integrated_gradients"``, ...),
            ``"ablation"``, or an analyzer built on ``causal_lm`` (its compiled
            function is then reused from call to call: build it once to explain
            many generations).
        target: ``"logit"`` or ``"logprob"`` (log-softmax over the vocabulary;
            not for relevance methods, which explain logits).
        continuation: Token ids to explain instead of generating (a fixed answer).
        baseline: The token id that replaces a position for ``"ablation"``.
        **params: For the analyzer (``steps=``, ``epsilon=``, ...).

    Returns:
        A :class:`Generation`.

    Raises:
        ValueError: For an unknown ``target``, ``target="logprob"`` with a
            relevance method or an analyzer, an empty prompt or nothing to explain.
        TypeError: For a string prompt and a model without a preprocessor.

    Example:
        >>> import keras_hub, numpy as np, keras_explain as kx
        >>> backbone = keras_hub.models.GPT2Backbone(
        ...     vocabulary_size=40, num_layers=1, num_heads=2, hidden_dim=8,
        ...     intermediate_dim=16, max_sequence_length=16)
        >>> lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
        >>> generation = kx.text.explain_generation(lm, np.array([5, 9, 3]), max_new_tokens=2)
        >>> generation.attributions.shape
        (2, 5)
    """
    if target not in ("logit", "logprob"):
        raise ValueError(
            f"explain_generation: target must be 'logit' or 'logprob'. Received: target={target!r}."
        )
    vocabulary = _check_causal_lm(causal_lm)
    ids, padding = _prompt_ids(causal_lm, prompt)
    _check_ids(ids, vocabulary, "prompt")
    if continuation is None:
        _check_length(causal_lm, len(ids), max_new_tokens)
        generated = _greedy(causal_lm, ids, padding, max_new_tokens)
    else:
        generated = np.asarray(continuation, "int64").reshape(-1)
        _check_ids(generated, vocabulary, "continuation")
        _check_length(causal_lm, len(ids), len(generated))
    if len(generated) == 0:
        raise ValueError(
            "explain_generation: nothing to explain. Received: max_new_tokens="
            f"{max_new_tokens!r}, continuation={continuation!r}; ask for at least one token."
        )
    sequence = np.concatenate([ids, generated])
    rows, length = len(generated), len(sequence)
    positions = len(ids) - 1 + np.arange(rows)  # position p_t predicts generated token t
    picks = np.stack([positions, generated], axis=1)
    if method == "ablation":
        attributions, scores = _ablation(causal_lm, sequence, padding, picks, target, baseline)
    else:
        attributions, scores = _backward(
            causal_lm, sequence, padding, picks, target, method, params
        )
    later = np.arange(length)[None, :] > positions[:, None]
    attributions = np.where(later, 0.0, attributions).astype("float32")
    return Generation(ids, generated, attributions, scores, _strings(causal_lm, sequence))


# -- inputs ------------------------------------------------------------------------------
def _check_causal_lm(causal_lm) -> int:
    """The vocabulary size of a causal LM: token ids (and a padding mask) -> ``(B, T, V)``."""
    inputs = keras.tree.flatten(getattr(causal_lm, "inputs", None) or [])
    outputs = keras.tree.flatten(getattr(causal_lm, "outputs", None) or [])
    names = sorted(getattr(tensor, "name", "") for tensor in inputs)
    extra = [n for n in names if n not in ("token_ids", "padding_mask")] if len(names) > 1 else []
    shape = tuple(outputs[0].shape) if len(outputs) == 1 else None
    if not inputs or shape is None or len(shape) != 3 or shape[-1] is None or extra:
        received = f"output shape {shape}" if shape is not None else f"{len(outputs)} outputs"
        raise ValueError(
            "explain_generation: causal_lm must map token ids (batch, length) to next-token "
            f"logits (batch, length, vocabulary), as KerasHub's *CausalLM. Received: model "
            f"{getattr(causal_lm, 'name', causal_lm)!r} with inputs {names} and {received}."
        )
    return int(shape[-1])


def _check_ids(ids: np.ndarray, vocabulary: int, what: str) -> None:
    if len(ids) and (ids.min() < 0 or ids.max() >= vocabulary):
        raise ValueError(
            f"explain_generation: {what} token ids must be in [0, {vocabulary}), the model's "
            f"vocabulary. Received: ids from {ids.min()} to {ids.max()}."
        )


def _check_length(causal_lm, prompt: int, new: int) -> None:
    """The prompt and the generated tokens fit the model's learned positions."""
    limit = _graph.position_limit(_graph.sublayers(causal_lm))
    if limit is not None and prompt + new > limit[1]:
        raise ValueError(
            f"explain_generation: the prompt ({prompt} tokens) and the {new} tokens to "
            f"explain do not fit the {limit[1]} positions of {limit[0]!r}. Received: "
            f"{prompt + new} tokens. Shorten the prompt or ask for fewer tokens."
        )


def _prompt_ids(causal_lm, prompt) -> tuple[np.ndarray, bool]:
    """The prompt's ids ``(P,)`` and whether the model takes a padding mask."""
    padding = _takes_padding_mask(causal_lm)
    if isinstance(prompt, str):
        preprocessor = getattr(causal_lm, "preprocessor", None)
        tokenizer = getattr(preprocessor, "tokenizer", None)
        if tokenizer is None:
            raise TypeError(
                "explain_generation: a string prompt needs the model's tokenizer; "
                f"{type(causal_lm).__name__} has no preprocessor. Pass token ids instead."
            )
        prompt = np.asarray(tokenizer(prompt))
    if isinstance(prompt, dict):
        prompt = prompt["token_ids"]
    ids = np.asarray(prompt).astype("int64").reshape(-1)
    if len(ids) == 0:
        raise ValueError("explain_generation: the prompt is empty. Pass at least one token.")
    return ids, padding


def _takes_padding_mask(causal_lm) -> bool:
    names = [getattr(tensor, "name", "") for tensor in keras.tree.flatten(causal_lm.inputs)]
    return any("padding_mask" in name for name in names)


def _inputs(sequences: np.ndarray, padding: bool):
    sequences = np.asarray(sequences, "int32")
    if padding:
        return {"token_ids": sequences, "padding_mask": np.ones_like(sequences)}
    return sequences


def _strings(causal_lm, sequence: np.ndarray) -> list[str]:
    tokenizer = getattr(getattr(causal_lm, "preprocessor", None), "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "id_to_token"):
        return [str(tokenizer.id_to_token(int(i))) for i in sequence]
    return [str(int(i)) for i in sequence]


# -- generation and scores ---------------------------------------------------------------
def _greedy(causal_lm, ids: np.ndarray, padding: bool, count: int) -> np.ndarray:
    sequence = list(ids)
    for _ in range(count):
        logits = causal_lm(_inputs(np.asarray([sequence]), padding), training=False)
        sequence.append(int(np.argmax(np.asarray(logits)[0, -1])))
    return np.asarray(sequence[len(ids) :], "int64")


def _score(logits, picks, target: str):
    """The score of each row's pick ``(position, token)`` from logits ``(B, T, V)``."""
    if target == "logprob":
        logits = tf.nn.log_softmax(logits, axis=-1)
    return tf.gather_nd(logits, tf.constant(picks, tf.int32), batch_dims=1)


def _backward(causal_lm, sequence, padding, picks, target, method, params):
    """One batched call: row ``t`` explains the logit (or log-probability) of its pick.

    Each row's target is the flat index ``p_t * V + token_t`` of the output ``(T, V)``,
    so the analyzer's copies and batches carry it as any per-sample index.
    """
    if not isinstance(method, str):  # an analyzer built on causal_lm
        if target == "logprob":
            raise ValueError(
                "explain_generation: an analyzer explains the output it was built on (the "
                "logits). Received: target='logprob' with an analyzer. Pass the method's "
                "name instead."
            )
        analyzer = method
        return _attribute(analyzer, causal_lm, sequence, padding, picks, target)
    model = causal_lm
    if target == "logprob":
        if getattr(analyzer_class(method)[0], "relevance_seed", False):
            raise ValueError(
                f"explain_generation: {method!r} explains logits (relevance is seeded with "
                "the explained logit). Received: target='logprob'. Use target='logit', or a "
                "gradient method for log-probabilities."
            )
        output = keras.tree.flatten(causal_lm.outputs)[0]
        model = keras.Model(causal_lm.inputs, keras.ops.log_softmax(output, axis=-1))
    return _attribute(
        create_analyzer(method, model, **params), causal_lm, sequence, padding, picks, target
    )


def _attribute(analyzer, causal_lm, sequence, padding, picks, target):
    vocabulary = int(keras.tree.flatten(causal_lm.outputs)[0].shape[-1])
    batch = _inputs(np.repeat(sequence[None], len(picks), axis=0), padding)
    result = analyzer.analyze(batch, picks[:, 0] * vocabulary + picks[:, 1])
    attributions = result["token_ids"] if isinstance(result, dict) else result
    logits = causal_lm(_inputs(sequence[None], padding), training=False)
    scores = _score(tf.repeat(logits, len(picks), axis=0), picks, target).numpy()
    return np.asarray(attributions, "float32"), scores


def _ablation(causal_lm, sequence, padding, picks, target, baseline, chunk=16):
    """Captum's ``FeatureAblation`` on tokens: score drop when a position is the baseline."""
    length = len(sequence)
    logits = causal_lm(_inputs(sequence[None], padding), training=False)
    scores = _score(tf.repeat(logits, len(picks), axis=0), picks, target).numpy()
    attributions = np.zeros((len(picks), length), "float32")
    for start in range(0, length, chunk):
        columns = np.arange(start, min(start + chunk, length))
        ablated = np.repeat(sequence[None], len(columns), axis=0)
        ablated[np.arange(len(columns)), columns] = baseline
        out = causal_lm(_inputs(ablated, padding), training=False)
        for row, (position, token) in enumerate(picks):
            chosen = out[:, position]
            if target == "logprob":
                chosen = tf.nn.log_softmax(chosen, axis=-1)
            attributions[row, columns] = scores[row] - np.asarray(chosen)[:, token]
    return attributions, scores
