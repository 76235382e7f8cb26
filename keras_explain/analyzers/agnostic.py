"""LIME and KernelSHAP: local surrogate models, wrapping the ``lime`` and ``shap`` packages.

Both run on the host (the packages are numpy code) and evaluate the model
through :meth:`Perturbation.predict`: a Keras model in one compiled function,
a plain callable on large numpy batches. Images (``(B, H, W, C)``) are
explained over superpixels whose weights are painted back onto their pixels;
2-D inputs ``(B, features)`` are tabular. The packages' own explanation
objects are kept in ``analyzer.last_explanations`` (one per sample) for their
plots, and ``analyzer.last_timings`` says where the time went.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain.analyzers import superpixels
from keras_explain.analyzers.perturbed import Perturbation
from keras_explain.analyzers.registry import register


class _Surrogate(Perturbation):
    """Shared host-side machinery of LIME and KernelSHAP."""

    compiled = False
    extra = "lime"

    def __init__(self, model, *, samples, segmentation, segmentation_options, seed, **kwargs):
        if samples is not None and (not isinstance(samples, int | np.integer) or samples < 1):
            raise ValueError(f"samples must be a positive int. Received: samples={samples!r}.")
        superpixels.check_segmentation(segmentation)
        self.samples = None if samples is None else int(samples)
        self.segmentation = segmentation
        self.segmentation_options = segmentation_options
        self.last_explanations: list[Any] = []
        self.last_timings: dict[str, float] = {}
        super().__init__(model, seed=seed, **kwargs)

    def _explain(self, inputs, target, indices, seed):
        x = self.single_input(inputs)
        target, indices, _ = self.fixed_target(x, target, indices)
        self._target = target
        self.last_timings = {"segmentation": 0.0, "model": 0.0, "surrogate": 0.0}
        self.last_explanations = []
        seed = np.asarray(seed)
        random_seed = int((seed[0] * 1000003 + seed[1]) % (2**31 - 1))
        start = time.perf_counter()
        if x.shape.rank == 2:
            result = self._tabular(np.asarray(x), np.asarray(indices), random_seed)
        elif x.shape.rank == 4:
            began = time.perf_counter()
            labels = superpixels.segment(
                np.asarray(x), self.segmentation, self.segmentation_options, extra=self.extra
            )
            self.last_timings["segmentation"] = time.perf_counter() - began
            result = self._images(np.asarray(x), labels, np.asarray(indices), random_seed)
        else:
            raise ValueError(
                f"{type(self).__name__} explains tabular inputs (batch, features) and images "
                f"(batch, H, W, C). Received: inputs of shape {tuple(x.shape)}."
            )
        spent = time.perf_counter() - start
        timings = self.last_timings
        timings["surrogate"] = spent - timings["model"] - timings["segmentation"]
        return [tf.constant(result.astype(np.float32))]

    def score_function(self, index):
        """``f(rows) -> (n,)``: the fixed target score of numpy rows (timed)."""

        def score(rows):
            began = time.perf_counter()
            rows = np.asarray(rows, dtype=np.float32)
            outputs = tf.convert_to_tensor(self.predict(rows))
            tiled = tf.fill([len(rows)], tf.constant(index, tf.int64))
            scores = np.asarray(self.scores(outputs, self._target, tiled), np.float32)
            self.last_timings["model"] += time.perf_counter() - began
            return scores

        return score

    def masked(self, image, labels, baseline, keep):
        """Copies of ``image`` with the superpixels where ``keep == 0`` replaced."""
        mask = np.asarray(keep, np.float32)[:, labels][..., None]
        return baseline + mask * (image - baseline)


@register("lime")
class Lime(_Surrogate):
    """LIME (Ribeiro et al. 2016, arXiv:1602.04938), wrapping the ``lime`` package.

    Images ``(B, H, W, C)`` use ``lime_image.LimeImageExplainer`` over
    superpixels; each superpixel's surrogate weight is painted onto its pixels
    (all channels). 2-D inputs ``(B, features)`` use
    ``lime_tabular.LimeTabularExplainer`` in regression mode on the target
    score, fitted to ``training_data``; each feature gets its weight. The
    target is resolved once on the clean input and explained as a scalar.

    Args:
        model: A Keras model or a callable ``f(x) -> scores`` (e.g. a
            scikit-learn pipeline's ``predict_proba``).
        samples: Perturbed samples per input (default 1000).
        segmentation: Superpixels of images: ``"quickshift"`` (default, as
            lime), ``"slic"``, ``"felzenszwalb"``, a callable ``image -> (H, W)``
            labels, or a precomputed int label map ``(H, W)`` or ``(B, H, W)``.
        segmentation_options: Keyword arguments of the scikit-image function.
        baseline: Value of switched-off superpixels: None (lime's default, each
            superpixel's mean colour; the image mean for non-RGB images) or a
            number.
        training_data: ``(n, features)`` array for tabular inputs (required).
        kernel_width: Width of lime's exponential kernel (lime's defaults: 0.25
            for images, ``0.75 * sqrt(features)`` for tabular data).
        explainer_options: More keyword arguments of the lime explainer, e.g.
            ``{"discretize_continuous": True}`` (default False here, so tabular
            weights are slopes on standardized features).
        seed: Seed; the same seed gives the same result.
        **kwargs: ``internal_batch_size``, ``progress``, ``output_index``,
            ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns weights shaped like x. ``last_explanations``
        holds lime's explanation objects (label 0 for images, 1 for tabular)
        and ``last_timings`` the seconds spent in segmentation, the model and
        lime itself (sampling and the surrogate fit).

    Raises:
        ImportError: If lime (or scikit-image) is missing:
            ``pip install "keras-explain[lime]"``.
        ValueError: For tabular inputs without ``training_data``, or inputs
            that are neither tabular nor images.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> data = np.random.default_rng(0).normal(size=(50, 4))
        >>> kx.Lime(model, samples=200, training_data=data, seed=0).analyze(data[:2]).shape
        (2, 4)
    """

    def __init__(
        self,
        model,
        *,
        samples: int = 1000,
        segmentation: Any = "quickshift",
        segmentation_options: dict | None = None,
        baseline: float | None = None,
        training_data: Any = None,
        kernel_width: float | None = None,
        explainer_options: dict | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        self.baseline = baseline
        self.training_data = (
            None if training_data is None else np.asarray(training_data, np.float32)
        )
        self.kernel_width = kernel_width
        self.explainer_options = dict(explainer_options or {})
        super().__init__(
            model,
            samples=samples,
            segmentation=segmentation,
            segmentation_options=segmentation_options,
            seed=seed,
            **kwargs,
        )

    def _tabular(self, x, indices, seed):
        lime_tabular = superpixels.require("lime.lime_tabular", "lime", "Lime")
        _check_reference_rows(
            self.training_data, x, "Lime on tabular inputs needs training_data", "training_data"
        )
        options = {"discretize_continuous": False, **self.explainer_options}
        explainer = lime_tabular.LimeTabularExplainer(
            self.training_data,
            mode="regression",
            kernel_width=self.kernel_width,
            random_state=seed,
            **options,
        )
        result = np.zeros_like(x)
        for row, (values, index) in enumerate(zip(x, indices)):
            explanation = explainer.explain_instance(
                values,
                self.score_function(index),
                num_features=x.shape[1],
                num_samples=self.samples,
            )
            self.last_explanations.append(explanation)
            for feature, weight in explanation.local_exp[1]:
                result[row, feature] = weight
        return result

    def _images(self, x, labels, indices, seed):
        lime_image = superpixels.require("lime.lime_image", "lime", "Lime")
        explainer = lime_image.LimeImageExplainer(
            kernel_width=self.kernel_width or 0.25, random_state=seed, **self.explainer_options
        )
        result = np.zeros_like(x)
        for row, (image, segments, index) in enumerate(zip(x, labels, indices)):
            hide = self.baseline
            if hide is None and image.shape[-1] != 3:
                hide = float(image.mean())
            score = self.score_function(index)
            count = int(segments.max()) + 1
            with self._quiet(lime_image):
                explanation = explainer.explain_instance(
                    image,
                    lambda rows, score=score: score(rows)[:, None],
                    labels=(0,),
                    hide_color=hide,
                    num_features=count,
                    num_samples=self.samples,
                    batch_size=self.samples,
                    segmentation_fn=lambda _, s=segments: s,
                    random_seed=seed,
                )
            self.last_explanations.append(explanation)
            weights = np.zeros(count, np.float32)
            for segment, weight in explanation.local_exp[0]:
                weights[segment] = weight
            result[row] = superpixels.paint(weights, segments)[..., None]
        return result

    @contextlib.contextmanager
    def _quiet(self, module):
        """Silence lime's per-image tqdm bar unless ``progress=True``."""
        original = getattr(module, "tqdm", None)
        if self.progress or original is None:
            yield
            return
        module.tqdm = lambda iterable, *args, **kwargs: iterable
        try:
            yield
        finally:
            module.tqdm = original


@register("kernel_shap")
class KernelShap(_Surrogate):
    """KernelSHAP (Lundberg & Lee 2017, arXiv:1705.07874), wrapping ``shap.KernelExplainer``.

    Tabular inputs ``(B, features)`` are explained against ``background``
    data: the values sum to ``f_t(x) - mean f_t(background)``. Images
    ``(B, H, W, C)`` are explained over superpixels, a switched-off superpixel
    taking the ``baseline`` value; each superpixel's value is painted onto its
    pixels (all channels).

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        samples: Coalitions evaluated per input (default None: shap's
            ``"auto"``, ``2 * features + 2048``).
        background: ``(n, features)`` background data for tabular inputs
            (required; summarize large sets, e.g. with ``shap.kmeans``).
        segmentation: Superpixels of images (default ``"slic"``); see
            :class:`Lime`.
        segmentation_options: Keyword arguments of the scikit-image function.
        baseline: Value of switched-off superpixels (default 0).
        l1_reg: shap's feature selection (default False: plain KernelSHAP).
        seed: Seed; the same seed gives the same result.
        **kwargs: ``internal_batch_size``, ``progress``, ``output_index``,
            ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns SHAP values shaped like x.
        ``last_explanations`` holds one ``shap.Explanation`` per sample (for
        ``shap.plots``) and ``last_timings`` the seconds spent in
        segmentation, the model and shap itself.

    Raises:
        ImportError: If shap (or scikit-image, for images) is missing:
            ``pip install "keras-explain[shap]"``.
        ValueError: For tabular inputs without ``background``, or inputs that
            are neither tabular nor images.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> data = np.random.default_rng(0).normal(size=(20, 4))
        >>> kx.KernelShap(model, background=data, seed=0).analyze(data[:2]).shape
        (2, 4)
    """

    extra = "shap"

    def __init__(
        self,
        model,
        *,
        samples: int | None = None,
        background: Any = None,
        segmentation: Any = "slic",
        segmentation_options: dict | None = None,
        baseline: float = 0.0,
        l1_reg: Any = False,
        seed: int | None = None,
        **kwargs,
    ):
        self.background = None if background is None else np.asarray(background, np.float32)
        self.baseline = float(baseline)
        self.l1_reg = l1_reg
        super().__init__(
            model,
            samples=samples,
            segmentation=segmentation,
            segmentation_options=segmentation_options,
            seed=seed,
            **kwargs,
        )

    def _shap_values(self, shap, function, background, rows, seed):
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            explainer = shap.KernelExplainer(function, background)
            values = explainer.shap_values(
                rows, nsamples=self.samples or "auto", l1_reg=self.l1_reg, silent=not self.progress
            )
        finally:
            np.random.set_state(state)
        return np.asarray(values, np.float32), float(np.ravel(explainer.expected_value)[0])

    def _tabular(self, x, indices, seed):
        shap = superpixels.require("shap", "shap", "KernelShap")
        _check_reference_rows(
            self.background, x, "KernelShap on tabular inputs needs background data", "background"
        )
        result = np.zeros_like(x)
        expected = np.zeros(len(x), np.float32)
        for index in np.unique(indices):
            rows = np.flatnonzero(indices == index)
            values, base = self._shap_values(
                shap, self.score_function(index), self.background, x[rows], seed
            )
            result[rows] = values.reshape(len(rows), -1)
            expected[rows] = base
        self.last_explanations = [
            shap.Explanation(values=result[i], base_values=expected[i], data=x[i])
            for i in range(len(x))
        ]
        return result

    def _images(self, x, labels, indices, seed):
        shap = superpixels.require("shap", "shap", "KernelShap")
        result = np.zeros_like(x)
        for row, (image, segments, index) in enumerate(zip(x, labels, indices)):
            count = int(segments.max()) + 1
            score = self.score_function(index)

            def function(keep, image=image, segments=segments, score=score):
                return score(self.masked(image, segments, self.baseline, keep))

            values, base = self._shap_values(
                shap, function, np.zeros((1, count)), np.ones((1, count)), seed
            )
            values = values.reshape(-1)
            self.last_explanations.append(
                shap.Explanation(values=values, base_values=base, data=np.ones(count, np.float32))
            )
            result[row] = superpixels.paint(values, segments)[..., None]
        return result


def _check_reference_rows(data, x, needs: str, name: str) -> None:
    """Raise unless ``data`` is a 2-D array of rows with ``x``'s features."""
    if data is None or data.ndim != 2 or data.shape[1] != x.shape[1]:
        shape = None if data is None else data.shape
        raise ValueError(
            f"{needs} of shape (n, {x.shape[1]}). Received: {name} with shape {shape}."
        )
