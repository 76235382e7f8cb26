"""Class activation maps: CAM, Grad-CAM, Grad-CAM++, LayerCAM, Score-CAM, guided Grad-CAM.

Every method weighs the channels ``A_c`` of one layer's output (by default the
output of the last convolutional block: the last layer with a spatial output
that is not a pooling, resizing, cropping or bookkeeping layer nor the explained
output itself, searched inside nested models too) and returns one map per
sample. The layer is an ordinary value of the analysis graph (nested models are
inlined by :class:`keras_explain.graph.Plan`), so its activations and gradients
come from one run of the model through
:class:`~keras_explain.analyzers.backprop.Backpropagation`; no Keras sub-model
is built, which is what breaks on nested transfer-learning models elsewhere.

Maps are ``(B, H, W)`` (``(B, L)`` for 1-D convolutional models, ``(B, D, H, W)``
for volumes) at the input resolution: the map is rectified first (unless
``rectify=False``; CAM never is), then upsampled with half-pixel centers,
bilinearly by default (``interpolation="nearest"`` or ``"bicubic"`` otherwise;
each is separable, so volumes are resized axis by axis). ``upsample=False`` keeps
the layer's resolution. Maps are not normalized.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_explain import _batching, _validate, graph
from keras_explain._spatial import INTERPOLATIONS, resize
from keras_explain.analyzers.backprop import Backpropagation
from keras_explain.analyzers.gradient import GuidedBackprop
from keras_explain.analyzers.registry import register


def _role(layer) -> str | None:
    """The layer's role in the layer table: ``"global"``, ``"resampling"``, ``"bookkeeping"``.

    Resampling layers (pooling, upsampling, resizing, padding, cropping) and
    bookkeeping layers (Dropout, Identity, Concatenate, reshapes) are never the
    default layer: they only resample or move the maps of the layer before.
    """
    entry = graph.entry_of(layer)
    return None if entry is None else entry.role


def _global_average_pooling(layer) -> bool:
    """Whether the layer is a global average pooling (CAM's head reads one)."""
    entry = graph.entry_of(layer)
    return entry is not None and entry.role == "global" and entry.kind == "sum_pool"


class LayerMaps(Backpropagation):
    """Base of the CAM family: find the layer, compute its maps, upsample.

    Subclasses implement :meth:`combine`, the map before rectification.

    Args:
        model: A Functional or Sequential Keras model (nested models work).
        layer: The layer whose output channels are weighed: a name or a layer
            object (nested models included). Default: :meth:`default_layer`.
        upsample: Resize the maps to the input resolution (default True).
        interpolation: How: ``"bilinear"`` (default; linear along each axis),
            ``"nearest"`` or ``"bicubic"``, half-pixel centers.
        **kwargs: ``output_index``, ``output_layer``, ``strip_softmax``,
            ``neuron_selection_mode``.

    Raises:
        ValueError: If the model has no spatial layer, ``layer`` is unknown or
            not spatial, the maps cannot be upsampled to any input, or for an
            unknown ``interpolation``.
        TypeError: For a subclassed model without a layer graph.
    """

    requires_graph = True
    #: Apply a ReLU to the map before upsampling. Grad-CAM and its successors
    #: do unless given ``rectify=False`` (:class:`RectifiedMaps`); CAM never does.
    rectify = True

    def __init__(
        self,
        model,
        *,
        layer=None,
        upsample: bool = True,
        interpolation: str = "bilinear",
        **kwargs,
    ):
        self._layer_argument = layer
        self.upsample = bool(upsample)
        self.interpolation = _validate.one_of(interpolation, "interpolation", INTERPOLATIONS)
        super().__init__(model, **kwargs)
        self.returns_maps = True
        self._image_input = self._input_for_upsampling()

    # -- construction ------------------------------------------------------
    def attributed_values(self):
        """The chosen layer's output is the one value the maps are made of."""
        self.layer = self._select_layer(self._layer_argument)
        key = self.plan.output_key_of(self.layer)
        self._spatial_rank = len(self.plan.shape_of(key)) - 2
        return [key], [False]

    def spatial_layers(self) -> list[keras.Operation]:
        """Layers and raw ``keras.ops`` calls with a spatial output feeding the explained output.

        In graph order; raw bookkeeping ops (reshapes, slices) are left out.
        """
        upstream = self.plan.upstream(list(self.output_keys))[1]
        order = {key: index for index, step in enumerate(self.plan.steps) for key in step.outputs}
        found = []
        for layer in self.plan.layers:
            if not isinstance(layer, keras.layers.Layer) and self._bookkeeping(layer):
                continue
            key = self.plan.output_key_of(layer)
            if key in upstream and key in order and _is_spatial(self.plan.shape_of(key)):
                found.append((order[key], isinstance(layer, keras.Model), layer))
        found.sort(key=lambda item: (item[0], not item[1]))
        return [layer for _, _, layer in found]

    def _bookkeeping(self, layer) -> bool:
        """Whether the layer only moves values (Identity, Dropout, reshapes): its table role."""
        return _role(layer) == "bookkeeping"

    def default_layer(self, candidates: list[keras.Operation]) -> keras.Operation | None:
        """The last spatial layer that is not a pooling, resizing, cropping or bookkeeping layer.

        As in the Grad-CAM paper and Keras' Grad-CAM example: the output of the
        last convolutional block (VGG16's ``block5_conv3``, ResNet50's
        ``conv5_block3_out``, ConvNeXt's last residual ``add``), never the
        explained output itself (a segmentation network's final logits
        convolution), even when only resampling, reshaping or an element-wise
        activation separates it from the output (:meth:`explained_output_keys`):
        such a map would redraw the prediction, not explain it.
        """
        itself = self.explained_output_keys()
        for layer in reversed(candidates):
            if _role(layer) == "resampling" or self._bookkeeping(layer):
                continue
            if self.plan.output_key_of(layer) in itself:
                continue
            return layer
        return None

    def explained_output_keys(self) -> set:
        """The explained output and the values it is a mere copy of.

        Walks back from the explained output through single-input steps that
        only resample (pooling, upsampling, resizing, cropping, padding), move
        values (reshape, flatten) or apply an element-wise activation, so that a
        segmentation network's 1x1 logits convolution counts as the output
        whether it is followed by ``UpSampling2D``, a ``Reshape`` plus
        ``Softmax`` or a sigmoid.
        """
        keys = set()
        for key in self.output_keys:
            keys.add(key)
            step = self.plan.producer(key)
            while (
                step is not None
                and len(step.inputs) == 1
                and (
                    step.op.kind in ("reshape", "activation", "softmax")
                    or _role(step.op.layer) == "resampling"
                )
            ):
                key = step.inputs[0]
                keys.add(key)
                step = self.plan.producer(key)
        return keys

    def _select_layer(self, layer):
        candidates = self.spatial_layers()
        names = [item.name for item in candidates]
        name = type(self).__name__
        if layer is None:
            chosen = self.default_layer(candidates)
            if chosen is None:
                raise ValueError(
                    f"{name} needs a layer with a spatial output, (batch, length, "
                    "channels), (batch, height, width, channels) or (batch, depth, "
                    "height, width, channels), but model "
                    f"{self.model.name!r} has none feeding the explained output (nested "
                    "models included), apart from pooling, resizing or cropping layers "
                    "and the explained output itself. Use an input-attribution method "
                    "such as 'gradient' or 'integrated_gradients' instead."
                )
            return chosen
        if isinstance(layer, str) and not any(
            getattr(item, "name", None) == layer for item in self.plan.layers
        ):
            raise ValueError(
                f"No layer named {layer!r} in model {self.model.name!r} (nested models "
                f"included). Received: layer={layer!r}. Layers with a spatial output: "
                f"{names}."
            )
        found = self.plan.find_layer(layer, "layer")
        if not any(item is found for item in candidates):
            shape = self.plan.shape_of(self.plan.output_key_of(found))
            raise ValueError(
                f"Layer {found.name!r} cannot be used by {name}: its output shape "
                f"{shape} has no spatial axes (rank 3, 4 or 5 expected) or it does not "
                f"feed the explained output. Received: layer={layer!r}. Layers with a "
                f"spatial output: {names}."
            )
        if getattr(found, "data_format", "channels_last") == "channels_first":
            raise ValueError(
                f"Layer {found.name!r} uses data_format='channels_first'; {name} "
                "expects channels-last feature maps. Received: "
                f"layer={layer!r}. Pick a channels-last layer."
            )
        return found

    def _input_for_upsampling(self) -> int | None:
        """The model input whose spatial size the maps are resized to."""
        for position, spec in enumerate(self.plan.input_specs):
            channels = 0 if tf.as_dtype(spec.dtype).is_integer else 1
            if len(spec.shape) == self._spatial_rank + 1 + channels:
                return position
        if self.upsample:
            shapes = [tuple(spec.shape) for spec in self.plan.input_specs]
            raise ValueError(
                f"The maps of layer {self.layer.name!r} have {self._spatial_rank} spatial "
                f"axes but no input of model {self.model.name!r} has as many (input "
                f"shapes: {shapes}), so they cannot be upsampled to the input. Pass "
                "upsample=False to keep the layer's resolution."
            )
        return None

    # -- computation -------------------------------------------------------
    def combine(self, gradients: tf.Tensor, activations: tf.Tensor) -> tf.Tensor:
        """The map before rectification, ``(B, *spatial)``, from float32 values.

        Args:
            gradients: ``d score / d A``, shaped like the activations.
            activations: The layer output ``A``, ``(B, *spatial, C)``.
        """
        raise NotImplementedError

    def output_count(self, input_count: int) -> int:
        """One map per sample."""
        return 1

    def _input_sources(self) -> bool:
        return False  # the source is the layer's output

    def explain_batch(self, inputs, target, indices, seed, params):
        """The maps of one batch: :meth:`combine` of the layer's gradients and values."""
        gradients, sources = self.backward(inputs, target, indices)
        activations = tf.cast(sources[0], tf.float32)
        maps = self.combine(tf.cast(gradients[0], tf.float32), activations)
        return [self.finish_maps(maps, inputs)]

    def finish_maps(self, maps: tf.Tensor, inputs) -> tf.Tensor:
        """Rectify (if :attr:`rectify`), then upsample to the input resolution."""
        if self.rectify:
            maps = tf.nn.relu(maps)
        if not self.upsample:
            return maps
        return resize(maps[..., None], self.input_size(inputs), self.interpolation)[..., 0]

    def input_size(self, inputs) -> list:
        """The spatial size of the input the maps are resized to."""
        x = inputs[self._image_input]
        dynamic = tf.shape(x)
        return [
            x.shape[axis] if x.shape[axis] is not None else dynamic[axis]
            for axis in range(1, 1 + self._spatial_rank)
        ]

    def _spatial_axes(self):
        return list(range(1, 1 + self._spatial_rank))


class RectifiedMaps(LayerMaps):
    """Base of the CAM methods whose map is rectified: Grad-CAM and its successors.

    Args:
        model: A Functional or Sequential Keras model (nested models work).
        rectify: Apply a ReLU to the map before upsampling (default True, as in
            the papers); False returns the signed map.
        **kwargs: The arguments of :class:`LayerMaps`.

    Raises:
        TypeError: If ``rectify`` is not a bool.
    """

    def __init__(self, model, *, rectify: bool = True, **kwargs):
        self.rectify = _validate.boolean(rectify, "rectify", type(self).__name__)
        super().__init__(model, **kwargs)


def _is_spatial(shape) -> bool:
    """Whether a layer output has 1 to 3 spatial axes, not all of size 1."""
    if shape is None or len(shape) not in (3, 4, 5):
        return False
    return not all(dim == 1 for dim in shape[1:-1])


def _weighted_sum(weights: tf.Tensor, activations: tf.Tensor) -> tf.Tensor:
    """``sum_c weights[b, c] * A[b, ..., c]`` for per-channel weights ``(B, C)``."""
    shape = [-1] + [1] * (activations.shape.rank - 2) + [activations.shape[-1]]
    return tf.reduce_sum(tf.reshape(weights, shape) * activations, axis=-1)


_MAP_ARGS = """    Args:
        model: A Functional or Sequential Keras model (nested models work).
        layer: The layer whose channels are weighed: a name or a layer object,
            nested models included. Default: the output of the last
            convolutional block, the last layer with a spatial output ``(B, L, C)``,
            ``(B, H, W, C)`` or ``(B, D, H, W, C)`` feeding the explained output
            that is not a pooling, resizing, cropping or bookkeeping layer nor the
            explained output itself (VGG16: ``block5_conv3``; ResNet50:
            ``conv5_block3_out``).
        upsample: Resize the maps to the input resolution (default True); False
            keeps the layer's.
        interpolation: How the maps are upsampled, half-pixel centers:
            ``"bilinear"`` (default; linear along each axis, trilinear on
            volumes), ``"nearest"`` (Captum's default) or ``"bicubic"``.
        rectify: Apply a ReLU to the map before upsampling (default True, as in
            the paper); False returns the signed map, negative where the channels
            lower the score (Captum's ``LayerGradCam(relu_attributions=False)``).
        **kwargs: ``output_index``, ``output_layer``, ``strip_softmax``,
            ``neuron_selection_mode``.

"""

_MAP_DOC = (
    _MAP_ARGS
    + """    Returns:
        ``analyze(x, target)`` returns float32 maps ``(B, H, W)`` (``(B, L)`` for
        1-D models, ``(B, D, H, W)`` for volumes), not normalized.

    Raises:
        ValueError: If the model has no spatial layer, ``layer`` is unknown or
            not spatial (the message lists the candidates), the maps cannot be
            upsampled to the input, or ``interpolation`` is unknown.
        TypeError: For a subclassed model without a layer graph.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([
        ...     keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
        ...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
        >>> kx.{name}(model).analyze(np.ones((2, 8, 8, 1), "float32")).shape
        (2, 8, 8)
"""
)


def _map_doc(summary: str, name: str) -> str:
    """A CAM-family class docstring: ``summary`` plus the shared Args/Returns/Raises/Example."""
    return summary + "\n\n" + _MAP_DOC.format(name=name)


@register("grad_cam")
class GradCAM(RectifiedMaps):  # noqa: D101  (docstring built by _map_doc)
    __doc__ = _map_doc(
        """Grad-CAM (Selvaraju et al. 2017, arXiv:1610.02391).

    ``relu(sum_c mean_hw(d y_t / d A_c) * A_c)``: each channel of the layer
    output is weighted by the spatial mean of the target score's gradient.
    The layer output is the layer's own output, so for
    ``Conv2D(..., activation="relu")`` it is after the ReLU; to weigh the
    pre-activation map use a convolution without activation followed by a
    ``ReLU`` layer and pick the convolution.""",
        "GradCAM",
    )

    def combine(self, gradients, activations):
        """``sum_c mean_hw(g_c) * A_c``."""
        weights = tf.reduce_mean(gradients, axis=self._spatial_axes())
        return _weighted_sum(weights, activations)


@register("grad_cam_pp")
class GradCAMPlusPlus(RectifiedMaps):  # noqa: D101  (docstring built by _map_doc)
    __doc__ = _map_doc(
        """Grad-CAM++ (Chattopadhay et al. 2018, arXiv:1710.11063).

    With ``g = d y_t / d A`` and the closed form for an exponential score
    ``exp(y_t)``, as in the authors' code:
    ``alpha = g**2 / (2 g**2 + sum_ab(A) * g**3)`` (0 where the denominator is
    0), ``w_c = sum_ab(alpha * relu(g))`` and the map
    ``relu(sum_c w_c * A_c)``. The closed form multiplies every weight of a
    sample by ``exp(y_t)``; that positive factor is dropped (as
    pytorch-grad-cam does), since it only scales the map and overflows
    float32 for scores above 88.""",
        "GradCAMPlusPlus",
    )

    def combine(self, gradients, activations):
        """``sum_c w_c * A_c`` with the Grad-CAM++ weights."""
        axes = self._spatial_axes()
        squared = tf.square(gradients)
        total = tf.reduce_sum(activations, axis=axes, keepdims=True)
        denominator = 2.0 * squared + total * squared * gradients
        denominator = tf.where(denominator != 0.0, denominator, tf.ones_like(denominator))
        alpha = squared / denominator
        weights = tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=axes)
        return _weighted_sum(weights, activations)


@register("layer_cam")
class LayerCAM(RectifiedMaps):  # noqa: D101  (docstring built by _map_doc)
    __doc__ = _map_doc(
        """LayerCAM (Jiang et al. 2021, IEEE TIP 30, doi:10.1109/TIP.2021.3089943).

    ``relu(sum_c relu(d y_t / d A_c) * A_c)``: the weights are per position,
    not per channel, which keeps fine detail on shallow layers.""",
        "LayerCAM",
    )

    def combine(self, gradients, activations):
        """``sum_c relu(g_c) * A_c``, position by position."""
        return tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1)


@register("cam")
class CAM(LayerMaps):
    """Class activation mapping (Zhou et al. 2016, arXiv:1512.04150).

    For a model whose layer feeds a global average pooling followed by one
    ``Dense`` layer producing the explained output, the map of target ``t``
    is ``sum_c W[c, t] * A_c``, the paper's formula: not rectified (negative
    evidence stays visible), then upsampled. The weights ``W[c, t]`` are read
    as the gradient of the target score w.r.t. the pooled features, which is
    exactly the Dense kernel's column for an index target and generalizes it
    to ``"all"`` and callable targets.

    Args:
        model: A Functional or Sequential Keras model (nested models work).
        layer: The layer whose channels are weighed: a name or a layer object,
            nested models included. Default: the output of the last
            convolutional block, the last layer with a spatial output ``(B, L, C)``,
            ``(B, H, W, C)`` or ``(B, D, H, W, C)`` feeding the explained output
            that is not a pooling, resizing, cropping or bookkeeping layer nor the
            explained output itself (VGG16: ``block5_conv3``; ResNet50:
            ``conv5_block3_out``).
        upsample: Resize the maps to the input resolution (default True); False
            keeps the layer's.
        interpolation: How the maps are upsampled, half-pixel centers:
            ``"bilinear"`` (default; linear along each axis, trilinear on
            volumes), ``"nearest"`` (Captum's default) or ``"bicubic"``.
        **kwargs: ``output_index``, ``output_layer``, ``strip_softmax``,
            ``neuron_selection_mode``.

    Returns:
        ``analyze(x, target)`` returns float32 maps ``(B, H, W)`` (``(B, L)`` for
        1-D models, ``(B, D, H, W)`` for volumes), not normalized.

    Raises:
        ValueError: If the model has no spatial layer, ``layer`` is unknown or
            not spatial (the message lists the candidates), the maps cannot be
            upsampled to the input, or ``interpolation`` is unknown.
        ValueError: If the layer is not followed by global average pooling
            and one Dense layer producing the explained output (use
            ``grad_cam`` for other architectures).
        TypeError: For a subclassed model without a layer graph.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([
        ...     keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
        ...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
        >>> kx.CAM(model).analyze(np.ones((2, 8, 8, 1), "float32")).shape
        (2, 8, 8)
    """

    rectify = False

    def default_layer(self, candidates):
        """The layer whose maps the head's global average pooling reads (Zhou et al. 2016).

        Falls back to the last convolutional block (:meth:`LayerMaps.default_layer`)
        when the explained output is not a Dense layer after such a pooling.
        """
        if self.output_key is None:  # several outputs: the heads' layer is unclear
            return super().default_layer(candidates)
        step = self.plan.producer(self.output_key)  # the Dense head
        if step is not None and step.op.kind == "linear":
            step = self.plan.producer(step.inputs[0])
        while step is not None and step.op.kind == "reshape":
            step = self.plan.producer(step.inputs[0])
        if step is not None and _global_average_pooling(step.op.layer):
            for layer in candidates:
                if self.plan.output_key_of(layer) == step.inputs[0]:
                    return layer
        return super().default_layer(candidates)

    def attributed_values(self):
        """The layer's output and the pooled features after it (the head's input)."""
        keys, embedded = super().attributed_values()
        return keys + [self._pooled_key(keys[0])], embedded + [False]

    def _pooled_key(self, key):
        """The global-average-pooled features after ``key``; checks the head."""
        chain, current = [], key
        if self.output_key is None:
            raise ValueError(
                f"CAM (Zhou et al. 2016) reads the weights of one Dense head; model "
                f"{self.model.name!r} is explained on several outputs together "
                f"(output_index={self.output_index!r}). Received: several outputs. Use "
                "'grad_cam', which sums the heads' gradients."
            )
        toward_output = self.plan.upstream([self.output_key])[0]  # other heads are ignored
        while current != self.output_key and len(chain) < 16:
            consumers = [step for step in self.plan.consumers(current) if step in toward_output]
            if len(consumers) != 1:
                break
            chain.append(consumers[0])
            current = consumers[0].outputs[0]
            if consumers[0].op.kind == "linear":
                break
        kinds = [step.op.name for step in chain]
        pooled = chain[0] if chain else None
        head = chain[-1] if chain else None
        if (
            pooled is None
            or not _global_average_pooling(pooled.op.layer)
            or head is pooled
            or head.op.kind != "linear"
            or not isinstance(head.op.layer, keras.layers.Dense)
            or head.outputs[0] != self.output_key
            or any(step.op.kind != "reshape" for step in chain[1:-1])
        ):
            raise ValueError(
                f"CAM (Zhou et al. 2016) needs layer {self.layer.name!r} to feed a "
                "global average pooling followed by one Dense layer that produces the "
                f"explained output; in model {self.model.name!r} it is followed by "
                f"{kinds or 'several branches'}. Use 'grad_cam', which generalizes CAM "
                "to any architecture."
            )
        return pooled.outputs[0]

    def explain_batch(self, inputs, target, indices, seed, params):
        """``sum_c W[c, t] A_c``, ``W`` read as the gradient at the pooled features."""
        gradients, sources = self.backward(inputs, target, indices)
        activations = tf.cast(sources[0], tf.float32)
        weights = tf.reshape(tf.cast(gradients[1], tf.float32), (tf.shape(activations)[0], -1))
        return [self.finish_maps(_weighted_sum(weights, activations), inputs)]


@register("score_cam")
class ScoreCAM(RectifiedMaps):
    """Score-CAM (Wang et al. 2020, arXiv:1910.01279).

    Each channel ``A_k`` is upsampled to the input, min-max normalized per
    sample to ``[0, 1]`` (a constant channel gives an all-zero mask) and
    multiplies the input; the weights are the softmax **over channels** of
    the target score (the logit, softmax stripped) of the masked inputs, and
    the map is ``relu(sum_k w_k * A_k)``. The paper's "increase of
    confidence" subtracts the score of a baseline input, the same for every
    channel, which the softmax over channels ignores. Choice, as in
    pytorch-grad-cam: the softmax runs over channels of the target score,
    not over classes (the authors' code weighs channels by the class
    probability); it works for any target, callables and regression
    outputs included. All masked inputs of a batch run through the model in
    large batches inside one compiled function.

    Faster Score-CAM (``max_n``, tf-keras-vis' ``max_N``): only the ``max_n``
    channels of each sample whose activation maps have the largest variance
    (at the layer's resolution) mask the input, and the map is the weighted
    sum of those channels alone, with the softmax over them; ``C / max_n``
    times fewer forward passes.

    Args:
        model: A Functional or Sequential Keras model (nested models work).
        layer: The layer whose channels are weighed: a name or a layer object,
            nested models included. Default: the output of the last
            convolutional block, the last layer with a spatial output ``(B, L, C)``,
            ``(B, H, W, C)`` or ``(B, D, H, W, C)`` feeding the explained output
            that is not a pooling, resizing, cropping or bookkeeping layer nor the
            explained output itself (VGG16: ``block5_conv3``; ResNet50:
            ``conv5_block3_out``).
        upsample: Resize the maps to the input resolution (default True); False
            keeps the layer's.
        interpolation: How the maps and the masks are upsampled, half-pixel
            centers: ``"bilinear"`` (default; linear along each axis, trilinear
            on volumes), ``"nearest"`` (Captum's default) or ``"bicubic"``.
        rectify: Apply a ReLU to the map before upsampling (default True, as in
            the paper); False returns the signed map, negative where the channels
            lower the score (Captum's ``LayerGradCam(relu_attributions=False)``).
        internal_batch_size: Masked inputs per forward pass (default: as many
            as fit in :func:`keras_explain.config.memory_budget`).
        max_n: Faster Score-CAM: mask with the ``max_n`` channels of largest
            variance only (default None: every channel, plain Score-CAM).
        **kwargs: ``output_index``, ``output_layer``, ``strip_softmax``,
            ``neuron_selection_mode``.

    Returns:
        ``analyze(x, target)`` returns float32 maps ``(B, H, W)`` (``(B, L)`` for
        1-D models, ``(B, D, H, W)`` for volumes), not normalized.

    Raises:
        ValueError: If the model has no spatial layer, ``layer`` is unknown or
            not spatial (the message lists the candidates), the maps cannot be
            upsampled to the input, or ``interpolation`` is unknown.
        ValueError: For a bad ``internal_batch_size``, a ``max_n`` that is not
            None or an int from 1 to the layer's channels, an integer input (it
            cannot be masked) or ``upsample=False`` (masks need the input
            resolution).
        TypeError: For a subclassed model without a layer graph.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([
        ...     keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
        ...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
        >>> kx.ScoreCAM(model).analyze(np.ones((2, 8, 8, 1), "float32")).shape
        (2, 8, 8)
    """

    def __init__(
        self,
        model,
        *,
        internal_batch_size: int | None = None,
        max_n: int | None = None,
        **kwargs,
    ):
        self.internal_batch_size = _validate.internal_batch_size(internal_batch_size)
        self.max_n = _validate.optional_positive_int(
            max_n, "max_n", "every channel (plain Score-CAM)"
        )
        if kwargs.get("upsample") is False:
            raise ValueError(
                "ScoreCAM masks the input with upsampled channels, so it needs "
                "upsample=True. Received: upsample=False."
            )
        super().__init__(model, **kwargs)
        spec = self.plan.input_specs[self._image_input]
        if tf.as_dtype(spec.dtype).is_integer:
            raise ValueError(
                f"ScoreCAM multiplies the input by masks, impossible for the integer "
                f"input {self._image_input} of model {self.model.name!r}. Use grad_cam."
            )
        self._channels = self.plan.shape_of(self.source_keys[0])[-1]
        if self.max_n is not None and self.max_n > self._channels:
            raise ValueError(
                f"ScoreCAM: max_n must be at most the {self._channels} channels of layer "
                f"{self.layer.name!r}. Received: max_n={max_n!r}. Pass a smaller max_n, "
                "or None for every channel."
            )

    def explain_batch(self, inputs, target, indices, seed, params):
        """Softmax over channels of the masked inputs' scores, then the weighted map."""
        output, values = self.forward(inputs)
        activations = tf.cast(values[self.source_keys[0]], tf.float32)
        if self.max_n is not None and self.max_n < self._channels:
            activations = self.top_variance_channels(activations)
        target, indices, _ = self.fixed_target(inputs, target, indices, output)
        scores = self.masked_scores(inputs, activations, target, indices)
        weights = tf.nn.softmax(scores, axis=1)
        return [self.finish_maps(_weighted_sum(weights, activations), inputs)]

    def top_variance_channels(self, activations: tf.Tensor) -> tf.Tensor:
        """Faster Score-CAM: each sample's ``max_n`` channels of largest spatial variance.

        As tf-keras-vis' ``Scorecam(max_N=...)`` (``tf_keras_vis/scorecam.py``, lines
        106-113 at commit 8bb8392ae5894c91acdfacaa898088c6b0c7a522: ``reduce_std``
        over the spatial axes, ``top_k``, ``gather``), with one difference: it keeps
        the union over the batch of the samples' top channels (``tf.unique``), here
        each sample keeps its own, so a map does not depend on the other samples of
        its batch. Ties go to the lower channel index.

        Returns:
            ``(B, *spatial, max_n)``, the channels in decreasing variance.
        """
        variance = tf.math.reduce_variance(activations, axis=self._spatial_axes())
        _, chosen = tf.math.top_k(variance, k=self.max_n)  # (B, max_n)
        return tf.gather(activations, chosen, axis=-1, batch_dims=1)

    def masked_scores(self, inputs, activations, target, indices) -> tf.Tensor:
        """Target scores ``(B, C)`` of the input masked by each normalized channel.

        Channels are upsampled with :attr:`interpolation`, like the map.

        The masked inputs are the copies of :meth:`Analyzer.run_copies
        <keras_explain.analyzers.base.Analyzer.run_copies>` (copy ``k``: the input
        masked by channel ``k``), in passes of at most ``internal_batch_size`` rows
        (default: from the memory budget), inside one ``tf.while_loop``.
        """
        size = self.input_size(inputs)
        axes = self._spatial_axes()
        rank = activations.shape.rank

        def make(start, count):
            chosen = tf.range(start, start + count)
            masks = resize(tf.gather(activations, chosen, axis=-1), size, self.interpolation)
            low = tf.reduce_min(masks, axis=axes, keepdims=True)
            high = tf.reduce_max(masks, axis=axes, keepdims=True)
            masks = tf.math.divide_no_nan(masks - low, high - low)
            masks = tf.transpose(masks, [rank - 1] + list(range(rank - 1)))  # (count, B, ...)
            masked = [
                x[None] * tf.cast(masks[..., None], x.dtype)
                if position == self._image_input
                else _batching.copies(x, count)
                for position, x in enumerate(inputs)
            ]
            return masked, None

        def evaluate(flat, count):
            output, _ = self.forward(flat)
            return [self.scores(output, target, _batching.repeat(indices, count))]

        channels = activations.shape[-1]
        scores = self.run_copies(inputs, channels, make, evaluate, backward=False)
        return tf.transpose(scores)


@register("guided_grad_cam")
class GuidedGradCAM(GradCAM):  # noqa: D101  (docstring built from _MAP_ARGS)
    __doc__ = (
        """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times Grad-CAM.

    The guided-backpropagation attribution of the input multiplied by the
    Grad-CAM map upsampled to the input resolution (broadcast over
    channels); the result is shaped like the input. For a multi-input model
    only the input the map is resized to is multiplied; the others keep
    their guided-backpropagation attribution.

"""
        + _MAP_ARGS
        + """    Returns:
        ``analyze(x, target)`` returns float32 attributions shaped like ``x``.

    Raises:
        ValueError: If the model has no spatial layer, ``layer`` is unknown or
            not spatial (the message lists the candidates), the maps cannot be
            upsampled to the input, or ``interpolation`` is unknown.
        ValueError: For ``upsample=False`` (the product needs the input
            resolution).
        TypeError: For a subclassed model without a layer graph.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([
        ...     keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
        ...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
        >>> kx.GuidedGradCAM(model).analyze(np.ones((2, 8, 8, 1), "float32")).shape
        (2, 8, 8, 1)
    """
    )

    def __init__(self, model, **kwargs):
        if kwargs.get("upsample") is False:
            raise ValueError(
                "GuidedGradCAM multiplies guided backprop by the map at the input "
                "resolution, so it needs upsample=True. Received: upsample=False."
            )
        super().__init__(model, **kwargs)
        for own in ("layer", "upsample", "interpolation", "rectify"):
            kwargs.pop(own, None)
        self.guided = GuidedBackprop(model, **kwargs)
        self.returns_maps = False

    def output_count(self, input_count: int) -> int:
        """Shaped like the input(s)."""
        return input_count

    def explain_batch(self, inputs, target, indices, seed, params):
        """Guided backprop of the input times the upsampled Grad-CAM map."""
        maps = super().explain_batch(inputs, target, indices, seed, params)[0]
        result = list(self.guided.explain_batch(inputs, target, indices, seed, params))
        guided = result[self._image_input]
        if guided.shape.rank > maps.shape.rank:
            maps = maps[..., None]
        result[self._image_input] = guided * tf.cast(maps, guided.dtype)
        return result
