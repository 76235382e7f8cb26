"""KernelSHAP (Lundberg & Lee 2017), wrapping ``shap.KernelExplainer``."""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_explain import random
from keras_explain.analyzers.perturbation import segmentation, surrogate
from keras_explain.analyzers.perturbation.surrogate import Surrogate, check_reference_rows
from keras_explain.analyzers.registry import register


@register("kernel_shap")
class KernelShap(Surrogate):
    """KernelSHAP (Lundberg & Lee 2017, arXiv:1705.07874), wrapping ``shap.KernelExplainer``.

    Tabular inputs ``(B, features)`` are explained against ``background``
    data: the values sum to ``f_t(x) - mean f_t(background)``. Images
    ``(B, H, W, C)`` are explained over superpixels, a switched-off superpixel
    taking the ``baseline`` value (as in :class:`Lime`); each superpixel's value
    is painted onto its pixels (all channels). Token ids ``(B, length)`` are
    explained over their positions, a switched-off token becoming the id
    ``baseline`` when it is a number (0 otherwise), the model's constant inputs
    (a padding mask, segment ids) passed unchanged: the values sum to
    ``f_t(x) - f_t(all tokens switched off)``.

    Args:
        model: A Keras model or a callable ``f(x) -> scores``.
        samples: Coalitions evaluated per input (default None: shap's
            ``"auto"``, ``2 * features + 2048``).
        background: ``(n, features)`` background data for tabular inputs
            (required; summarize large sets, e.g. with ``shap.kmeans``).
        segmentation: Superpixels of images (default ``"slic"``, about 50
            superpixels at any size, a regular grid where it gives fewer than
            8); see :class:`Lime`.
        segmentation_options: Keyword arguments of the scikit-image function,
            used as given.
        baseline: Value of a switched-off superpixel: ``"mean"`` (default, the
            image's per-channel mean), ``"blur"``, ``"superpixel_mean"`` (or
            None) or a number; see :class:`Lime`.
        l1_reg: shap's feature selection (default False: plain KernelSHAP).
        seed: Seed; the same seed gives the same result.
        **kwargs: ``internal_batch_size``, ``verbose``, ``output_index``,
            ``strip_softmax``, ``neuron_selection_mode``.

    Returns:
        ``analyze(x)`` returns SHAP values shaped like x.
        ``last_explanations`` holds one ``shap.Explanation`` per sample (for
        ``shap.plots``) and ``last_timings`` the seconds spent in
        segmentation, the model and shap itself.

    Raises:
        ImportError: If shap (or scikit-image, for images) is missing:
            ``pip install "keras-explainer[shap]"``.
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
    host_tokens = True

    def __init__(
        self,
        model,
        *,
        samples: int | None = None,
        background: Any = None,
        segmentation: Any = "slic",
        segmentation_options: dict | None = None,
        baseline: float | str | None = "mean",
        l1_reg: Any = False,
        seed: int | None = None,
        **kwargs,
    ):
        self.background = None if background is None else np.asarray(background, np.float32)
        self.l1_reg = l1_reg
        super().__init__(
            model,
            samples=samples,
            segmentation=segmentation,
            segmentation_options=segmentation_options,
            baseline=baseline,
            seed=seed,
            **kwargs,
        )

    def _shap_values(self, shap, function, background, rows, seed):
        with random.global_state_kept():  # shap draws from numpy's global generator
            np.random.seed(seed)
            explainer = shap.KernelExplainer(function, background)
            values = explainer.shap_values(
                rows, nsamples=self.samples or "auto", l1_reg=self.l1_reg, silent=self.verbose != 1
            )
        return np.asarray(values, np.float32), float(np.ravel(explainer.expected_value)[0])

    def _tabular(self, x, indices, seed):
        shap = segmentation.require("shap", "shap", "KernelShap")
        check_reference_rows(
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

    def _tokens(self, x, indices, seed):
        shap = segmentation.require("shap", "shap", "KernelShap")
        result = np.zeros(x.shape, np.float32)
        off = 0 if isinstance(self.baseline, str | None) else int(self.baseline)
        for row, (tokens, index) in enumerate(zip(x, indices)):
            score = self.score_function(index, row)

            def function(keep, tokens=tokens, score=score):
                return score(np.where(np.asarray(keep) > 0.5, tokens, off).astype(tokens.dtype))

            values, base = self._shap_values(
                shap, function, np.zeros((1, len(tokens))), np.ones((1, len(tokens))), seed
            )
            result[row] = values.reshape(-1)
            self.last_explanations.append(
                shap.Explanation(values=result[row], base_values=base, data=tokens)
            )
        return result

    def _images(self, x, labels, indices, seed):
        shap = segmentation.require("shap", "shap", "KernelShap")
        result = np.zeros_like(x)
        for row, (image, segments, index) in enumerate(zip(x, labels, indices)):
            count = int(segments.max()) + 1
            score = self.score_function(index)
            off = surrogate.switched_off(image, segments, self.baseline)

            def function(keep, image=image, segments=segments, score=score, off=off):
                return score(self.masked(image, segments, off, keep))

            values, base = self._shap_values(
                shap, function, np.zeros((1, count)), np.ones((1, count)), seed
            )
            values = values.reshape(-1)
            self.last_explanations.append(
                shap.Explanation(values=values, base_values=base, data=np.ones(count, np.float32))
            )
            result[row] = segmentation.paint(values, segments)[..., None]
        return result
