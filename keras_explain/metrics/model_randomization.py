"""Randomisation checks beyond MPRT: smooth and efficient MPRT, random logit.

Hedström et al. 2023 ("Sanity checks revisited: an exploration to repair the
model parameter randomisation test", XAI in Action workshop, NeurIPS 2023)
repair Adebayo et al.'s test (:func:`keras_explain.metrics.randomization`) two
ways: :func:`smooth_mprt` denoises every explanation by averaging it over noisy
copies of the input, :func:`efficient_mprt` compares the complexity of the
explanations of the trained and the fully randomized model instead of their
similarity. :func:`random_logit` (Sixt et al. 2020) compares the explanation of
the target class with that of another class. The models are randomized on a
clone (:func:`keras_explain.metrics.sanity.randomized_explanations`); the
user's model is never modified.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_explain import _validate
from keras_explain.analyzers.wrappers import NoiseTunnel
from keras_explain.metrics.engine import (
    as_batch,
    checked,
    continuous_batch,
    explainer,
    feature_input,
    feature_key,
    fixed_target,
)
from keras_explain.metrics.registry import MetricContext, register_metric

# keras_explain.metrics.sanity is imported where it is used: it registers the
# `randomization` column when imported, and the columns keep the order of
# keras_explain.metrics' (alphabetical) imports, randomization after sensitivity_max.

#: Number of equal-width histogram bins of :func:`efficient_mprt` (Quantus' default).
BINS = 100
#: What :func:`smooth_mprt` does to inputs, for the error on token ids.
GAUSSIAN_NOISE = "adds Gaussian noise to the inputs (SmoothGrad)"


def smooth_mprt(
    analyzer_name: str,
    model,
    x,
    target=None,
    *,
    samples: int = 50,
    noise_scale: float = 0.1,
    mode: str = "cascading",
    layers: list[str] | None = None,
    measure: str = "spearman_abs",
    seed: int = 0,
    **analyzer_params: Any,
) -> dict[str, np.ndarray]:
    """Smooth model-parameter randomization test (sMPRT, Hedström et al. 2023).

    MPRT (:func:`~keras_explain.metrics.randomization`) where every explanation,
    of the trained and of each randomized model, is denoised first:
    ``e(x) = 1/N sum_k phi(x + d_k)``, ``d_k ~ N(0, sigma^2)``,
    ``sigma = noise_scale * (max(x) - min(x))`` per sample, by a
    :class:`~keras_explain.NoiseTunnel` around the method (``N = samples``).
    The same noise (drawn from ``seed``) is used for every model, so only the
    weights differ; the layers are re-initialized as in ``randomization``.
    Denoising removes the noise that makes a random model's explanation look
    dissimilar by chance: a method passes when the similarity drops.

    Args:
        analyzer_name: A registry name (``kx.analyzers.names()``).
        model: A Keras model (Sequential or Functional); it is not modified.
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets` (``None``: the trained
            model's argmax, fixed).
        samples: Noisy copies per explanation (default 50, the paper's).
        noise_scale: ``sigma`` as a fraction of each sample's value range
            (default 0.1, the paper's).
        mode: ``"cascading"`` (default) or ``"independent"``.
        layers: Names of the layers to randomize (default: all with weights).
        measure: ``"spearman_abs"`` (default), ``"spearman"``, ``"pearson"`` or
            ``"ssim"`` (see :func:`~keras_explain.metrics.similarity`).
        seed: Seed of the re-initialization and of the noise.
        **analyzer_params: Passed to :func:`keras_explain.create_analyzer`.

    Returns:
        ``{layer name: (B,) similarities}`` in the order randomized; the last
        is the fully randomized model's (with ``"cascading"``): lower is better.

    Raises:
        ValueError: For an unknown mode, measure or layer name, non-positive
            ``samples`` or a negative ``noise_scale``.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="hidden"),
        ...                           keras.layers.Dense(2, name="logits")])
        >>> x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
        >>> result = kx.metrics.smooth_mprt("gradient", model, x, target=0, samples=4)
        >>> list(result), result["hidden"].shape
        (['logits', 'hidden'], (3,))
    """
    from keras_explain.metrics.sanity import compared, randomized_explanations

    function = "smooth_mprt"
    continuous_batch(feature_input(x, None, function)[1], function, GAUSSIAN_NOISE)
    samples = checked(function, _validate.positive_int, samples, "samples")
    noise_scale = checked(function, _validate.non_negative, noise_scale, "noise_scale")
    verbose = analyzer_params.get("verbose", "auto")

    def denoised(analyzer):
        return NoiseTunnel(
            analyzer, samples=samples, noise_scale=noise_scale, seed=seed, verbose=verbose
        )

    explanations = randomized_explanations(
        function,
        analyzer_name,
        model,
        x,
        target,
        mode=mode,
        layers=layers,
        seed=seed,
        analyzer_params=analyzer_params,
        wrap=denoised,
    )
    return compared(function, explanations, measure)


def discrete_entropy(attributions, bins: int = BINS) -> np.ndarray:
    """Entropy of the histogram of each sample's attributions (Quantus' ``discrete_entropy``).

    ``H = -sum_i p_i log p_i`` (natural log, scipy.stats.entropy) over the
    ``bins`` equal-width bins of ``np.histogram`` spanning the sample's values
    (signed, every element), ``p_i`` the share of the values in bin ``i``.

    Args:
        attributions: ``(B, ...)`` attributions.
        bins: Number of bins (default 100).

    Returns:
        ``(B,)`` float64 entropies in ``[0, log(bins)]``.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> from keras_explain.metrics.model_randomization import discrete_entropy
        >>> discrete_entropy(np.array([[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]]), bins=2)
        array([0.69314718, 0.        ])
    """
    from scipy import stats

    flat = np.asarray(attributions, dtype=np.float64).reshape(len(attributions), -1)
    return np.array([stats.entropy(np.histogram(row, bins=bins)[0]) for row in flat])


def efficient_mprt(
    analyzer_name: str,
    model,
    x,
    target=None,
    *,
    bins: int = BINS,
    layers: list[str] | None = None,
    seed: int = 0,
    **analyzer_params: Any,
) -> np.ndarray:
    """Efficient model-parameter randomization test (eMPRT, Hedström et al. 2023).

    The relative rise in explanation complexity from the trained model ``f`` to
    the fully randomized one ``f^`` (every layer with weights re-initialized
    with its own initializers, on a clone, as in
    :func:`~keras_explain.metrics.randomization`):
    ``(H(e^) - H(e)) / H(e)``, ``H`` the :func:`discrete_entropy` of the
    histogram of the attributions (``bins`` equal-width bins over each
    sample's signed values, as Quantus' ``EfficientMPRT``). An explanation of
    a random model should look like noise: a method that passes has a large
    rise (higher is better). Only two explanations per sample are computed.

    Args:
        analyzer_name: A registry name (``kx.analyzers.names()``).
        model: A Keras model (Sequential or Functional); it is not modified.
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets` (``None``: the trained
            model's argmax, fixed).
        bins: Number of histogram bins (default 100, Quantus').
        layers: Names of the layers to randomize (default: all with weights).
        seed: Seed of the re-initialization (and of a sampling method).
        **analyzer_params: Passed to :func:`keras_explain.create_analyzer`.

    Returns:
        ``(B,)`` float64 relative rises (NaN where the trained model's
        explanation has zero entropy: all its values in one bin).

    Raises:
        ValueError: For an unknown layer name or ``bins`` < 1.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, "relu"),
        ...                           keras.layers.Dense(2)])
        >>> x = np.random.default_rng(0).normal(size=(2, 16)).astype("float32")
        >>> kx.metrics.efficient_mprt("gradient", model, x, target=0, bins=10).shape
        (2,)
    """
    from keras_explain.metrics.sanity import randomized_explanations

    function = "efficient_mprt"
    bins = checked(function, _validate.positive_int, bins, "bins")
    explanations = randomized_explanations(
        function,
        analyzer_name,
        model,
        x,
        target,
        layers=layers,
        seed=seed,
        analyzer_params=analyzer_params,
        every_layer=False,
    )
    pairs = list(explanations)
    if len(pairs) < 2:
        raise ValueError(
            f"{function} compares the trained model with a randomized one: no layer to "
            f"randomize. Received: layers={layers!r}. Pass layers with weights (or None)."
        )
    (_, original), (_, randomized) = pairs
    before = discrete_entropy(original, bins)
    after = discrete_entropy(randomized, bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(before > 0, (after - before) / before, np.nan)


def _class_indices(target: Any, count: int, function: str) -> np.ndarray:
    """``target`` as one class index per sample ``(B,)``."""
    indices = np.asarray(target)
    if indices.ndim == 0:
        indices = np.full(count, indices)
    if indices.shape != (count,) or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"{function} compares the explanations of two classes: target must be None, an int "
            f"or one int per sample ({count},). Received: target={target!r}."
        )
    return indices.astype(np.int64)


def random_logit(
    analyzer,
    x,
    target=None,
    *,
    classes: int | None = None,
    measure: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Random logit test (Sixt et al. 2020, "When explanations lie"; Quantus' ``RandomLogit``).

    The similarity of the explanation of the target class ``c`` with that of a
    class ``c'`` drawn uniformly among the others (``c' = (c + k) mod K``,
    ``k`` uniform in ``1 .. K - 1``, from ``seed``):
    ``sim(phi(x, c), phi(x, c'))``. An explanation that depends on the class
    explained is dissimilar: lower is better. Many modified backpropagation
    methods (Sixt et al.) explain every class alike.

    Args:
        analyzer: An analyzer (``kx.Gradient(model)``) or a callable
            ``explain(x, target) -> attributions``.
        x: The batch ``(B, ...)``.
        target: None (the analyzer's argmax of the clean input), an int or one
            int per sample.
        classes: Number of classes ``K`` (default: the size of the analyzer's
            explained output; needed for a callable).
        measure: As in :func:`~keras_explain.metrics.similarity`; default
            ``"ssim"`` (Quantus') for images ``(B, H, W, C)``, else
            ``"spearman_abs"`` (SSIM compares images only).
        seed: Seed of the other classes.

    Returns:
        ``(B,)`` float32 similarities (lower is better).

    Raises:
        ValueError: For a target that is not class indices, fewer than 2
            classes, or an unknown measure.
        TypeError: For an analyzer that is neither an Analyzer nor callable.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
        >>> x = np.random.default_rng(0).normal(size=(2, 6)).astype("float32")
        >>> kx.metrics.random_logit(kx.Gradient(model), x, target=0).shape
        (2,)
    """
    from keras_explain.metrics.sanity import similarity

    function = "random_logit"
    key = feature_key(x, function)  # a dict x: its feature input's attributions compared
    x = as_batch(x, function) if key is None else dict(x)
    rows = len(x if key is None else x[key])
    explain = explainer(analyzer, function)
    if classes is None:
        if not hasattr(analyzer, "predict"):
            raise ValueError(
                f"{function}: pass classes=K (the number of classes) with a callable "
                f"explainer. Received: classes=None and {type(analyzer).__name__}."
            )
        first = x[:1] if key is None else {name: value[:1] for name, value in x.items()}
        classes = int(np.asarray(analyzer.predict(first)).reshape(1, -1).shape[1])
    if checked(function, _validate.positive_int, classes, "classes") < 2:
        raise ValueError(
            f"{function} needs at least 2 classes to draw another one. Received: classes={classes}."
        )
    if target is None and not hasattr(analyzer, "predict"):
        raise ValueError(
            f"{function}: pass the target classes with a callable explainer. Received: target=None."
        )
    indices = _class_indices(fixed_target(analyzer, x, target), rows, function)
    offsets = np.random.default_rng(seed).integers(1, classes, size=rows)
    others = (indices + offsets) % classes
    if key is None:
        twice = np.concatenate([x, x])
    else:
        twice = {name: np.concatenate([value, value]) for name, value in x.items()}
    both = explain(twice, np.concatenate([indices, others]))
    both = np.asarray(both if key is None else both[key])
    images = np.ndim(x if key is None else x[key]) == 4
    measure = measure or ("ssim" if images else "spearman_abs")
    return similarity(both[:rows], both[rows:], measure)


# -- The columns of kx.metrics.evaluate (registered once, see kx.metrics.registry) ----------
def _method_params(context: MetricContext) -> dict[str, Any]:
    """The analyzer's parameters without ``seed`` (the metric's seed is passed), quiet."""
    return {"verbose": 0, **{k: v for k, v in context.params.items() if k != "seed"}}


@register_metric("smooth_mprt", better="lower", default=False)
def _smooth_mprt(context: MetricContext) -> np.ndarray:
    """Spearman of ``|a|`` after cascading randomization of every layer, 50 copies, σ = 0.1."""
    c = context
    similarities = smooth_mprt(c.name, c.model, c.x, c.target, seed=c.seed, **_method_params(c))
    return list(similarities.values())[-1]


@register_metric("efficient_mprt", better="higher", default=False)
def _efficient_mprt(context: MetricContext) -> np.ndarray:
    """Relative rise in histogram entropy (100 bins) after randomizing every layer."""
    c = context
    return efficient_mprt(c.name, c.model, c.x, c.target, seed=c.seed, **_method_params(c))


@register_metric("random_logit", better="lower", default=False)
def _random_logit(context: MetricContext) -> np.ndarray:
    """SSIM (images; Spearman of ``|a|`` otherwise) with the explanation of a random class."""
    return random_logit(context.analyzer, context.x, context.target, seed=context.seed)
