"""Benchmark AttnLRP (``lrp.attn``) on KerasHub Transformers against a plain gradient.

Models (seeded, random weights, no download):

- a GPT-2-shaped causal LM, ``keras_hub.models.GPT2CausalLM`` with 4 decoder blocks,
  hidden size 256, 4 heads, MLP 1024, a 1000-token vocabulary; 128 tokens, batch 8;
  the explained score is the logit of token 7 at the last position;
- a ViT-shaped image classifier, ``keras_hub.models.ViTImageClassifier`` with 4
  encoder blocks, hidden size 256, 4 heads, MLP 1024, 176×176 images in 16×16 patches
  (121 tokens with the class token), batch 8; the explained score is logit 1.

The generation row explains 32 given tokens after a 96-token prompt on the GPT-2-shaped
model (``kx.text.explain_generation(..., continuation=..., method=analyzer)`` with an
``lrp.attn`` analyzer built once, one batched call) against 32 plain compiled
gradients, one per generated token (one trace).

The reference is one plain ``tf.function`` GradientTape gradient of the same score:
with respect to the images for ViT, to the token-embedding table for GPT-2 (the
gather's gradient: what the relevance at the embedding output costs). Each
``analyze`` call and the reference run alternately after a warm-up that traces;
the table prints both medians and the median of the per-pair ratios
(``_paired.py``). Targets: issue #28 item 7 (≤ 1.5x on both; the generation ≤ 1.2x).

Run: ``python benchmarks/bench_transformers.py [--runs 5]``.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_explain as kx  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _paired import paired  # noqa: E402

BATCH, LENGTH, VOCABULARY, HIDDEN, HEADS, MLP, LAYERS, IMAGE = 8, 128, 1000, 256, 4, 1024, 4, 176


def gpt2():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=VOCABULARY,
        num_layers=LAYERS,
        num_heads=HEADS,
        hidden_dim=HIDDEN,
        intermediate_dim=MLP,
        max_sequence_length=LENGTH,
    )
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def vit():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(
        image_shape=(IMAGE, IMAGE, 3),
        patch_size=16,
        num_layers=LAYERS,
        num_heads=HEADS,
        hidden_dim=HIDDEN,
        mlp_dim=MLP,
    )
    return keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=10, preprocessor=None, activation=None
    )


def last_token_logit(out):
    return out[:, -1, 7]


def gpt2_gradient(model, x):
    table = model.backbone.token_embedding.embeddings

    @tf.function
    def gradient(inputs):
        with tf.GradientTape() as tape:
            score = last_token_logit(model(inputs, training=False))
        return tape.gradient(score, table)

    inputs = {key: tf.constant(value) for key, value in x.items()}
    return lambda: tf.convert_to_tensor(gradient(inputs)).numpy()


def vit_gradient(model, x):
    @tf.function
    def gradient(images):
        with tf.GradientTape() as tape:
            tape.watch(images)
            score = model(images, training=False)[:, 1]
        return tape.gradient(score, images)

    images = tf.constant(x)
    return lambda: gradient(images).numpy()


def generation_gradients(model, sequence, picks):
    """One compiled gradient per generated token, of its logit w.r.t. the embedding table."""
    table = model.backbone.token_embedding.embeddings
    inputs = {
        "token_ids": tf.constant(sequence[None].astype("int32")),
        "padding_mask": tf.ones((1, len(sequence)), "int32"),
    }

    @tf.function
    def gradient(position, token):
        with tf.GradientTape() as tape:
            score = model(inputs, training=False)[0, position, token]
        return tape.gradient(score, table)

    def run():
        for position, token in picks:
            tf.convert_to_tensor(gradient(tf.constant(position), tf.constant(token))).numpy()

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, KerasHub {keras_hub.__version__}, "
        f"batch {BATCH}, {LAYERS} blocks of width {HIDDEN}, runs {args.runs}"
    )
    print(f"{'model / method':<28}{'median ms':>11}{'reference ms':>14}{'ratio':>8}  target")
    tokens = {
        "token_ids": rng.integers(1, VOCABULARY, (BATCH, LENGTH)).astype("int32"),
        "padding_mask": np.ones((BATCH, LENGTH), "int32"),
    }
    images = rng.uniform(size=(BATCH, IMAGE, IMAGE, 3)).astype("float32")
    rows = [
        ("gpt2", gpt2, tokens, last_token_logit, gpt2_gradient),
        ("vit", vit, images, 1, vit_gradient),
    ]
    for name, build, x, target, reference in rows:
        model = build()
        for method in ("lrp.attn", "gradient"):
            analyzer = kx.create_analyzer(method, model)
            result = paired(
                lambda a=analyzer, x=x, t=target: a.analyze(x, t),
                reference(model, x),
                args.runs,
                warmup=1,
            )
            goal = 1.5 if method == "lrp.attn" else None
            verdict = (
                ""
                if goal is None
                else f"goal <= {goal}x: " + ("met" if result.ratio <= goal else "NOT met")
            )
            print(
                f"{name + ' / ' + method:<28}{result.method_ms:11.1f}"
                f"{result.reference_ms:14.1f}{result.ratio:8.2f}x {verdict}"
            )
    model = gpt2()
    sequence = rng.integers(1, VOCABULARY, LENGTH)
    prompt, answer = sequence[:96], sequence[96:]
    picks = [(95 + t, int(token)) for t, token in enumerate(answer)]
    analyzer = kx.create_analyzer("lrp.attn", model)  # built once: its trace is reused
    result = paired(
        lambda: kx.text.explain_generation(model, prompt, continuation=answer, method=analyzer),
        generation_gradients(model, sequence, picks),
        args.runs,
        warmup=1,
    )
    verdict = "met" if result.ratio <= 1.2 else "NOT met"
    print(
        f"{'gpt2 / 32 generated tokens':<28}{result.method_ms:11.1f}"
        f"{result.reference_ms:14.1f}{result.ratio:8.2f}x goal <= 1.2x (32 gradients): {verdict}"
    )


if __name__ == "__main__":
    main()
