"""Sequence models: text classifiers on token ids, recurrent and Transformer classifiers."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from .models import randomize

layers = keras.layers


TOKEN_KINDS = ("conv", "lstm", "gru", "bilstm", "mha")


def token_model(kind, seed=0, vocabulary=50, length=12, dim=8):
    """A text classifier on int32 token ids, and its float tail.

    ``Input((length,), int32) -> Embedding(vocabulary, dim, mask_zero=True) -> body ->
    Dense(3)`` with body one of ``TOKEN_KINDS``: Conv1D + GlobalMaxPooling1D (drops
    the mask), LSTM, GRU, Bidirectional(LSTM), MultiHeadAttention + residual +
    LayerNormalization + GlobalAveragePooling1D. Returns ``(model, tail)`` where
    ``tail(embeddings, mask)`` runs the same layers from the Embedding output with the
    mask passed explicitly (``mask=``; for attention, ``attention_mask=`` = query mask
    x value mask): the float sub-model a reference computes on.
    """
    import warnings

    layers = keras.layers
    keras.utils.set_random_seed(seed)
    embedding = layers.Embedding(vocabulary, dim, mask_zero=True)
    dense = layers.Dense(3)
    if kind == "conv":
        conv = layers.Conv1D(6, 3, padding="same", activation="relu")
        pool = layers.GlobalMaxPooling1D()

        def body(e, mask):
            return pool(conv(e))
    elif kind in ("lstm", "gru", "bilstm"):
        recurrent = {
            "lstm": lambda: layers.LSTM(6),
            "gru": lambda: layers.GRU(6),
            "bilstm": lambda: layers.Bidirectional(layers.LSTM(6)),
        }[kind]()

        def body(e, mask):
            return recurrent(e) if mask is None else recurrent(e, mask=mask)
    else:
        attention = layers.MultiHeadAttention(2, 4)
        norm, pool = layers.LayerNormalization(), layers.GlobalAveragePooling1D()

        def body(e, mask):
            if mask is None:
                return pool(norm(attention(e, e) + e))
            # Keras turns the query and value masks into this attention mask (and, in
            # 3.15, reads query_mask= only from the tensor's Keras mask, so pass it so)
            pairs = tf.logical_and(mask[:, :, None], mask[:, None, :])
            return pool(norm(attention(e, e, attention_mask=pairs) + e))

    tokens = keras.Input((length,), dtype="int32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Conv1D drops the mask, as documented
        model = keras.Model(tokens, dense(body(embedding(tokens), None)))
    randomize(model, seed, scale=0.5)

    def tail(embeddings, mask):
        return dense(body(tf.convert_to_tensor(embeddings), tf.convert_to_tensor(mask)))

    return model, tail


def padded_tokens(batch=4, length=12, vocabulary=50, seed=0):
    """int32 token ids in [1, vocabulary) with padding (0) at the end of most rows."""
    tokens = np.random.default_rng(seed).integers(1, vocabulary, (batch, length)).astype("int32")
    for row, keep in enumerate([7, 3, 10, length][:batch]):
        tokens[row, keep:] = 0
    return tokens


def recurrent_classifier(layer, steps=5, features=4, classes=3, pooled=False, masking=False):
    """``Input((steps, features))`` [-> Masking(0)] -> ``layer`` [-> mean over time] -> Dense.

    Seeded by the caller (``seeded``); ``pooled`` averages a sequence output over time.
    """
    inputs = keras.Input((steps, features))
    hidden = layers.Masking(0.0)(inputs) if masking else inputs
    hidden = layer(hidden)
    if pooled:
        hidden = layers.GlobalAveragePooling1D()(hidden)
    return keras.Model(inputs, layers.Dense(classes)(hidden))


def transformer_block(x, heads=2, key_dim=4, hidden=8, rms=False, causal=False):
    """Post-norm Transformer encoder block: attention, Add, LayerNorm, ReLU MLP, Add, LayerNorm.

    ``rms`` uses ``RMSNormalization`` instead of ``LayerNormalization``.
    """
    norm = layers.RMSNormalization if rms else layers.LayerNormalization
    attention = layers.MultiHeadAttention(heads, key_dim)
    attended = attention(x, x, use_causal_mask=True) if causal else attention(x, x)
    x = norm()(layers.Add()([x, attended]))
    mlp = layers.Dense(x.shape[-1])(layers.Dense(hidden, activation="relu")(x))
    return norm()(layers.Add()([x, mlp]))


def transformer_classifier(
    steps=5, features=8, blocks=2, classes=3, tokens=None, width=None, **block
):
    """A Transformer encoder classifier on floats ``(steps, features)``, or on token ids.

    With ``tokens`` (a vocabulary size) the input is integer ids embedded with
    ``Embedding(tokens, features, mask_zero=True)``, so padding (id 0) is masked.
    ``width`` first projects the features to that many with a Dense layer.
    """
    if tokens:
        inputs = keras.Input((steps,), dtype="int32")
        x = layers.Embedding(tokens, features, mask_zero=True)(inputs)
    else:
        inputs = x = keras.Input((steps, features))
    if width:
        x = layers.Dense(width)(x)
    for _ in range(blocks):
        x = transformer_block(x, **block)
    return keras.Model(inputs, layers.Dense(classes)(layers.GlobalAveragePooling1D()(x)))


def token_recurrent_classifier(layer, steps=6, tokens=20, features=4, classes=3):
    """Token ids -> ``Embedding(mask_zero=True)`` -> ``layer`` -> Dense."""
    inputs = keras.Input((steps,), dtype="int32")
    hidden = layers.Embedding(tokens, features, mask_zero=True)(inputs)
    return keras.Model(inputs, layers.Dense(classes)(layer(hidden)))


def keras_hub_causal_lm(family, seed=0, vocabulary_size=40, preprocessor=None):
    """A tiny random KerasHub causal LM (no download) with non-trivial norm scales."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    if family == "gpt2":
        backbone = keras_hub.models.GPT2Backbone(
            vocabulary_size=vocabulary_size,
            num_layers=2,
            num_heads=2,
            hidden_dim=8,
            intermediate_dim=16,
            max_sequence_length=16,
        )
        model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)
    else:
        backbone = keras_hub.models.LlamaBackbone(
            vocabulary_size=vocabulary_size,
            num_layers=2,
            num_query_heads=4,
            num_key_value_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
        )
        model = keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=preprocessor)
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shift = 1.0 if weight.path.endswith(("scale", "gamma")) else 0.0
        weight.assign(rng.normal(shift, 0.3, weight.shape).astype("float32"))
    return model


def keras_hub_lm_batch(length=6):
    rng = np.random.default_rng(1)
    return {
        "token_ids": rng.integers(1, 40, (2, length)).astype("int32"),
        "padding_mask": np.ones((2, length), "int32"),
    }
