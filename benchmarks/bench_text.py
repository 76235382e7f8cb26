"""Benchmark LRP and Integrated Gradients on text classifiers against plain gradients.

Models (seeded, untrained): an LSTM classifier, ``Embedding(20000, 64) -> LSTM(64) ->
Dense(2)``, sequences of 200 tokens, batch 64; a small Transformer classifier,
``Embedding(20000, 64)`` -> 2 post-norm encoder blocks (MultiHeadAttention with 2
heads of 32, Add, LayerNormalization, ReLU MLP of 128, Add, LayerNormalization) ->
GlobalAveragePooling1D -> Dense(2), same sequences.

The analyzers explain the token models themselves: ``(64, 200)`` int32 ids in, one
score per token out (attribution of the Embedding output summed over its axis;
Integrated Gradients with the default baseline, token id 0). The reference does the
same lookup and then takes the gradient with respect to the Embedding output (the
sub-model from the embedding output to the logits, which reuses the model's layers).

Each method's ``analyze`` call and its reference run alternately after a warm-up
(which traces); the table prints both medians and the median of the per-pair ratios
(``_paired.py``). References: one plain ``tf.function`` GradientTape gradient of the
target logits w.r.t. the input, and for Integrated Gradients 64 of them (one per path
point, as IG's 64 steps are). Targets: LRP-ε ≤ 1.6x on the LSTM (issue #27; it was
2x in issue #12), IG(64) ≤ 1.2x on the LSTM and LRP-ε ≤ 1.5x on the Transformer
(issue #12 part 6).

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


def plain_gradient(model, tokens, target, repeats=1):
    """``repeats`` compiled gradients of the target logits w.r.t. the embedding output."""
    embedding, tail = model.layers[1], embedding_submodel(model)

    @tf.function
    def gradient(ids, indices):
        embedded = embedding(ids)
        total = tf.zeros_like(embedded)
        for _ in range(repeats):  # unrolled: as many forward/backward passes as IG's steps
            with tf.GradientTape() as tape:
                tape.watch(embedded)
                logits = tail(embedded, training=False)
                score = tf.gather(logits, indices, axis=1, batch_dims=1)
            total += tape.gradient(score, embedded)
        return tf.reduce_sum(total, axis=-1)

    ids, indices = tf.constant(tokens), tf.constant(target)
    return lambda: gradient(ids, indices).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    target = np.arange(BATCH, dtype=np.int64) % 2
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, batch {BATCH}, length {LENGTH}, "
        f"embedding {EMBEDDING}, runs {args.runs}; token inputs"
    )
    print(f"{'model / method':<34}{'median ms':>11}{'reference ms':>14}{'ratio':>8}  target")
    models = {"lstm": lstm_classifier(), "transformer": transformer_classifier()}
    rows = [
        ("lstm", "lrp.epsilon", {}, 1, 1.6),
        ("lstm", "integrated_gradients", {"steps": STEPS}, STEPS, 1.2),
        ("transformer", "lrp.epsilon", {}, 1, 1.5),
    ]
    for model_name, method, params, repeats, goal in rows:
        model = models[model_name]
        x = rng.integers(1, VOCABULARY, size=(BATCH, LENGTH)).astype("int32")
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
