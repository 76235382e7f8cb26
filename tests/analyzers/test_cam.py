"""CAM family: each map against a hand-written TF/numpy reference of its paper's formula.

References never use keras_explain: activations and gradients come from eager layer calls
under a GradientTape, the formulas are written in numpy, and the upsampling reference is a
separable numpy linear interpolation with half-pixel centers.
"""

import helpers
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import cam_images as images

import keras_explain as kx

layers = keras.layers


# -- models -----------------------------------------------------------------------------
def gap_cnn(seed=0, softmax=True):
    """Conv -> MaxPool -> Conv -> GAP -> Dense: the CAM architecture."""
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            layers.Conv2D(4, 3, activation="relu", padding="same", name="conv_a"),
            layers.MaxPooling2D(name="pool_a"),
            layers.Conv2D(5, 3, activation="relu", padding="same", name="last_conv"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(3, activation="softmax" if softmax else None, name="head"),
        ],
        name="gap_cnn",
    )
    return helpers.randomize_biases(model)


def pre_post_pair(seed=0):
    """The same weights as Conv2D(relu) fused, and as Conv2D -> ReLU() split."""
    helpers.seeded(seed)
    fused = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            layers.Conv2D(4, 3, activation="relu", name="conv"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(3),
        ],
        name="fused",
    )
    helpers.randomize_biases(fused)
    split = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            layers.Conv2D(4, 3, name="conv_pre"),
            layers.ReLU(name="relu_post"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(3),
        ],
        name="split",
    )
    split.set_weights(fused.get_weights())
    return fused, split


def backbone_model(seed=0, head_conv=False):
    """Transfer-learning shape: a CNN backbone used as a layer, then GAP + Dense."""
    helpers.seeded(seed)
    backbone = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            layers.Conv2D(4, 3, activation="relu", padding="same", name="bb_conv1"),
            layers.MaxPooling2D(name="bb_pool"),
            layers.Conv2D(5, 3, activation="relu", padding="same", name="bb_conv2"),
        ],
        name="backbone",
    )
    inputs = keras.Input((8, 8, 2))
    h = backbone(inputs)
    if head_conv:
        h = layers.Conv2D(3, 1, activation="relu", name="head_conv")(h)
    h = layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = layers.Dense(3, activation="softmax", name="head")(h)
    return helpers.randomize_biases(keras.Model(inputs, outputs, name="transfer"))


def functional_cnn(seed=0):
    """Two conv branches added, a conv after them, GAP + Dense."""
    helpers.seeded(seed)
    inputs = keras.Input((8, 8, 2))
    a = layers.Conv2D(4, 3, padding="same", activation="relu", name="branch_a")(inputs)
    b = layers.Conv2D(4, 1, padding="same", name="branch_b")(inputs)
    h = layers.Add(name="add")([a, b])
    h = layers.Conv2D(5, 3, strides=2, padding="same", activation="relu", name="top")(h)
    h = layers.GlobalAveragePooling2D()(h)
    outputs = layers.Dense(3, name="head")(h)
    return helpers.randomize_biases(keras.Model(inputs, outputs, name="functional_cnn"))


def conv1d_model(seed=0):
    helpers.seeded(seed)
    model = keras.Sequential(
        [
            keras.Input((12, 2)),
            layers.Conv1D(4, 3, activation="relu", name="c1"),
            layers.MaxPooling1D(name="p1"),
            layers.Conv1D(5, 3, activation="relu", padding="same", name="c2"),
            layers.GlobalAveragePooling1D(),
            layers.Dense(3, name="head"),
        ],
        name="conv1d",
    )
    return helpers.randomize_biases(model)


# -- cutting models by hand (eager layer calls) ------------------------------------
def sequential_split(model, name):
    """front/back callables of a Sequential model cut after layer ``name`` (eager calls)."""
    names = [layer.name for layer in model.layers]
    cut = names.index(name) + 1

    def front(x):
        for layer in model.layers[:cut]:
            x = layer(x)
        return x

    def back(h):
        for layer in model.layers[cut:-1]:
            h = layer(h)
        return helpers.logits_of(model.layers[-1], h)

    return front, back


# -- Grad-CAM --------------------------------------------------------------------------
@pytest.mark.parametrize("target", [None, 1, np.array([2, 0, 1])])
def test_grad_cam_matches_reference(target):
    model, x = gap_cnn(), images()
    activations, gradient = helpers.tape_values(*sequential_split(model, "last_conv"), x, target)
    reference = helpers.grad_cam_reference(activations, gradient)
    analyzer = kx.create_analyzer("grad_cam", model, upsample=False)
    np.testing.assert_allclose(analyzer.analyze(x, target), reference, rtol=1e-5, atol=1e-6)
    upsampled = kx.GradCAM(model).analyze(x, target)
    assert upsampled.shape == (3, 8, 8) and upsampled.dtype == np.float32
    np.testing.assert_allclose(
        upsampled, helpers.resize_reference(reference, (8, 8)), rtol=1e-5, atol=1e-6
    )


def test_grad_cam_pre_and_post_activation():
    fused, split = pre_post_pair()
    x = images((6, 6, 2))
    pre = helpers.tape_values(*sequential_split(split, "conv_pre"), x, 2)
    post = helpers.tape_values(*sequential_split(split, "relu_post"), x, 2)
    assert (pre[0] < 0).any()  # the pre-activation map really differs
    pre_map = kx.GradCAM(split, layer="conv_pre", upsample=False).analyze(x, 2)
    post_map = kx.GradCAM(split, upsample=False).analyze(x, 2)
    fused_map = kx.GradCAM(fused, upsample=False).analyze(x, 2)
    np.testing.assert_allclose(pre_map, helpers.grad_cam_reference(*pre), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(post_map, helpers.grad_cam_reference(*post), rtol=1e-5, atol=1e-6)
    # A fused Conv2D(activation="relu") is weighed after its ReLU, like relu_post.
    np.testing.assert_allclose(fused_map, post_map, rtol=1e-6, atol=1e-7)
    assert not np.allclose(pre_map, post_map)


def test_upsampling_is_bilinear_half_pixel_after_relu():
    model, x = gap_cnn(), images()
    small = kx.GradCAM(model, upsample=False).analyze(x, 0)
    large = kx.GradCAM(model).analyze(x, 0)
    assert small.shape == (3, 4, 4) and large.shape == (3, 8, 8)
    expected = tf.image.resize(small[..., None], (8, 8), method="bilinear")[..., 0].numpy()
    np.testing.assert_allclose(large, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(large, helpers.resize_reference(small, (8, 8)), rtol=1e-5, atol=1e-6)
    assert (small >= 0).all() and (large >= 0).all()


def test_softmax_is_bypassed():
    with_softmax, logits = gap_cnn(softmax=True), gap_cnn(softmax=False)
    x = images()
    np.testing.assert_allclose(
        kx.GradCAM(with_softmax).analyze(x, 1), kx.GradCAM(logits).analyze(x, 1), rtol=1e-6
    )
    kept = kx.GradCAM(with_softmax, strip_softmax=False).analyze(x, 1)
    assert not np.allclose(kept, kx.GradCAM(logits).analyze(x, 1))


def test_grad_cam_1d_model_gives_length_maps():
    model, x = conv1d_model(), images((12, 2))
    activations, gradient = helpers.tape_values(*sequential_split(model, "c2"), x, 1)
    reference = helpers.grad_cam_reference(activations, gradient)
    maps = kx.GradCAM(model).analyze(x, 1)
    assert maps.shape == (3, 12)
    np.testing.assert_allclose(
        maps, helpers.resize_reference(reference, (12,)), rtol=1e-5, atol=1e-6
    )
    assert kx.GradCAM(model, upsample=False).analyze(x, 1).shape == (3, 5)


def test_batch_size_and_input_type_invariance():
    model, x = gap_cnn(), images(batch=5)
    analyzer = kx.GradCAM(model)
    full = analyzer.analyze(x, 2)
    np.testing.assert_allclose(analyzer.analyze(x, 2, batch_size=2), full, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(analyzer.analyze(tf.constant(x), 2), full, rtol=1e-6, atol=1e-7)


# -- CAM -------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [None, 2, np.array([0, 1, 2])])
def test_cam_equals_gap_weight_formula(target):
    model, x = gap_cnn(), images()
    front, back = sequential_split(model, "last_conv")
    activations = front(tf.constant(x)).numpy()
    logits = back(tf.constant(activations)).numpy()
    t = np.argmax(logits, 1) if target is None else np.broadcast_to(target, (3,))
    kernel = model.get_layer("head").kernel.numpy()
    reference = np.einsum("bhwc,cb->bhw", activations, kernel[:, t])  # sum_c W[c,t] A_c
    maps = kx.CAM(model, upsample=False).analyze(x, target)
    np.testing.assert_allclose(maps, reference, rtol=1e-6, atol=1e-6)
    upsampled = kx.CAM(model).analyze(x, target)
    expected = tf.image.resize(maps[..., None], (8, 8), method="bilinear")[..., 0].numpy()
    np.testing.assert_array_equal(upsampled, expected)


def test_cam_is_grad_cam_times_area_on_gap_models():
    """On GAP + Dense, d y_t / d A_c = W[c,t] / (H W): Grad-CAM = relu(CAM) / (H W)."""
    model, x = gap_cnn(), images()
    cam_map = kx.CAM(model, upsample=False).analyze(x, 1)
    grad_map = kx.GradCAM(model, upsample=False).analyze(x, 1)
    np.testing.assert_allclose(grad_map * 16, helpers.relu(cam_map), rtol=1e-5, atol=1e-6)
    assert (cam_map < 0).any()  # CAM is not rectified


def test_cam_rejects_models_without_gap_head():
    with pytest.raises(
        ValueError,
        match=r"CAM \(Zhou et al\. 2016\) needs layer 'conv2d_\d+' to feed a global average "
        r"pooling followed by one Dense layer .* Use 'grad_cam'",
    ):
        kx.CAM(helpers.conv_sequential())
    with pytest.raises(ValueError, match=r"needs layer 'pool_a' to feed a global average"):
        kx.CAM(gap_cnn(), layer="pool_a")


# -- Grad-CAM++, LayerCAM, Score-CAM ---------------------------------------------------
@pytest.mark.parametrize(
    "name, reference",
    [("grad_cam_pp", helpers.grad_cam_pp_reference), ("layer_cam", helpers.layer_cam_reference)],
)
@pytest.mark.parametrize("layer", ["last_conv", "conv_a"])
def test_gradient_weighted_variants_match_references(name, reference, layer):
    model, x = gap_cnn(), images()
    activations, gradient = helpers.tape_values(*sequential_split(model, layer), x, 2)
    maps = kx.create_analyzer(name, model, layer=layer, upsample=False).analyze(x, 2)
    np.testing.assert_allclose(maps, reference(activations, gradient), rtol=1e-4, atol=1e-6)
    assert maps.max() > 0


@pytest.mark.parametrize("internal_batch_size", [None, 7, 1])
def test_score_cam_matches_reference(internal_batch_size):
    model, x = gap_cnn(), images(batch=2)
    front, back = sequential_split(model, "last_conv")
    activations = front(tf.constant(x)).numpy().astype(np.float64)
    t = np.argmax(back(front(tf.constant(x))).numpy(), 1)

    def scores_of(masked, b):
        return float(back(front(tf.constant(masked))).numpy()[0, t[b]])

    reference = helpers.score_cam_reference(activations, x, scores_of)
    analyzer = kx.ScoreCAM(model, internal_batch_size=internal_batch_size)
    maps = analyzer.analyze(x)
    np.testing.assert_allclose(
        maps, helpers.resize_reference(reference, (8, 8)), rtol=1e-4, atol=1e-6
    )


def test_score_cam_equals_the_papers_increase_of_confidence():
    """Algorithm 1 of Wang et al.: softmax over channels of score(x * H_k) - score(x_b)."""
    model, x = gap_cnn(), images(batch=2)
    front, back = sequential_split(model, "last_conv")
    activations = front(tf.constant(x)).numpy().astype(np.float64)
    logits = back(front(tf.constant(x))).numpy()
    t = np.argmax(logits, 1)
    zeros = np.zeros_like(x)  # the baseline input x_b
    baseline_logits = back(front(tf.constant(zeros))).numpy()
    assert np.abs(baseline_logits[np.arange(2), t]).min() > 1e-3  # a real offset

    def scores_of(masked, b):
        return float(back(front(tf.constant(masked))).numpy()[0, t[b]])

    reference = helpers.score_cam_reference(
        activations, x, scores_of, baseline_scores=baseline_logits[np.arange(2), t]
    )
    maps = kx.ScoreCAM(model).analyze(x)
    np.testing.assert_allclose(
        maps, helpers.resize_reference(reference, (8, 8)), rtol=1e-4, atol=1e-6
    )


# -- guided Grad-CAM -------------------------------------------------------------------
@pytest.mark.parametrize("target", [None, 1])
def test_guided_grad_cam_is_the_product_of_its_parts(target):
    model, x = gap_cnn(), images()
    result = kx.GuidedGradCAM(model, layer="last_conv").analyze(x, target)
    guided = kx.GuidedBackprop(model).analyze(x, target)
    maps = kx.GradCAM(model, layer="last_conv").analyze(x, target)
    assert result.shape == x.shape
    np.testing.assert_array_equal(result, guided * maps[..., None])


# -- layer search ----------------------------------------------------------------------
def test_default_layer_in_sequential_and_functional_models():
    assert kx.GradCAM(gap_cnn()).layer.name == "last_conv"
    sequential = helpers.conv_sequential()
    assert kx.GradCAM(sequential).layer is sequential.layers[2]
    analyzer = kx.GradCAM(functional_cnn())
    assert analyzer.layer.name == "top"
    assert [layer.name for layer in analyzer.spatial_layers()] == [
        "branch_a",
        "branch_b",
        "add",
        "top",
    ]


def nested_split(model, inner_name=None):
    backbone = model.get_layer("backbone")
    cut = [layer.name for layer in backbone.layers].index(inner_name) + 1

    def front(x):
        for layer in backbone.layers[:cut]:
            x = layer(x)
        return x

    def back(h):
        for layer in backbone.layers[cut:]:
            h = layer(h)
        return helpers.logits_of(model.get_layer("head"), model.get_layer("gap")(h))

    return front, back


@pytest.mark.parametrize("layer", [None, "bb_pool", "backbone", "object"])
def test_layer_inside_nested_backbone(layer):
    model, x = backbone_model(), images()
    inner = {None: "bb_conv2", "bb_pool": "bb_pool", "backbone": "bb_conv2", "object": "bb_conv1"}
    if layer == "object":
        layer = model.get_layer("backbone").get_layer("bb_conv1")
    analyzer = kx.GradCAM(model, layer=layer, upsample=False)
    expected_name = (
        "backbone"
        if layer == "backbone"
        else inner[layer if layer is None or isinstance(layer, str) else "object"]
    )
    assert analyzer.layer.name == expected_name
    activations, gradient = helpers.tape_values(
        *nested_split(model, inner[layer if isinstance(layer, str) or layer is None else "object"]),
        x,
        0,
    )
    np.testing.assert_allclose(
        analyzer.analyze(x, 0),
        helpers.grad_cam_reference(activations, gradient),
        rtol=1e-5,
        atol=1e-6,
    )


def test_cam_on_nested_backbone_and_head_conv_after_it():
    model, x = backbone_model(), images()
    activations = nested_split(model, "bb_conv2")[0](tf.constant(x)).numpy()
    kernel = model.get_layer("head").kernel.numpy()
    np.testing.assert_allclose(
        kx.CAM(model, upsample=False).analyze(x, 1),
        np.einsum("bhwc,c->bhw", activations, kernel[:, 1]),
        rtol=1e-6,
        atol=1e-6,
    )
    assert kx.GradCAM(backbone_model(head_conv=True)).layer.name == "head_conv"


# -- errors ----------------------------------------------------------------------------
def test_model_without_spatial_layer_is_rejected():
    with pytest.raises(
        ValueError,
        match=r"GradCAM needs a layer with a spatial output, \(batch, length, channels\), "
        r"\(batch, height, width, channels\) or \(batch, depth, height, width, channels\), "
        r"but model 'dense_sequential' has none",
    ):
        kx.GradCAM(helpers.dense_sequential())


def test_wrong_layer_name_lists_candidates():
    with pytest.raises(
        ValueError,
        match=r"No layer named 'last_cnov' in model 'gap_cnn' \(nested models included\)\. "
        r"Received: layer='last_cnov'\. Layers with a spatial output: "
        r"\['conv_a', 'pool_a', 'last_conv'\]\.",
    ):
        kx.LayerCAM(gap_cnn(), layer="last_cnov")
    with pytest.raises(
        ValueError,
        match=r"Layer 'head' cannot be used by GradCAM: its output shape \(None, 3\) has no "
        r"spatial axes .* Layers with a spatial output: \['conv_a', 'pool_a', 'last_conv'\]",
    ):
        kx.GradCAM(gap_cnn(), layer="head")
    with pytest.raises(
        ValueError,
        match=r"Layers with a spatial output: \['bb_conv1', 'bb_pool', 'backbone', "
        r"'bb_conv2'\]",
    ):
        kx.GradCAM(backbone_model(), layer="nope")


def test_bad_arguments_are_rejected(subclassed_model):
    with pytest.warns(
        FutureWarning, match=r"GradCAM: the parameter at_layer= is now called layer="
    ):
        assert kx.GradCAM(gap_cnn(), at_layer="last_conv").layer.name == "last_conv"
    with pytest.raises(ValueError, match=r"internal_batch_size must be a positive int"):
        kx.ScoreCAM(gap_cnn(), internal_batch_size=0)
    with pytest.raises(ValueError, match=r"needs upsample=True\. Received: upsample=False"):
        kx.GuidedGradCAM(gap_cnn(), upsample=False)
    with pytest.raises(TypeError, match=r"subclassed model with no layer graph"):
        kx.GradCAM(subclassed_model)


def test_registry_names_and_no_retrace():
    model, x = gap_cnn(), images()
    for name in ["cam", "grad_cam", "grad_cam_pp", "layer_cam", "score_cam", "guided_grad_cam"]:
        assert name in kx.analyzers.names()
        analyzer = kx.create_analyzer(name, model)
        result = analyzer.analyze(x)
        assert result.shape == (x.shape if name == "guided_grad_cam" else (3, 8, 8))
        assert np.isfinite(result).all()
    analyzer = kx.GradCAM(model)
    analyzer.analyze(x, 1)
    analyzer.analyze(x + 1, 2)
    assert helpers.tracing_counts(analyzer) == {"index": 1}


def unet_with_head(head, seed=0):
    """The U-Net's decoder with other heads: the logits convolution stays the output itself."""
    helpers.seeded(seed)
    inputs = keras.Input((8, 8, 2))
    e1 = layers.Conv2D(4, 3, padding="same", activation="relu", name="enc")(inputs)
    p = layers.MaxPooling2D(name="pool")(e1)
    b = layers.Conv2D(6, 3, padding="same", activation="relu", name="bottleneck")(p)
    u = layers.UpSampling2D(name="up")(b)
    c = layers.Concatenate(name="skip")([u, e1])
    d = layers.Conv2D(4, 3, padding="same", activation="relu", name="decoder")(c)
    if head == "fused sigmoid":
        outputs = layers.Conv2D(1, 1, activation="sigmoid", name="mask_logits")(d)
    elif head == "upsampled logits":  # logits at half resolution, resized to the input
        half = layers.MaxPooling2D(name="down")(d)
        logits = layers.Conv2D(2, 1, name="mask_logits")(half)
        outputs = layers.UpSampling2D(interpolation="bilinear", name="resize")(logits)
    elif head == "reshape softmax":  # the older (B, H*W, classes) layout
        logits = layers.Conv2D(2, 1, name="mask_logits")(d)
        outputs = layers.Softmax()(layers.Reshape((64, 2))(logits))
    else:  # "relu logits": a rectified map is still the prediction
        outputs = layers.Conv2D(2, 1, activation="relu", name="mask_logits")(d)
    return helpers.randomize_biases(keras.Model(inputs, outputs, name="unet_" + head[:4]))


@pytest.mark.parametrize(
    "head", ["fused sigmoid", "upsampled logits", "reshape softmax", "relu logits"]
)
def test_default_layer_is_never_the_output_itself(head):
    model = unet_with_head(head)
    for analyzer in (kx.GradCAM(model), kx.GradCAM(model, strip_softmax=False)):
        assert analyzer.layer.name == "decoder"
    # an explicit choice of the logits convolution is still allowed (with a fused
    # sigmoid its output is the probability, which does not feed the logits)
    strip = head != "fused sigmoid"
    chosen = kx.GradCAM(model, layer="mask_logits", strip_softmax=strip).layer
    assert chosen.name == "mask_logits"


def test_default_layer_keeps_the_last_conv_of_a_classifier():
    """A conv whose output reaches the logits through a Dense is not the output."""
    helpers.seeded(0)
    inputs = keras.Input((8, 8, 2))
    h = layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = layers.Flatten()(layers.MaxPooling2D()(h))
    model = keras.Model(inputs, layers.Dense(3, activation="sigmoid")(h))
    assert kx.GradCAM(model).layer.name == "conv"


def test_cam_default_layer_is_what_the_global_average_pooling_reads():
    """CAM weighs the maps its GAP head reads (a max pooling here); Grad-CAM the last conv."""
    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, name="head"),
        ]
    )
    assert kx.CAM(model).layer.name == "pool"
    assert kx.GradCAM(model).layer.name == "conv"
    x = helpers.data((8, 8, 2), batch=2)
    pooled = keras.Model(model.inputs, model.get_layer("pool").output)(x).numpy()
    weights = model.get_layer("head").kernel.numpy()[:, 1]
    expected = helpers.resize_reference((pooled * weights).sum(-1), (8, 8))
    np.testing.assert_allclose(kx.CAM(model).analyze(x, target=1), expected, rtol=1e-5, atol=1e-6)
