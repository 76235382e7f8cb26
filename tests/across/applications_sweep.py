"""Run every image analyzer on one keras.applications model; print a JSON report.

Used by ``test_applications.py`` (slow step), one fresh process per family::

    python tests/across/applications_sweep.py EfficientNetB0 64

The model is built with ``weights=None`` (nothing downloaded); the deep families
with fewer repeats of each block (:func:`build`; the reason is in the test's
docstring). Every registry name
runs with small settings (2 noise samples, 3 path steps, ...; the code paths are the
same); CAM may refuse a model whose head is not global average pooling + Dense, with
its documented error. A result must have the contract's shape, be finite (except the
rules of UNSTABLE_ON_RANDOM_WEIGHTS) and not be all zeros.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_explain as kx  # noqa: E402

#: Small settings so that a family runs in minutes; the methods are the same.
PARAMS = {
    "smoothgrad": {"samples": 2, "seed": 0},
    "squaregrad": {"samples": 2, "seed": 0},
    "vargrad": {"samples": 2, "seed": 0},
    "integrated_gradients": {"steps": 3},
    "rise": {"samples": 8, "cells": 2, "seed": 0},
    "meaningful_perturbation": {"steps": 2, "mask_size": 4},
    "lime": {"samples": 10, "segmentation": "slic", "seed": 0},
    "kernel_shap": {"samples": 10, "seed": 0},
}
#: Rules that assume non-negative inputs with positive-dominated sums (ReLU networks,
#: trained weights): on untrained deep networks with swish or residual sums their
#: denominators come near zero layer after layer and float32 overflows (inf, then
#: NaN). They must run and return the right shape; finite values are not expected.
UNSTABLE_ON_RANDOM_WEIGHTS = {"lrp.gamma", "lrp.epsilon_gamma_box", "lrp.z_plus_fast"}
#: CAM (Zhou et al. 2016) needs a global average pooling followed by one Dense layer.
CAM_HEAD = "to feed a global average pooling followed by one Dense layer"
MAPS = {"cam", "grad_cam", "grad_cam_pp", "layer_cam", "score_cam"}


def calibrate(model: keras.Model, batch: np.ndarray) -> None:
    """Give the BatchNormalization layers of a random-weight model real statistics.

    With ``weights=None`` the moving statistics are (0, 1), so inference does not
    normalize and activations vanish layer after layer (MobileNet's logits are 1e-20).
    One training-mode pass with momentum 0 sets them to the batch's statistics.
    """
    norms = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    for layer in norms:
        layer.momentum = 0.0
    model(batch, training=True)


def _shallow_builders() -> dict:
    """Builders of the deep families with fewer repeats of each block (Keras' own code).

    Every block type and every stage of the family is there (a ResNetV2 stage keeps its
    projection block and a strided block, ConvNeXt each stage's downsampling and one
    block, EfficientNet each stage's MBConv with its stride and expansion),
    but repeats of the same block are dropped: they trace the same code again, and
    tracing (TensorFlow builds every analyzer's graph layer by layer) is nearly all of
    a family's time. The builders are Keras' private ones (``keras.src``); in a Keras
    without them the family runs on the full model.
    """
    try:
        from keras.src.applications import (
            convnext,
            densenet,
            efficientnet,
            inception_resnet_v2,
            nasnet,
            resnet,
        )
    except ImportError:
        return {}

    def resnet_stacks(stack, strides):  # two blocks per stage: projection + identity
        def stack_fn(x):
            for filters, stride, stage in zip((64, 128, 256, 512), strides, (2, 3, 4, 5)):
                x = stack(x, filters, 2, stride1=stride, name=f"conv{stage}")
            return x

        return stack_fn

    def one_block_each(**kw):
        """InceptionResNetV2 with one block35, block17 and block8 (+ the last block8).

        Keras writes the repeats as ``for block_idx in range(1, n)`` loops (its only
        uses of ``range``); a module-level ``range`` that yields the first index only
        shortens them while the model is built, with Keras' code otherwise unchanged.
        """
        inception_resnet_v2.range = lambda start, stop: iter((start,))
        try:
            return inception_resnet_v2.InceptionResNetV2(**kw)
        finally:
            del inception_resnet_v2.range

    return {
        "ConvNeXtTiny": lambda **kw: convnext.ConvNeXt(
            [1, 1, 1, 1], [96, 192, 384, 768], name="convnext_tiny", **kw
        ),
        "DenseNet121": lambda **kw: densenet.DenseNet([1, 1, 1, 1], name="densenet121", **kw),
        # depth 0.3: one block per stage, two in the sixth (its residual Add)
        "EfficientNetB0": lambda **kw: efficientnet.EfficientNet(
            1.0, 0.3, 224, name="efficientnetb0", **kw
        ),
        "InceptionResNetV2": one_block_each,
        "NASNetMobile": lambda **kw: nasnet.NASNet(
            penultimate_filters=1056,
            num_blocks=1,
            stem_block_filters=32,
            skip_reduction=False,
            filter_multiplier=2,
            default_size=224,
            name="nasnet_mobile",
            **kw,
        ),
        "ResNet50V2": lambda **kw: resnet.ResNet(
            resnet_stacks(resnet.stack_residual_blocks_v2, (2, 2, 2, 1)),
            True,
            True,
            name="resnet50v2",
            **kw,
        ),
    }


def build(application: str, size: int) -> keras.Model:
    """The family's model at ``size`` with random weights: shallow where Keras allows."""
    builder = _shallow_builders().get(application, getattr(keras.applications, application))
    return builder(weights=None, input_shape=(size, size, 3), classes=4)


def sweep(application: str, size: int) -> dict:
    keras.utils.set_random_seed(0)
    model = build(application, size)
    batch = np.random.default_rng(0).uniform(0, 1, (8, size, size, 3)).astype("float32")
    calibrate(model, batch)
    x = batch[:1]
    plan = kx.graph.Plan(model)
    reexecuted = plan.run([x])[plan.output_keys[0]].numpy()
    expected = model(x).numpy()
    mismatch = float(np.abs(reexecuted - expected).max() / max(np.abs(expected).max(), 1e-12))
    half = np.arange(size) >= size // 2
    params = dict(PARAMS)
    params["shapley_sampling"] = {
        "samples": 2,
        "seed": 0,
        "feature_mask": (half[:, None] * 2 + half[None, :]).astype(np.int32),
    }
    params["occlusion"] = {"window": size // 2}
    quadrants = (half[:, None] * 2 + half[None, :]).astype(np.int32)
    params["feature_ablation"] = {"feature_mask": quadrants}
    params["feature_permutation"] = {"feature_mask": quadrants, "seed": 0}
    background = np.stack([np.zeros_like(x[0]), batch[1]])
    params["deeplift_shap"] = {"background": background}
    params["gradient_shap"] = {"background": background, "samples": 2, "seed": 0}
    results = {}
    for name in kx.analyzers.names():
        try:
            # permutation needs other samples to permute with: the first two images
            inputs = batch[:2] if name == "feature_permutation" else x
            result = kx.create_analyzer(name, model, **params.get(name, {})).analyze(inputs)
        except Exception as error:  # noqa: BLE001 - report every failure of the family
            if name == "cam" and CAM_HEAD in str(error):
                results[name] = "ok"
            else:
                results[name] = f"{type(error).__name__}: {error}"[:400]
            continue
        shape = (1, size, size) if name in MAPS else inputs.shape
        if result.shape != shape:
            results[name] = f"shape {result.shape}, expected {shape}"
        elif not np.isfinite(result).all():
            unstable = name in UNSTABLE_ON_RANDOM_WEIGHTS
            results[name] = (
                "ok (not finite: see UNSTABLE_ON_RANDOM_WEIGHTS)" if unstable else ("not finite")
            )
        elif not np.any(result):
            results[name] = "all zeros"
        else:
            results[name] = "ok"
    return {"reexecution_error": mismatch, "results": results}


if __name__ == "__main__":
    print(json.dumps(sweep(sys.argv[1], int(sys.argv[2]))))
