"""Meta-evaluation of a metric: MetaQuantus (Hedström et al., TMLR 2023).

Which metric can be trusted to rank explanation methods? Hedström et al.
("The meta-evaluation problem in explainable AI: identifying reliable estimators
with MetaQuantus", TMLR 2023, arXiv:2302.07265) score a metric by how its scores
move when the evaluation problem is perturbed, with no ground truth needed.
Two tests perturb two things: the Model Perturbation Test (``"model"``)
multiplies every weight of a clone of the model by Gaussian noise
``N(1, σ²)``; the Input Perturbation Test (``"input"``) adds uniform noise
``U(-ε, ε)`` to the inputs. Each runs at a *minor* level, which should leave the
metric's scores as they were (noise resilience, NR; only the samples whose
predicted class did not change are compared) and at a *disruptive* level, which
should move them (adversarial reactivity, AR; only the samples whose predicted
class changed). From the scores of ``L`` methods on ``N`` samples, clean ``q*``
and perturbed ``q̂``, over ``K`` draws:

- intra-consistency ``IAC``: the p-value of the two-sided Wilcoxon signed-rank
  test of ``q*`` against ``q̂`` (scipy, ``zero_method="zsplit"``), per method and
  draw, averaged; ``IAC_NR = mean p``, ``IAC_AR = mean (1 - p)``;
- inter-consistency ``IEC``: ``IEC_NR`` is the share of (rank position, sample)
  pairs at which the methods ordered by ``q*`` and by ``q̂`` agree
  (``argsort`` over the methods); ``IEC_AR`` the share of (method, sample) pairs
  whose score got worse (``q̂ < q*`` when higher is better, ``q̂ > q*`` else).

Each criterion is in [0, 1], 1 is best; the meta-consistency ``MC`` is their
mean, and the area of the quadrilateral they span on the paper's four axes,
``(IAC_AR + IEC_AR)(IAC_NR + IEC_NR) / 2``, is in [0, 2].
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from keras_explain import _validate
from keras_explain._batching import VERBOSE
from keras_explain._clone import cloned
from keras_explain.analyzers.registry import create_analyzer
from keras_explain.metrics import registry
from keras_explain.metrics.engine import as_batch, fixed_target, spatial_shape
from keras_explain.metrics.sanity import takes_seed
from keras_explain.metrics.table import parse_methods

#: The perturbation tests: the model's weights, the inputs.
TESTS = ("model", "input")
#: The four criteria, in the paper's order.
CRITERIA = ("IAC_NR", "IAC_AR", "IEC_NR", "IEC_AR")
#: The minor levels (MetaQuantus' MNIST and ImageNet settings): σ of the weights'
#: multiplicative N(1, σ²), ε of the inputs' additive U(-ε, ε).
MINOR = {"model": 0.001, "input": 0.001}
#: The disruptive levels (MetaQuantus' MNIST settings; its ImageNet one has σ = 0.5).
DISRUPTIVE = {"model": 2.0, "input": 5.0}
#: Variables left as trained: running statistics, not parameters (as torch's ``parameters()``).
_STATISTICS = ("moving_mean", "moving_variance")


def criteria(
    clean,
    minor,
    disruptive,
    minor_kept,
    disruptive_changed,
    *,
    better: str = "higher",
) -> dict[str, float]:
    """The four MetaQuantus criteria of one test, from score arrays only.

    Args:
        clean: ``(L, N)`` scores ``q*`` of ``L`` methods on ``N`` samples, unperturbed.
        minor: ``(K, L, N)`` scores ``q̂`` after each of ``K`` minor perturbations.
        disruptive: ``(K, L, N)`` scores after each of ``K`` disruptive perturbations.
        minor_kept: ``(K, N)`` booleans: the samples whose predicted class the
            minor perturbation kept (the NR criteria compare only these).
        disruptive_changed: ``(K, N)`` booleans: the samples whose predicted class
            the disruptive perturbation changed (the AR criteria compare only these).
        better: ``"higher"`` or ``"lower"``: the metric's better direction
            (``IEC_AR`` counts the scores that got worse).

    Returns:
        ``{"IAC_NR", "IAC_AR", "IEC_NR", "IEC_AR": float}``, each in [0, 1]; NaN
        when no draw selects a sample. A draw that selects none is left out of
        the mean; NaN scores are left out of the tests and comparisons; a single
        selected sample gives ``p = 1`` (one pair never rejects).

    Raises:
        ValueError: For shapes that do not fit or ``better`` not in
            ``("higher", "lower")``.

    Example:
        >>> import numpy as np, keras_explain as kx
        >>> clean = np.array([[0.1, 0.5, 0.9, 0.3], [0.4, 0.2, 0.8, 0.6]])
        >>> same = np.stack([clean, clean])  # K = 2 perturbations that change nothing
        >>> all_samples = np.ones((2, 4), bool)
        >>> kx.metrics.meta.criteria(clean, same, same, all_samples, all_samples)
        {'IAC_NR': 1.0, 'IAC_AR': 0.0, 'IEC_NR': 1.0, 'IEC_AR': 0.0}
    """
    _validate.one_of(better, "better", registry.DIRECTIONS)
    clean = np.asarray(clean, dtype=np.float64)
    minor, disruptive = (np.asarray(a, dtype=np.float64) for a in (minor, disruptive))
    minor_kept, disruptive_changed = (np.asarray(a, bool) for a in (minor_kept, disruptive_changed))
    for scores, selected, level in (
        (minor, minor_kept, "minor"),
        (disruptive, disruptive_changed, "disruptive"),
    ):
        if (
            clean.ndim != 2
            or scores.shape[1:] != clean.shape
            or selected.shape != (len(scores), clean.shape[1])
        ):
            raise ValueError(
                "criteria: expected clean (L, N), perturbed (K, L, N) and selected (K, N). "
                f"Received: clean {clean.shape}, {level} {scores.shape}, selected "
                f"{selected.shape}."
            )
    return {
        "IAC_NR": _mean(_intra(clean, minor, minor_kept)),
        "IAC_AR": _mean(1.0 - _intra(clean, disruptive, disruptive_changed)),
        "IEC_NR": _mean(_inter_ranks(clean, minor, minor_kept)),
        "IEC_AR": _mean(_inter_worse(clean, disruptive, disruptive_changed, better)),
    }


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


def _intra(clean: np.ndarray, perturbed: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """``(K, L)`` p-values of the Wilcoxon signed-rank test of each method's scores."""
    from scipy import stats

    values = np.full(perturbed.shape[:2], np.nan)
    for k, (scores, rows) in enumerate(zip(perturbed, selected)):
        for method in range(len(clean)):
            first, second = clean[method, rows], scores[method, rows]
            finite = np.isfinite(first) & np.isfinite(second)
            if finite.sum() == 1:  # one pair never rejects (scipy's p, or its error at 0)
                values[k, method] = 1.0
            elif finite.any():
                result = stats.wilcoxon(
                    first[finite], second[finite], alternative="two-sided", zero_method="zsplit"
                )
                values[k, method] = result.pvalue
    return values


def _inter_ranks(clean: np.ndarray, perturbed: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """``(K,)`` share of rank positions where the methods' orders agree, selected samples."""
    order = np.argsort(clean, axis=0, kind="stable")
    values = np.full(len(perturbed), np.nan)
    for k, (scores, rows) in enumerate(zip(perturbed, selected)):
        if rows.any():
            agree = order == np.argsort(scores, axis=0, kind="stable")
            values[k] = agree[:, rows].mean()
    return values


def _inter_worse(
    clean: np.ndarray, perturbed: np.ndarray, selected: np.ndarray, better: str
) -> np.ndarray:
    """``(K,)`` share of (method, sample) scores that the perturbation made worse."""
    values = np.full(len(perturbed), np.nan)
    for k, (scores, rows) in enumerate(zip(perturbed, selected)):
        first, second = clean[:, rows], scores[:, rows]
        finite = np.isfinite(first) & np.isfinite(second)
        if finite.any():
            worse = second < first if better == "higher" else second > first
            values[k] = worse[finite].mean()
    return values


@dataclasses.dataclass(frozen=True, eq=False)
class PerturbationResult:
    """One perturbation test of :func:`meta_evaluate`.

    Attributes:
        test: ``"model"`` or ``"input"``.
        criteria: ``{"IAC_NR", "IAC_AR", "IEC_NR", "IEC_AR": float}``.
        mc: The meta-consistency, the mean of the four criteria: NaN if one is NaN
            (no draw changed a prediction, or the metric gave NaN on every sample).
        area: ``(IAC_AR + IEC_AR)(IAC_NR + IEC_NR) / 2``, in [0, 2].
        levels: ``(minor, disruptive)``: σ of the weights' noise or ε of the inputs'.
        minor, disruptive: ``(K, L, N)`` scores after each perturbation.
        minor_kept: ``(K, N)``: the samples whose predicted class the minor noise kept.
        disruptive_changed: ``(K, N)``: the samples whose class the disruptive noise changed.
    """

    test: str
    criteria: dict[str, float]
    mc: float
    area: float
    levels: tuple[float, float]
    minor: np.ndarray
    disruptive: np.ndarray
    minor_kept: np.ndarray
    disruptive_changed: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class MetaEvaluation:
    """The result of :func:`meta_evaluate`.

    Attributes:
        metric: The metric's registered name.
        better: Its better direction, ``"higher"`` or ``"lower"``.
        methods: The methods' labels, in the order of the score arrays' axis ``L``.
        clean: ``(L, N)`` scores of the unperturbed model and inputs.
        tests: ``{test: PerturbationResult}``, in the order run.
        mc: The mean of the tests' MC (the paper's ``MC̄`` for both tests); NaN if one is.
    """

    metric: str
    better: str
    methods: tuple[str, ...]
    clean: np.ndarray
    tests: dict[str, PerturbationResult]
    mc: float

    def as_rows(self) -> list[dict[str, Any]]:
        """One dict per test: ``metric``, ``test``, the four criteria, ``MC`` and ``area``."""
        return [
            {
                "metric": self.metric,
                "test": name,
                **result.criteria,
                "MC": result.mc,
                "area": result.area,
            }
            for name, result in self.tests.items()
        ]

    def table(self, digits: int = 3) -> str:
        """The rows as an aligned text table, with the mean MC over the tests last."""
        header = ("metric", "test", *CRITERIA, "MC", "area")
        lines = [header] + [
            tuple(
                value if isinstance(value, str) else f"{value:.{digits}f}" for value in row.values()
            )
            for row in self.as_rows()
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in lines]
        text.append(f"{self.metric}  mean MC over {len(self.tests)} test(s): {self.mc:.{digits}f}")
        return "\n".join(text)


def meta_evaluate(
    metric: str,
    model,
    x,
    target=None,
    *,
    methods,
    masks=None,
    tests: Sequence[str] = TESTS,
    iterations: int = 5,
    minor: Mapping[str, float] | None = None,
    disruptive: Mapping[str, float] | None = None,
    reexplain: bool = True,
    steps: int = 100,
    seed: int = 0,
    verbose: Any = "auto",
) -> MetaEvaluation:
    """Meta-evaluate the metric ``metric`` with MetaQuantus (Hedström et al., TMLR 2023).

    Every method explains ``x`` and ``metric`` scores it (as
    :func:`~keras_explain.metrics.evaluate` does, the target fixed to the clean
    model's predicted class when ``target=None``); then, ``iterations`` times
    per level and test, the model's weights (on a clone: the model is never
    modified) or the inputs are perturbed, every method explains again and the
    metric scores again. The module docstring (:mod:`keras_explain.metrics.meta`)
    gives the criteria; :func:`criteria` computes them from the score arrays.

    Args:
        metric: A registered metric name (:data:`keras_explain.metrics.METRICS`).
        model: A Keras model (the ``"model"`` test clones it).
        x: The batch ``(B, ...)``.
        target: As in :mod:`keras_explain.targets`.
        methods: At least two methods: registry names or ``{name: {parameter: value}}``.
        masks: Ground-truth masks ``(B, H, W)``, for metrics that need them.
        tests: Some of ``("model", "input")``.
        iterations: ``K``, the perturbations drawn per test and level (the paper:
            3 iterations of K = 5, i.e. 15).
        minor: ``{test: level}`` of the minor perturbations, defaults :data:`MINOR`.
        disruptive: ``{test: level}`` of the disruptive ones, defaults :data:`DISRUPTIVE`
            (the input noise is absolute: scale it with the data's range).
        reexplain: In the ``"input"`` test, explain the noisy inputs (default), or
            score the clean inputs' explanations on the noisy inputs, as
            MetaQuantus' code does (``perturbation_tests/ipt.py``).
        steps: Steps of the deletion and insertion curves (at most the features).
        seed: Seed of the perturbations, of the metric and of sampling methods.
        verbose: ``"auto"`` (a progress bar after two seconds), ``1`` or ``0``.

    Returns:
        A :class:`MetaEvaluation`; ``.table()`` prints it.

    Raises:
        ValueError: For an unknown metric or test, a metric that needs masks
            without them, fewer than two methods, or a bad level or count.
        TypeError: For the ``"model"`` test on a model that is not a Keras model.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
        ...                           keras.layers.Dense(3)])
        >>> x = np.random.default_rng(0).normal(size=(4, 4, 4, 1)).astype("float32")
        >>> result = kx.metrics.meta_evaluate("sparseness", model, x,
        ...     methods=["gradient", "input_t_gradient"], iterations=2, verbose=0)
        >>> [row["test"] for row in result.as_rows()], result.tests["model"].minor.shape
        (['model', 'input'], (2, 2, 4))
    """
    from tqdm import tqdm

    function = "meta_evaluate"
    registry.get_metric(metric, function)
    registry.check_metrics([metric], masks=masks is not None, caller=function)
    better = registry.directions()[metric]
    verbose = _validate.one_of(verbose, "verbose", VERBOSE)
    _validate.boolean(reexplain, "reexplain", function)
    iterations = _validate.positive_int(iterations, "iterations")
    tests = _tests(tests, function)
    levels = {
        test: (
            _level(minor, MINOR, test, "minor"),
            _level(disruptive, DISRUPTIVE, test, "disruptive"),
        )
        for test in tests
    }
    chosen = parse_methods(methods, function)
    if len(chosen) < 2:
        raise ValueError(
            f"{function}: the inter-consistency criteria compare the ranking of several "
            f"methods. Received: methods={list(chosen)}. Pass at least two."
        )
    if "model" in tests and not isinstance(model, keras.Model):
        raise TypeError(
            f"{function}: the 'model' test perturbs the weights of a clone of a Keras model. "
            f"Received: model of type {type(model).__name__}. Pass tests=('input',)."
        )
    x = as_batch(x, function)
    steps = min(_validate.positive_int(steps, "steps"), math.prod(spatial_shape(x)))
    params = {
        label: {"verbose": 0, **({"seed": seed} if takes_seed(name) else {}), **extra}
        for label, (name, extra) in chosen.items()
    }
    analyzers = {
        label: create_analyzer(name, model, **params[label]) for label, (name, _) in chosen.items()
    }
    first = next(iter(analyzers.values()))
    target = fixed_target(first, x, target)
    predicted = _predicted(first, x)
    bar = tqdm(
        total=len(chosen) * (1 + 2 * iterations * len(tests)),
        desc=function,
        disable=verbose == 0,
        delay=0 if verbose == 1 else 2.0,
    )

    explained = {}  # the clean explanations, for reexplain=False

    def scores(analyzers, model, inputs, clean_explanations=False) -> np.ndarray:
        rows = []
        for label, analyzer in analyzers.items():
            if clean_explanations:
                attributions = explained[label]
            else:
                attributions = analyzer.analyze(inputs, target)
                explained.setdefault(label, attributions)
            values = registry.metric_values(
                metric,
                model,
                inputs,
                attributions,
                target,
                analyzer=analyzer,
                name=chosen[label][0],
                params=chosen[label][1],
                masks=masks,
                steps=steps,
                seed=seed,
            )
            rows.append(np.asarray(values, dtype=np.float64).reshape(len(inputs)))
            bar.update(1)
        return np.stack(rows)

    clean = scores(analyzers, model, x)
    results = {}
    clone = None
    for test in tests:
        if test == "model" and clone is None:  # one clone, its weights re-drawn each time
            clone = cloned(model)
            trained = clone.get_weights()
            on_clone = {
                label: create_analyzer(name, clone, **params[label])
                for label, (name, _) in chosen.items()
            }
        perturbed, classes = [], []
        for which, level in enumerate(levels[test]):
            for k in range(iterations):
                rng = np.random.default_rng([seed, TESTS.index(test), which, k])
                if test == "model":
                    _noisy_weights(clone, trained, level, rng)
                    inputs, run, on = x, clone, on_clone
                else:
                    inputs, run, on = _noisy_inputs(x, level, rng), model, analyzers
                perturbed.append(scores(on, run, inputs, test == "input" and not reexplain))
                classes.append(_predicted(next(iter(on.values())), inputs))
        perturbed = np.stack(perturbed).reshape(2, iterations, *clean.shape)
        classes = np.stack(classes).reshape(2, iterations, len(x))
        kept, changed = classes[0] == predicted, classes[1] != predicted
        values = criteria(clean, perturbed[0], perturbed[1], kept, changed, better=better)
        results[test] = PerturbationResult(
            test=test,
            criteria=values,
            mc=float(np.mean(list(values.values()))),
            area=(values["IAC_AR"] + values["IEC_AR"]) * (values["IAC_NR"] + values["IEC_NR"]) / 2,
            levels=levels[test],
            minor=perturbed[0],
            disruptive=perturbed[1],
            minor_kept=kept,
            disruptive_changed=changed,
        )
    bar.close()
    return MetaEvaluation(
        metric=metric,
        better=better,
        methods=tuple(chosen),
        clean=clean,
        tests=results,
        mc=float(np.mean([result.mc for result in results.values()])),
    )


def _tests(tests: Any, function: str) -> tuple[str, ...]:
    chosen = (tests,) if isinstance(tests, str) else tuple(tests)
    if not chosen or any(test not in TESTS for test in chosen) or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"{function}: tests must be some of {TESTS}, each once. Received: tests={tests!r}."
        )
    return chosen


def _level(given: Mapping[str, float] | None, defaults: dict, test: str, name: str) -> float:
    given = {} if given is None else given
    if not isinstance(given, Mapping) or any(key not in TESTS for key in given):
        raise ValueError(
            f"meta_evaluate: {name} must be a dict {{test: level}} with tests among {TESTS}. "
            f"Received: {name}={given!r}."
        )
    return _validate.positive(given.get(test, defaults[test]), f"{name}[{test!r}]")


def _predicted(analyzer, x: np.ndarray) -> np.ndarray:
    """The predicted classes ``(B,)``: the argmax of the analyzer's explained output."""
    outputs = np.asarray(analyzer.predict(x))
    return outputs.reshape(len(x), -1).argmax(axis=1)


def _noisy_weights(clone: keras.Model, trained: list, level: float, rng) -> None:
    """Every float weight of ``clone`` set to its trained value times ``N(1, level²)`` noise.

    BatchNormalization's running statistics stay as trained (torch's
    ``parameters()``, which MetaQuantus perturbs, leaves them out too).
    """
    for variable, value in zip(clone.weights, trained):
        name = variable.name.split("/")[-1]
        if np.issubdtype(value.dtype, np.floating) and name not in _STATISTICS:
            noise = rng.normal(1.0, level, size=value.shape)
            variable.assign((value * noise).astype(value.dtype))


def _noisy_inputs(x: np.ndarray, level: float, rng) -> np.ndarray:
    """``x`` plus ``U(-level, level)`` noise, clipped to the batch's range ``[min x, max x]``."""
    noisy = x + rng.uniform(-level, level, size=x.shape)
    return np.clip(noisy, x.min(), x.max()).astype(x.dtype)
