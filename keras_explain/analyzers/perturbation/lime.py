"""LIME (Ribeiro et al. 2016), wrapping the ``lime`` package: a weighted linear surrogate."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from keras_explain.analyzers.perturbation import segmentation, surrogate
from keras_explain.analyzers.perturbation.surrogate import Surrogate, check_reference_rows
from keras_explain.analyzers.registry import register


@register("lime")
class Lime(Surrogate):
    """LIME (Ribeiro et al. 2016, arXiv:1602.04938), wrapping the ``lime`` package.

    Images ``(B, H, W, C)`` use ``lime_image.LimeImageExplainer`` over
    superpixels; each superpixel's surrogate weight is painted onto its pixels
    (all channels). 2-D inputs ``(B, features)`` use
    ``lime_tabular.LimeTabularExplainer`` in regression mode on the target
    score, fitted to ``training_data``; each feature gets its local
    contribution, the surrogate's weight times the sample's standardized value
    ``(x_j − mean_j) / std_j`` (over ``training_data``), so that on a linear
    model it equals KernelSHAP's ``w·(x − E[x])``; lime's raw weights stay in
    ``last_explanations``. The target is resolved once on the clean input and
    explained as a scalar.

    Args:
        model: A Keras model or a callable ``f(x) -> scores`` (e.g. a
            scikit-learn pipeline's ``predict_proba``).
        samples: Perturbed samples per input (default 1000).
        segmentation: Superpixels of images: ``"quickshift"`` (default, as
            lime), ``"slic"``, ``"felzenszwalb"``, a callable ``image -> (H, W)``
            labels, or a precomputed int label map ``(H, W)`` or ``(B, H, W)``.
            A named algorithm's default options are scaled to the image size
            (about 50 superpixels); where they still give fewer than 8, a
            regular grid is used, with a warning (see
            :func:`~keras_explain.analyzers.perturbation.segmentation.segment`).
        segmentation_options: Keyword arguments of the scikit-image function,
            used as given (they replace the scaled defaults, with no grid
            fallback).
        baseline: Value of a switched-off superpixel: ``"mean"`` (default, the
            image's per-channel mean), ``"blur"`` (a Gaussian blur of the image,
            σ = √(H·W) / 8), ``"superpixel_mean"`` or None (each superpixel's
            own mean colour: lime's ``hide_color=None``, which cannot switch a
            uniformly coloured superpixel off), or a number.
        training_data: ``(n, features)`` array for tabular inputs (required).
        kernel_width: Width of lime's exponential kernel (lime's defaults: 0.25
            for images, ``0.75 * sqrt(features)`` for tabular data).
        explainer_options: More keyword arguments of the lime explainer, e.g.
            ``{"discretize_continuous": True}`` (default False here, so tabular
            weights are slopes on standardized features).
        seed: Seed; the same seed gives the same result.
        **kwargs: ``internal_batch_size``, ``verbose``, ``output_index``,
            ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns weights (images) or contributions (tabular)
        shaped like x. ``last_explanations``
        holds lime's explanation objects (label 0 for images, 1 for tabular)
        and ``last_timings`` the seconds spent in segmentation, the model and
        lime itself (sampling and the surrogate fit).

    Raises:
        ImportError: If lime (or scikit-image) is missing:
            ``pip install "keras-explainer[lime]"``.
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
        baseline: float | str | None = "mean",
        training_data: Any = None,
        kernel_width: float | None = None,
        explainer_options: dict | None = None,
        seed: int | None = None,
        **kwargs,
    ):
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
            baseline=baseline,
            seed=seed,
            **kwargs,
        )

    def _tabular(self, x, indices, seed):
        lime_tabular = segmentation.require("lime.lime_tabular", "lime", "Lime")
        check_reference_rows(
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
            # the surrogate's weight times the sample's value in the surrogate's
            # (standardized, or binary when discretized) feature space
            scaled = np.asarray(explanation.domain_mapper.scaled_row, np.float32)
            for feature, weight in explanation.local_exp[1]:
                result[row, feature] = weight * scaled[feature]
        return result

    def _images(self, x, labels, indices, seed):
        lime_image = segmentation.require("lime.lime_image", "lime", "Lime")
        explainer = lime_image.LimeImageExplainer(
            kernel_width=self.kernel_width or 0.25, random_state=seed, **self.explainer_options
        )
        result = np.zeros_like(x)
        for row, (image, segments, index) in enumerate(zip(x, labels, indices)):
            hide = surrogate.switched_off(image, segments, self.baseline)
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
            result[row] = segmentation.paint(weights, segments)[..., None]
        return result

    @contextlib.contextmanager
    def _quiet(self, module):
        """Silence lime's per-image tqdm bar unless ``verbose=1``."""
        original = getattr(module, "tqdm", None)
        if self.verbose == 1 or original is None:
            yield
            return
        module.tqdm = lambda iterable, *args, **kwargs: iterable
        try:
            yield
        finally:
            module.tqdm = original
