"""keras.applications models (built with ``weights=None``, small inputs; nothing downloaded).

The default suite pins Grad-CAM's default layer on VGG16 and ResNet50 (SPEC 3.4:
the output of the last convolutional block, as in the Grad-CAM paper and Keras'
own example). The slow step runs every image analyzer on one model of every
architecture family, LRP presets and DeepTaylor included.
"""

import json
import os
import subprocess
import sys

import keras
import pytest

import keras_explain as kx

applications = keras.applications


def test_grad_cam_default_layer_is_the_last_convolutional_block():
    vgg = applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=4)
    assert kx.GradCAM(vgg).layer.name == "block5_conv3"  # not block5_pool
    resnet = applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=4)
    assert kx.GradCAM(resnet).layer.name == "conv5_block3_out"
    headless = applications.ResNet50(
        weights=None, include_top=False, pooling="avg", input_shape=(64, 64, 3)
    )
    assert kx.LayerCAM(headless).layer.name == "conv5_block3_out"


#: One model per family, and an input size whose last block is still spatial (> 1 x 1).
FAMILIES = {
    "ConvNeXt": ("ConvNeXtTiny", 64),
    "DenseNet": ("DenseNet121", 64),
    "EfficientNet": ("EfficientNetB0", 64),
    "EfficientNetV2": ("EfficientNetV2B0", 64),
    "InceptionResNetV2": ("InceptionResNetV2", 139),
    "InceptionV3": ("InceptionV3", 139),
    "MobileNet": ("MobileNet", 64),
    "MobileNetV2": ("MobileNetV2", 64),
    "MobileNetV3": ("MobileNetV3Small", 64),
    "NASNet": ("NASNetMobile", 64),
    "ResNet": ("ResNet50", 64),
    "ResNetV2": ("ResNet50V2", 64),
    "VGG": ("VGG16", 64),
    "Xception": ("Xception", 71),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_image_analyzer_runs_on_every_family(family):
    """Every registry name on one model of the family, in a fresh process per family.

    A fresh process because TensorFlow keeps every traced graph until exit. Nearly all
    of a family's time is tracing: each analyzer builds its graph layer by layer (on
    ResNet50 at 64 x 64, about 10 s to trace and 0.1 s to run one image with
    ``lrp.epsilon``), so the time grows with the number of layers, not with the input
    size or the perturbation methods' samples. The deep families therefore run on a
    shallower model built by Keras' own builders (``applications_sweep.build``): every
    stage and block type of the family (ResNetV2's projection and identity blocks,
    DenseNet's dense and transition blocks, EfficientNet's residual MBConv, ConvNeXt's
    blocks and downsampling, NASNet's normal and reduction cells, InceptionResNetV2's
    blocks 35, 17 and 8 and reductions) with fewer repeats: the same layer types as
    the full model and the same code paths, in 37 to 363 layers instead of 135 to 782.
    ResNet50 and EfficientNetV2B0 stay full (their shallow versions failed the sweep:
    a re-execution error of 2.8e-5 > 1e-5, and DeepLIFT on EfficientNetV2, not yet
    investigated); VGG, Xception, InceptionV3 and the MobileNets have no repeat
    parameter and run on the full model. Inputs are kept: the smallest size whose
    last block is still spatial.
    """
    pytest.importorskip("skimage")
    application, size = FAMILIES[family]
    script = os.path.join(os.path.dirname(__file__), "applications_sweep.py")
    completed = subprocess.run(
        [sys.executable, script, application, str(size)], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["reexecution_error"] < 1e-5
    assert set(report["results"]) == set(kx.analyzers.names())
    failures = {
        name: status for name, status in report["results"].items() if not status.startswith("ok")
    }
    assert not failures, failures
