"""Measure keras_explain against iNNvestigate on one CNN with the same weights.

This is how the "Same numbers?" table of docs/innvestigate.md was established. It
needs two environments: this project's, and one with iNNvestigate 2.1.2 on
TensorFlow 2.14 (``python3.11 -m venv /tmp/innv && /tmp/innv/bin/pip install
"tensorflow-cpu==2.14.*" "innvestigate==2.1.2"``). Run, from this directory:

    python innvestigate_parity.py ours /tmp/parity             # keras_explain side
    /tmp/innv/bin/python innvestigate_parity.py theirs /tmp/parity
    python innvestigate_parity.py compare /tmp/parity

``ours`` draws the weights and inputs and saves them with its maps; ``theirs``
rebuilds the same architecture in tf.keras 2.14, loads those weights and builds
every iNNvestigate analyzer on a *fresh* model (iNNvestigate's first-layer rules
check every inbound node of a layer, so on a model that other analyzers already
used, ``deep_taylor.bounded`` silently falls back to ``deep_taylor``). Two more
runs isolate the known differences: zero biases (the alpha-beta bias treatment)
and non-negative inputs (``lrp.z_plus_fast``'s assumption).
"""

import os
import sys

import numpy as np

SHARED = [
    "gradient", "input_t_gradient", "deconvnet", "guided_backprop", "integrated_gradients",
    "deep_taylor", "lrp.z", "lrp.epsilon", "lrp.w_square", "lrp.flat", "lrp.alpha_2_beta_1",
    "lrp.alpha_2_beta_1_IB", "lrp.alpha_1_beta_0", "lrp.alpha_1_beta_0_IB", "lrp.z_plus",
    "lrp.z_plus_fast", "lrp.sequential_preset_a", "lrp.sequential_preset_b",
    "lrp.sequential_preset_a_flat", "lrp.sequential_preset_b_flat",
]  # fmt: skip
PARAMS = {"deep_taylor.bounded": {"low": -4.0, "high": 4.0},
          "lrp.alpha_beta": {"alpha": 3.0, "beta": 2.0}}  # fmt: skip
NO_BIAS = ["lrp.alpha_2_beta_1", "lrp.alpha_1_beta_0", "lrp.alpha_beta",
           "lrp.sequential_preset_a", "lrp.sequential_preset_b",
           "lrp.sequential_preset_a_flat", "lrp.sequential_preset_b_flat"]  # fmt: skip
SMOOTHGRAD_SAMPLES = 4096


def build(keras):
    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(h))


def runs(weights, x):
    """(key, name, weights, inputs, params) of every map both sides compute."""
    no_bias = [w if w.ndim > 1 else np.zeros_like(w) for w in weights]
    for name in SHARED + list(PARAMS):
        yield name, name, weights, x, PARAMS.get(name, {})
    for name in NO_BIAS:
        yield f"no_bias:{name}", name, no_bias, x, PARAMS.get(name, {})
    yield "abs_x:lrp.z_plus_fast", "lrp.z_plus_fast", weights, np.abs(x), {}


def ours(folder):
    import keras

    import keras_explain as kx

    rng = np.random.default_rng(0)
    model = build(keras)
    weights = [rng.normal(0, 0.3, w.shape).astype("float32") for w in model.get_weights()]
    x = rng.normal(0, 1, (4, 16, 16, 3)).astype("float32")
    os.makedirs(folder, exist_ok=True)
    np.savez(f"{folder}/setup.npz", *weights, x=x)
    out = {}
    for key, name, w, inputs, params in runs(weights, x):
        model.set_weights(w)
        out[key] = kx.create_analyzer(name, model, **params).analyze(inputs)
    model.set_weights(weights)
    out["integrated_gradients@riemann_left"] = kx.IntegratedGradients(
        model, steps=64, method="riemann_left"
    ).analyze(x)
    # iNNvestigate's noise is N(0, 1) in input units: noise_scale = 1 / range, per sample
    out["smoothgrad@sigma_1"] = np.concatenate(
        [
            kx.SmoothGrad(
                model, samples=SMOOTHGRAD_SAMPLES, noise_scale=float(1 / np.ptp(x[i]))
            ).analyze(x[i : i + 1])
            for i in range(len(x))
        ]
    )
    features = keras.Model(model.inputs, model.layers[-2].output)(x).numpy()
    out["logits"] = features @ weights[-2] + weights[-1]
    np.savez(f"{folder}/ours.npz", **out)


def theirs(folder):
    import innvestigate
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    keras = tf.keras
    setup = np.load(f"{folder}/setup.npz")
    x, weights = setup["x"], [setup[f"arr_{i}"] for i in range(len(setup.files) - 1)]

    def fresh(w):
        keras.backend.clear_session()
        model = build(keras)
        model.set_weights(w)
        return innvestigate.model_wo_softmax(model)

    out = {
        key: innvestigate.create_analyzer(name, fresh(w), **params).analyze(inputs)
        for key, name, w, inputs, params in runs(weights, x)
    }
    for noise_scale in (1e-3, 1.0):  # its noise_scale never reaches the noise layer
        out[f"smoothgrad@noise_scale_{noise_scale:g}"] = np.concatenate(
            [
                innvestigate.create_analyzer(
                    "smoothgrad", fresh(weights), augment_by_n=SMOOTHGRAD_SAMPLES,
                    noise_scale=noise_scale,
                ).analyze(x[i : i + 1])
                for i in range(len(x))
            ]
        )  # fmt: skip
    out["logits"] = fresh(weights).predict(x)
    np.savez(f"{folder}/theirs.npz", **out)


def compare(folder):
    mine, other = np.load(f"{folder}/ours.npz"), np.load(f"{folder}/theirs.npz")
    logit = mine["logits"].max(axis=1)[:, None, None, None]
    print(f"logits: max |ours - theirs| = {np.abs(mine['logits'] - other['logits']).max():.3g}")
    print(f"explained logits: {np.round(logit.ravel(), 3)}")

    def relative(a, b):
        return np.abs(a - b).max() / np.abs(b).max()

    print(f"{'map':40s} {'rel. diff':>10s}  bit-identical")
    for key in [k for k in other.files if k in mine.files and k != "logits"]:
        a, b = mine[key], other[key]
        print(f"{key:40s} {relative(a, b):10.2g}  {np.array_equal(a, b)}")
    for key in ("guided_backprop", "deconvnet"):
        print(f"{key + ' x logit':40s} {relative(mine[key] * logit, other[key]):10.2g}")
    riemann = mine["integrated_gradients@riemann_left"]
    print(f"{'integrated_gradients@riemann_left':40s} "
          f"{relative(riemann, other['integrated_gradients']):10.2g}")  # fmt: skip
    for key in ("smoothgrad@noise_scale_0.001", "smoothgrad@noise_scale_1"):
        print(f"{key:40s} {relative(mine['smoothgrad@sigma_1'], other[key]):10.2g}"
              "  (vs ours at sigma 1; Monte Carlo error)")  # fmt: skip


if __name__ == "__main__":
    {"ours": ours, "theirs": theirs, "compare": compare}[sys.argv[1]](sys.argv[2])
