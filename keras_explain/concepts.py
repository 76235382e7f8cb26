"""What does a layer know? Concept activation vectors, TCAV with significance, RCAV, concept maps.

- :class:`CAV`: a concept activation vector, the unit normal of a linear
  classifier separating a concept's activations at a layer from random ones
  (Kim et al. 2018, "Interpretability Beyond Feature Attribution: Quantitative
  Testing with Concept Activation Vectors (TCAV)", ICML).
- :func:`tcav`: the fraction of inputs whose logit increases along the CAV,
  ``mean_x 1[∇_h f_t(x) · v > 0]``.
- :class:`TCAV`: scores over several CAVs trained against different random
  sets, tested against random-versus-random scores with a two-sided t-test.
- :class:`RCAV`: a regression concept vector for a continuous concept measure
  (Graziani et al. 2018, "Regression Concept Vectors for Bidirectional
  Explanations in Histopathology", iMIMIC), with its test R² and the
  bidirectional relevance ``Br = R² · mean(S) / std(S)``.
- :func:`concept_map`: where in the input a spatial layer's activations align
  with a CAV.

Sign convention: the sensitivity is the gradient of the explained **logit**
(``target`` as in :mod:`keras_explain.targets`; a final softmax is bypassed) as
in Captum and Xplique. The original TCAV code differentiates the class's
cross-entropy **loss** ``L = -log p_t`` and counts ``∇L · v < 0``. As
``∇L = -Σ_{k≠t} p_k (∇f_t - ∇f_k)``, it counts where ``f_t`` grows along ``v``
relative to the other logits, and this module where ``f_t`` itself grows: the two
agree when ``v`` does not raise the other logits, and may differ when it does.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_explain import _logistic, _spatial, _validate
from keras_explain.analyzers.gradient import Gradient
from keras_explain.analyzers.layer_output import LayerOutputs

CLASSIFIERS = ("linear", "logistic", "batched")
#: L2 penalty of the "linear" (scikit-learn's SGDClassifier default) and "batched" classifiers.
ALPHA = 0.01
#: Share of each set held out to measure a CAV's accuracy (as the original TCAV code).
TEST_SIZE = 0.33


def _flat(activations: np.ndarray) -> np.ndarray:
    return activations.reshape(len(activations), -1)


def _check_sets(concept: np.ndarray, random: np.ndarray, function: str) -> None:
    if concept.shape[1:] != random.shape[1:]:
        raise ValueError(
            f"{function}: the concept and random sets must give activations of the same "
            f"shape. Received: concept activations {concept.shape[1:]}, random activations "
            f"{random.shape[1:]} (per sample). Give both sets inputs of the same size."
        )
    for name, values in (("concept", concept), ("random", random)):
        if len(values) < 2:
            raise ValueError(
                f"{function} needs at least 2 samples in each set. Received: {len(values)} "
                f"{name} sample(s)."
            )


def _classifier(classifier: Any, seed: int):
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    if classifier == "linear":  # the original TCAV code's and Captum's default
        return SGDClassifier(alpha=ALPHA, max_iter=1000, tol=1e-3, random_state=seed)
    if classifier == "logistic":
        return LogisticRegression(max_iter=1000, random_state=seed)
    if isinstance(classifier, str) or not hasattr(classifier, "fit"):
        raise ValueError(
            f"classifier must be one of {CLASSIFIERS} or a scikit-learn linear classifier "
            f"(with fit and coef_). Received: classifier={classifier!r}."
        )
    return clone(classifier)


def _split(concept: np.ndarray, random: np.ndarray, seed: int):
    """Stratified training and held-out indices into ``concatenate([concept, random])``."""
    from sklearn.model_selection import train_test_split

    labels = np.concatenate([np.ones(len(concept)), np.zeros(len(random))])
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_SIZE, stratify=labels, random_state=seed
    )
    return labels, train, test


def _fit_cavs(pairs: list[tuple[np.ndarray, np.ndarray, int]], classifier: Any) -> list[CAV]:
    """CAVs for ``(concept, random, seed)`` activations; ``"batched"`` fits all at once."""
    pairs = [(np.asarray(concept), np.asarray(random), seed) for concept, random, seed in pairs]
    for concept, random, _ in pairs:
        _check_sets(concept, random, "CAV")
    # one array as both sets: two sources, so each row can carry both labels
    pairs = [(c, r.copy() if r is c else r, seed) for c, r, seed in pairs]
    if classifier == "batched":
        return _batched_cavs(pairs)
    return [_fitted_cav(concept, random, seed, classifier) for concept, random, seed in pairs]


def _fitted_cav(concept, random, seed, classifier) -> CAV:
    features = np.concatenate([_flat(concept), _flat(random)]).astype(np.float64)
    labels, train, test = _split(concept, random, seed)
    model = _classifier(classifier, seed).fit(features[train], labels[train])
    accuracy = float(np.mean(model.predict(features[test]) == labels[test]))
    return _unit_cav(model.coef_, accuracy, concept.shape[1:], model)


def _batched_cavs(pairs) -> list[CAV]:
    """One TensorFlow fit of every pair, activation sets shared by identity (see ``_logistic``)."""
    from sklearn.linear_model import LogisticRegression

    sources, index, problems = [], {}, []
    for concept, random, seed in pairs:
        for values in (concept, random):
            if id(values) not in index:
                index[id(values)] = len(sources)
                sources.append(_flat(values))
        _, train, test = _split(concept, random, seed)
        parts = []
        for values, label, offset in ((concept, 1.0, 0), (random, 0.0, len(concept))):
            rows = slice(offset, offset + len(values))
            parts.append(
                _logistic.Part(
                    index[id(values)],
                    train[(train >= rows.start) & (train < rows.stop)] - offset,
                    test[(test >= rows.start) & (test < rows.stop)] - offset,
                    label,
                )
            )
        problems.append(parts)
    fitted = _logistic.fit(sources, problems, alpha=ALPHA)
    cavs = []
    for j, (concept, _, _) in enumerate(pairs):
        # a scikit-learn LogisticRegression holding the solution (same objective), to predict
        model = LogisticRegression(C=1 / (ALPHA * sum(len(part.train) for part in problems[j])))
        model.coef_, model.intercept_ = fitted.coef[j : j + 1], fitted.intercept[j : j + 1]
        model.classes_, model.n_features_in_ = np.array([0.0, 1.0]), fitted.coef.shape[1]
        model.n_iter_ = np.array([fitted.iterations])
        cavs.append(_unit_cav(model.coef_, float(fitted.accuracy[j]), concept.shape[1:], model))
    return cavs


def _unit_cav(coef, accuracy, shape, model) -> CAV:
    normal = np.asarray(coef, np.float64).reshape(-1)
    norm = np.linalg.norm(normal)
    if norm == 0:
        raise ValueError(
            "CAV: the classifier found no direction separating the concept from the "
            "random set (zero weights). Received: sets the classifier cannot tell apart; "
            "use more or more distinct concept examples, or another layer."
        )
    return CAV((normal / norm).astype(np.float32), accuracy, shape, model)


@dataclasses.dataclass
class CAV:
    """A concept activation vector (Kim et al. 2018).

    Attributes:
        vector: The unit normal of the decision boundary, pointing towards the
            concept, flattened: float32 ``(features,)``.
        accuracy: The classifier's accuracy on the held-out third of the sets.
        shape: The layer output's shape per sample (``vector`` reshaped to it
            is the direction in the layer's own layout).
        classifier: The fitted scikit-learn classifier.
    """

    vector: np.ndarray
    accuracy: float
    shape: tuple
    classifier: Any = None

    @classmethod
    def fit(
        cls,
        model: keras.Model,
        layer: Any,
        concept_x: Any,
        random_x: Any,
        *,
        classifier: Any = "linear",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> CAV:
        """Train a CAV on the activations of ``concept_x`` and ``random_x`` at ``layer``.

        Args:
            model: A Functional or Sequential model.
            layer: The layer (name or object, nested models included).
            concept_x: Inputs showing the concept.
            random_x: Random counterexamples.
            classifier: ``"linear"`` (``SGDClassifier(alpha=0.01)``, as the
                original TCAV code and Captum), ``"logistic"``
                (``LogisticRegression``), ``"batched"`` (the L2-regularised
                logistic regression ``mean log-loss + 0.01/2 ||w||^2`` fitted by
                TensorFlow on the device, every CAV of a :class:`TCAV` in one
                batch; ``.classifier`` is then a ``LogisticRegression`` holding
                the solution) or an unfitted scikit-learn linear classifier
                (cloned).
            seed: Seed of the split and of the classifier.
            batch_size: Samples per pass when computing activations.

        Returns:
            The CAV.

        Raises:
            ValueError: For an unknown layer, sets with activations of different
                shapes, fewer than 2 samples in a set, or a bad classifier.

        Example:
            >>> import keras, numpy as np
            >>> from keras_explain import concepts
            >>> model = keras.Sequential([keras.Input((3,)),
            ...     keras.layers.Dense(3, kernel_initializer="identity", name="h"),
            ...     keras.layers.Dense(2)])
            >>> rng = np.random.default_rng(0)
            >>> cav = concepts.CAV.fit(model, "h", rng.normal(size=(20, 3)) + 5,
            ...                        rng.normal(size=(20, 3)))
            >>> cav.vector.shape, cav.accuracy
            ((3,), 1.0)
        """
        outputs = LayerOutputs(model, [layer])
        concept = outputs.compute(concept_x, batch_size)[0]
        random = outputs.compute(random_x, batch_size)[0]
        return cls.from_activations(concept, random, classifier=classifier, seed=seed)

    @classmethod
    def from_activations(
        cls, concept: Any, random: Any, *, classifier: Any = "linear", seed: int = 0
    ) -> CAV:
        """Train a CAV on activations already computed (``(N, ...)`` each).

        The sets are labelled 1 (concept) and 0 (random); a stratified third of
        each is held out for ``accuracy``.

        Raises:
            ValueError: As :meth:`fit`.
        """
        return _fit_cavs([(concept, random, seed)], classifier)[0]


def _sensitivities(model, layer, vector, shape, x, target, batch_size, function) -> np.ndarray:
    """Directional derivatives ``∇_layer f_target(x) · vector``, one per sample (float64)."""
    gradients = Gradient(model, layer=layer, verbose=0).analyze(x, target, batch_size=batch_size)
    _check_vector(vector, shape, gradients.shape[1:], layer, function)
    return _flat(gradients).astype(np.float64) @ np.asarray(vector, np.float64).reshape(-1)


def _check_vector(vector, shape, layer_shape, layer, function) -> None:
    if np.size(vector) != int(np.prod(layer_shape)):
        raise ValueError(
            f"{function}: the concept vector was fitted on activations of shape {tuple(shape)} "
            f"but layer {getattr(layer, 'name', layer)!r} outputs {tuple(layer_shape)} per "
            "sample. Use the layer the vector was fitted on."
        )


def tcav(
    model: keras.Model,
    layer: Any,
    cav: CAV,
    x: Any,
    target: Any = None,
    *,
    batch_size: int | None = None,
) -> float:
    """The TCAV score: the fraction of ``x`` whose target logit grows along ``cav``.

    ``mean_i 1[∇_h f_t(x_i) · v > 0]`` with ``h`` the output of ``layer`` and
    ``v = cav.vector`` (Kim et al. 2018). ``f_t`` is the logit (softmax
    bypassed), as in Captum and Xplique; see the module docstring for the
    original code's loss convention.

    Args:
        model: The model the CAV was fitted on.
        layer: The CAV's layer.
        cav: A :class:`CAV` (or any object with ``.vector`` and ``.shape``,
            e.g. an :class:`RCAV`).
        x: Inputs of the class studied.
        target: The logit (see :mod:`keras_explain.targets`); None: each
            sample's predicted class.
        batch_size: Samples per pass.

    Returns:
        The score, a float in ``[0, 1]``.

    Raises:
        ValueError: If the CAV does not match the layer, or for a bad target.

    Example:
        >>> import keras, numpy as np
        >>> from keras_explain import concepts
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="h"),
        ...                           keras.layers.Dense(1, use_bias=False)])
        >>> readout = model.layers[1].kernel.numpy()[:, 0]
        >>> cav = concepts.CAV(readout / np.linalg.norm(readout), 1.0, (2,))
        >>> concepts.tcav(model, "h", cav, np.random.default_rng(0).normal(size=(8, 2)), 0)
        1.0
    """
    sensitivities = _sensitivities(
        model, layer, cav.vector, cav.shape, x, target, batch_size, "tcav"
    )
    return float(np.mean(sensitivities > 0))


def _p_value(scores: np.ndarray, random_scores: np.ndarray) -> float:
    """Two-sided ``scipy.stats.ttest_ind`` (equal variances, as the original TCAV code)."""
    from scipy import stats

    with warnings.catch_warnings():
        # a constant sample (every run scores 1.0) is legitimate: scipy warns that its
        # variance is computed as ~0, which is what the test should use
        warnings.simplefilter("ignore", RuntimeWarning)
        p_value = float(stats.ttest_ind(scores, random_scores).pvalue)
    if np.isnan(p_value):  # both samples constant: t is 0/0 or ±inf
        return 1.0 if np.mean(scores) == np.mean(random_scores) else 0.0
    return p_value


class TCAV:
    """TCAV with statistical testing (Kim et al. 2018, Section 3.2).

    For each concept, ``runs`` CAVs are trained, each against another random
    set, and each gives a TCAV score on ``x``. As many random-versus-random CAVs
    (a random set taken as the "concept" against another random set) give the
    scores of meaningless directions. A concept is ``significant`` when the
    two-sided t-test (``scipy.stats.ttest_ind``) of its scores against the
    random ones gives ``p < alpha``. No multiple-comparison correction is
    applied (divide ``alpha`` by the number of concepts for Bonferroni's).

    Random sets: a list of arrays gives run ``k`` the negatives ``random[k]``
    and the random-versus-random pair ``(random[k + 1], random[k])``
    (indices modulo the list length; ``runs <= len(random)``). One array is
    split at random for each run into two disjoint halves, the negatives and the
    random "concept".

    Args:
        model: A Functional or Sequential model.
        layer: The layer (name or object).
        concepts: ``{name: inputs showing the concept}``.
        random: A list of at least 2 random input sets, or one array of at
            least 4 random inputs.
        runs: CAVs per concept (an int >= 2).
        alpha: Significance level of the test.
        seed: Seeds the splits and the classifiers (run ``k`` uses
            ``seed + k``).
        classifier: See :meth:`CAV.fit`. The default ``"batched"`` fits the
            ``3 x runs`` CAVs at once (their TCAV scores agree with the
            original code's ``"linear"`` within its run-to-run spread, see the
            user guide); ``"linear"`` fits them one by one as the original code.
        batch_size: Samples per pass.

    Raises:
        ValueError: For fewer than 2 runs, an empty ``concepts``, too few random
            sets or samples, or ``alpha`` outside ``(0, 1)``.

    Example:
        >>> import keras, numpy as np
        >>> from keras_explain import concepts
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, name="h"),
        ...                           keras.layers.Dense(2)])
        >>> rng = np.random.default_rng(0)
        >>> rows = concepts.TCAV(model, "h", {"up": rng.normal(size=(20, 3)) + 3},
        ...                      rng.normal(size=(40, 3)), runs=3).run(rng.normal(size=(5, 3)), 0)
        >>> sorted(rows[0])
        ['accuracy', 'concept', 'mean', 'p_value', 'random_scores', 'scores', 'significant', 'std']
    """

    def __init__(
        self,
        model: keras.Model,
        layer: Any,
        concepts: Mapping[str, Any],
        random: Sequence[Any] | Any,
        *,
        runs: int = 10,
        alpha: float = 0.05,
        seed: int = 0,
        classifier: Any = "batched",
        batch_size: int | None = None,
    ):
        self.runs = _validate.positive_int(runs, "runs")
        if self.runs < 2:
            raise ValueError(f"TCAV needs runs >= 2 for a t-test. Received: runs={runs}.")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1). Received: alpha={alpha!r}.")
        if not concepts:
            raise ValueError("TCAV needs at least one concept. Received: concepts={}.")
        self.model, self.alpha, self.seed = model, float(alpha), int(seed)
        self.classifier, self.batch_size = classifier, batch_size
        self._outputs = LayerOutputs(model, [layer])
        self.layer = self._outputs.layers[0]
        self.concepts = {name: self._activations(x) for name, x in concepts.items()}
        self._pairs = self._random_pairs(random)
        triples = [
            (acts, negatives, self.seed + k)
            for acts in self.concepts.values()
            for k, (negatives, _) in enumerate(self._pairs)
        ]
        triples += [
            (positives, negatives, self.seed + k)
            for k, (negatives, positives) in enumerate(self._pairs)
        ]
        cavs = _fit_cavs(triples, classifier)  # "batched": every CAV in one fit
        self.cavs = {
            name: cavs[c * self.runs : (c + 1) * self.runs] for c, name in enumerate(self.concepts)
        }
        self.random_cavs = cavs[len(self.concepts) * self.runs :]

    def _activations(self, x):
        return self._outputs.compute(x, self.batch_size)[0]

    def _random_pairs(self, random):
        """(negatives, random "concept") activations for each run."""
        if isinstance(random, list | tuple):
            if len(random) < 2 or self.runs > len(random):
                raise ValueError(
                    f"TCAV with a list of random sets needs at least max(2, runs) = "
                    f"{max(2, self.runs)} sets. Received: {len(random)} sets for runs="
                    f"{self.runs}. Pass more sets, fewer runs, or one array to split."
                )
            sets = [self._activations(x) for x in random]
            return [(sets[k], sets[(k + 1) % len(sets)]) for k in range(self.runs)]
        pool = self._activations(random)
        if len(pool) < 4:
            raise ValueError(
                "TCAV splits one random array into two halves of at least 2 samples. "
                f"Received: {len(pool)} random samples."
            )
        half = len(pool) // 2
        pairs = []
        for run in range(self.runs):
            order = np.random.default_rng([self.seed, run]).permutation(len(pool))
            pairs.append((pool[order[:half]], pool[order[half : 2 * half]]))
        return pairs

    def run(self, x: Any, target: Any = None) -> list[dict[str, Any]]:
        """Score every concept on ``x`` and test it against the random directions.

        Args:
            x: Inputs of the class studied.
            target: The logit explained (see :func:`tcav`).

        Returns:
            One dict per concept: ``concept``, ``mean`` and ``std`` (population)
            of its TCAV scores over the runs, ``scores``, ``random_scores``,
            ``accuracy`` (mean CAV accuracy), ``p_value`` and ``significant``.
        """
        gradients = Gradient(self.model, layer=self.layer, verbose=0).analyze(
            x, target, batch_size=self.batch_size
        )
        gradients = _flat(gradients).astype(np.float64)

        def score(cav):
            return float(np.mean(gradients @ cav.vector.astype(np.float64) > 0))

        random_scores = np.array([score(cav) for cav in self.random_cavs])
        rows = []
        for name, cavs in self.cavs.items():
            scores = np.array([score(cav) for cav in cavs])
            p_value = _p_value(scores, random_scores)
            rows.append(
                {
                    "concept": name,
                    "mean": float(scores.mean()),
                    "std": float(scores.std()),
                    "scores": scores,
                    "random_scores": random_scores,
                    "accuracy": float(np.mean([cav.accuracy for cav in cavs])),
                    "p_value": p_value,
                    "significant": bool(p_value < self.alpha),
                }
            )
        return rows


@dataclasses.dataclass
class RCAV:
    """A regression concept vector (Graziani et al. 2018).

    Ordinary least squares of a continuous concept measure on a layer's
    (flattened) activations; the vector is the unit direction of increasing
    measure, ``r2`` the coefficient of determination on a held-out third.

    Attributes:
        vector: float32 ``(features,)``, unit norm.
        r2: Test R² of the regression.
        shape: The layer output's shape per sample.
        regression: The fitted ``sklearn.linear_model.LinearRegression``.
        model: The model, and ``layer`` the layer, it was fitted on.
    """

    vector: np.ndarray
    r2: float
    shape: tuple
    regression: Any
    model: Any
    layer: Any

    @classmethod
    def fit(
        cls,
        model: keras.Model,
        layer: Any,
        x: Any,
        values: Any,
        *,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> RCAV:
        """Regress ``values`` (one per sample of ``x``) on the activations at ``layer``.

        Args:
            model: A Functional or Sequential model.
            layer: The layer (name or object).
            x: Inputs.
            values: The concept measure of each input, ``(N,)``.
            seed: Seed of the train/test split.
            batch_size: Samples per pass.

        Returns:
            The RCAV.

        Raises:
            ValueError: If ``values`` is not one number per sample, or if there
                are no more training samples than features (OLS is then
                undetermined; reduce the features or add samples).

        Example:
            >>> import keras, numpy as np
            >>> from keras_explain import concepts
            >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, name="h"),
            ...                           keras.layers.Dense(2)])
            >>> x = np.random.default_rng(0).normal(size=(30, 3))
            >>> h = model.layers[0](x).numpy()
            >>> round(concepts.RCAV.fit(model, "h", x, h @ [1.0, 2.0, 0.0]).r2, 6)
            1.0
        """
        from sklearn.linear_model import LinearRegression
        from sklearn.model_selection import train_test_split

        layer_outputs = LayerOutputs(model, [layer])
        activations = layer_outputs.compute(x, batch_size)[0]
        targets = np.asarray(values, np.float64)
        if targets.shape != (len(activations),):
            raise ValueError(
                f"RCAV.fit needs one concept value per sample, shape ({len(activations)},). "
                f"Received: values with shape {targets.shape}."
            )
        features = _flat(activations).astype(np.float64)
        train_x, test_x, train_y, test_y = train_test_split(
            features, targets, test_size=TEST_SIZE, random_state=seed
        )
        if len(train_x) <= features.shape[1] or len(test_x) < 2:
            raise ValueError(
                "RCAV.fit: ordinary least squares needs more training samples than features "
                f"and 2 test samples. Received: {len(features)} samples ({len(train_x)} for "
                f"training) and {features.shape[1]} features. Add samples or pick a smaller "
                "layer."
            )
        regression = LinearRegression().fit(train_x, train_y)
        normal = regression.coef_ / np.linalg.norm(regression.coef_)
        r2 = float(regression.score(test_x, test_y))
        return cls(
            normal.astype(np.float32),
            r2,
            activations.shape[1:],
            regression,
            model,
            layer_outputs.layers[0],
        )

    def sensitivities(self, x: Any, target: Any = None, *, batch_size=None) -> np.ndarray:
        """``∇_layer f_target(x) · vector`` for each sample (float64 ``(N,)``)."""
        return _sensitivities(
            self.model, self.layer, self.vector, self.shape, x, target, batch_size, "RCAV"
        )

    def bidirectional_score(self, x: Any, target: Any = None, *, batch_size=None) -> float:
        """Graziani et al.'s bidirectional relevance ``Br = R² · mean(S) / std(S)``.

        ``S`` are the :meth:`sensitivities` on ``x`` and ``std`` the population
        standard deviation; a positive score means the logit grows with the
        concept measure, consistently across ``x``.

        Raises:
            ValueError: If every sensitivity is equal (``std = 0``, the ratio is
                undefined).
        """
        sensitivities = self.sensitivities(x, target, batch_size=batch_size)
        spread = float(np.std(sensitivities))
        if np.ptp(sensitivities) == 0:  # np.std of equal values may round to 1e-17
            raise ValueError(
                "RCAV.bidirectional_score: every sensitivity is equal, so mean/std is "
                f"undefined. Received: {len(sensitivities)} sensitivities of "
                f"{float(sensitivities[0])!r}. Use more varied inputs."
            )
        return float(self.r2 * np.mean(sensitivities) / spread)


def concept_map(
    model: keras.Model,
    layer: Any,
    cav: CAV,
    x: Any,
    *,
    upsample: bool = True,
    batch_size: int | None = None,
) -> np.ndarray:
    """Where in each input a spatial layer's activations align with a concept vector.

    With ``A`` the layer's output ``(B, *spatial, C)`` and ``v`` the vector
    reshaped to ``(*spatial, C)`` (a CAV fitted on the layer's full output), the
    map at each position is ``Σ_c A[p, c] v[p, c]``: the projection ``A · v``
    split over positions, so the maps sum to it. A vector of ``C`` values
    (fitted on spatially pooled activations) is applied at every position.
    Maps are resized to the input's resolution bilinearly with half-pixel
    centers, as the CAM family (:mod:`keras_explain.analyzers.cam`).

    Args:
        model: The model.
        layer: A layer with spatial axes (output ``(B, H, W, C)`` or ``(B, L, C)``).
        cav: A :class:`CAV` or :class:`RCAV` fitted at ``layer``.
        x: Inputs (channels last).
        upsample: Resize to the input's spatial size (default); False keeps the
            layer's resolution.
        batch_size: Samples per pass.

    Returns:
        float32 ``(B, H, W)`` (or ``(B, L)`` for 1-D layers).

    Raises:
        ValueError: For a layer without spatial axes, or a vector of another size.

    Example:
        >>> import keras, numpy as np
        >>> from keras_explain import concepts
        >>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="c"),
        ...                           keras.layers.Flatten(), keras.layers.Dense(2)])
        >>> cav = concepts.CAV(np.array([1.0, 0.0], "float32"), 1.0, (2,))
        >>> concepts.concept_map(model, "c", cav, np.ones((1, 8, 8, 1))).shape
        (1, 8, 8)
    """
    outputs = LayerOutputs(model, [layer])
    activations = outputs.compute(x, batch_size)[0]
    name = outputs.layers[0].name
    if activations.ndim not in (3, 4):
        raise ValueError(
            f"concept_map: layer {name!r} has output shape (batch, "
            f"{', '.join(map(str, activations.shape[1:]))}) without spatial axes. Pick a "
            "convolutional layer with output (batch, height, width, channels) or "
            "(batch, length, channels)."
        )
    vector = np.asarray(cav.vector, np.float32).reshape(-1)
    if vector.size == activations.shape[-1]:
        weights = vector
    else:
        _check_vector(vector, cav.shape, activations.shape[1:], outputs.layers[0], "concept_map")
        weights = vector.reshape(activations.shape[1:])
    maps = np.sum(activations * weights, axis=-1)
    if not upsample:
        return maps.astype(np.float32)
    first = np.asarray(x[0] if isinstance(x, list | tuple) else x)
    size = first.shape[1 : maps.ndim]
    return _spatial.resize_maps(tf.constant(maps, tf.float32), size).numpy()
