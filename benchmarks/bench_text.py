"""Benchmark LRP and Integrated Gradients on text classifiers against plain gradients.

Models (seeded, untrained): an LSTM classifier, ``Embedding(20000, 64) -> LSTM(64) ->
Dense(2)``, sequences of 200 tokens, batch 64; a small Transformer classifier,
``Embedding(20000, 64)`` -> 2 post-norm encoder blocks (MultiHeadAttention with 2
heads of 32, Add, LayerNormalization, ReLU MLP of 128, Add, LayerNormalization) ->
GlobalAveragePooling1D -> Dense(2), same sequences.

Both are explained at the Embedding output: the timed models are the sub-models from
the embedding output ``(64, 200, 64)`` floats to the logits (the token-input path,
Embedding lookups and baselines given as token ids, is another part of the issue;
switch to the token models once it is merged). The lookup itself costs the same in
both columns.

Each method's ``analyze`` call and its reference run alternately after a warm-up
(which traces); the table prints both medians and the median of the per-pair ratios
(``_paired.py``). References: one plain ``tf.function`` GradientTape gradient of the
target logits w.r.t. the input, and for Integrated Gradients 64 of them (one per path
point, as IG's 64 steps are). Targets: issue #12 part 6 (LRP-ε ≤ 2x and IG(64) ≤ 1.2x
on the LSTM, LRP-ε ≤ 1.5x on the Transformer).

Run: ``python benchmarks/bench_text.py [--runs 5]``.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_explain as kx  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _paired import paired  # noqa: E402

BATCH, LENGTH, VOCABULARY, EMBEDDING, UNITS, STEPS = 64, 200, 20000, 64, 64, 64
layers = keras.layers


def lstm_classifier():
    keras.utils.set_random_seed(0)
    tokens = keras.Input((LENGTH,), dtype="int32")
    embedded = layers.Embedding(VOCABULARY, EMBEDDING)(tokens)
    return keras.Model(tokens, layers.Dense(2)(layers.LSTM(UNITS)(embedded)))


def transformer_classifier(blocks=2):
    keras.utils.set_random_seed(0)
    tokens = keras.Input((LENGTH,), dtype="int32")
    x = layers.Embedding(VOCABULARY, EMBEDDING)(tokens)
    for _ in range(blocks):
        attended = layers.MultiHeadAttention(2, EMBEDDING // 2)(x, x)
        x = layers.LayerNormalization()(layers.Add()([x, attended]))
        mlp = layers.Dense(EMBEDDING)(layers.Dense(2 * EMBEDDING, activation="relu")(x))
        x = layers.LayerNormalization()(layers.Add()([x, mlp]))
    pooled = layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, layers.Dense(2)(pooled))


def embedding_submodel(model):
    """Rebuild ``model`` from its Embedding output, reusing its layers (functional clone)."""
    embedding = model.layers[1]
    inputs = keras.Input((LENGTH, EMBEDDING))
    outputs = keras.Model(embedding.output, model.output)(inputs)
    return keras.Model(inputs, outputs)


def plain_gradient(model, x, target, repeats=1):
    """``repeats`` compiled gradients of the target logits, one model call each."""

    @tf.function
    def gradient(inputs, indices):
        total = tf.zeros_like(inputs)
        for _ in range(repeats):  # unrolled: as many forward/backward passes as IG's steps
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                logits = model(inputs, training=False)
                score = tf.gather(logits, indices, axis=1, batch_dims=1)
            total += tape.gradient(score, inputs)
        return total

    inputs, indices = tf.constant(x), tf.constant(target)
    return lambda: gradient(inputs, indices).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    target = np.arange(BATCH, dtype=np.int64) % 2
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, batch {BATCH}, length {LENGTH}, "
        f"embedding {EMBEDDING}, runs {args.runs}; explained at the Embedding output"
    )
    print(f"{'model / method':<34}{'median ms':>11}{'reference ms':>14}{'ratio':>8}  target")
    models = {
        "lstm": embedding_submodel(lstm_classifier()),
        "transformer": embedding_submodel(transformer_classifier()),
    }
    rows = [
        ("lstm", "lrp.epsilon", {}, 1, 2.0),
        ("lstm", "integrated_gradients", {"steps": STEPS}, STEPS, 1.2),
        ("transformer", "lrp.epsilon", {}, 1, 1.5),
    ]
    for model_name, method, params, repeats, goal in rows:
        model = models[model_name]
        x = rng.normal(size=(BATCH, LENGTH, EMBEDDING)).astype("float32") * 0.05
        analyzer = kx.create_analyzer(method, model, verbose=0, **params)
        reference = plain_gradient(model, x, target, repeats)
        result = paired(
            lambda a=analyzer, x=x: a.analyze(x, target), reference, args.runs, warmup=1
        )
        met = "met" if result.ratio <= goal else "NOT met"
        what = f"{repeats} plain gradient" + ("s" if repeats > 1 else "")
        print(
            f"{model_name + ' / ' + method:<34}{result.method_ms:11.1f}{result.reference_ms:14.1f}"
            f"{result.ratio:8.2f}x {what}; goal <= {goal}x: {met}"
        )


if __name__ == "__main__":
    main()
