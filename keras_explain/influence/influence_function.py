"""Influence functions (Koh & Liang 2017): exact Hessian, or Arnoldi's (Schioppa et al. 2022)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import tensorflow as tf

from keras_explain import _validate
from keras_explain.influence import engine
from keras_explain.influence.base import InfluenceMethod, checked_model

HESSIANS = ("exact", "arnoldi")
#: Largest number of parameters whose Hessian ``hessian="exact"`` forms (a P x P matrix).
EXACT_PARAMETERS = 4096


class InfluenceFunction(InfluenceMethod):
    """Influence functions (Koh & Liang 2017, ICML, arXiv:1703.04730).

    With ``θ`` the trained weights, ``H`` the Hessian at ``θ`` of the training
    objective (the mean per-example loss plus the model's regularization losses,
    ``model.losses``) and ``g_z = ∇L(θ, z)`` the loss gradient of one example
    (regularization excluded), the score of training example ``z`` for test
    example ``z'`` is

    ``I(z, z') = g_{z'}ᵀ (H + λ I)⁻¹ g_z``   (λ = ``damping``).

    Removing ``z`` from the ``n`` training examples and retraining changes the test
    loss by about ``I(z, z') / n`` (Koh & Liang's ``-I_up,loss / n``): positive
    scores mark proponents (removing them raises the test loss), negative ones
    opponents. ``self_influence()`` is ``g_zᵀ (H + λI)⁻¹ g_z``.

    ``hessian="exact"`` forms ``H`` (at most :data:`EXACT_PARAMETERS` parameters:
    pass ``layers=`` for a large model) and inverts it through its
    eigendecomposition. ``hessian="arnoldi"`` runs ``arnoldi_dim`` Arnoldi
    iterations of Hessian-vector products from a seeded start and keeps the
    ``projection_dim`` eigenpairs of largest magnitude (Schioppa et al. 2022, AAAI,
    arXiv:2112.03052): ``H⁻¹ ≈ V Λ⁻¹ Vᵀ``, and each gradient is stored as its
    ``projection_dim`` coordinates ``Vᵀ g``.

    The approximation assumes ``θ`` minimizes a convex objective; on deep
    networks the scores are fragile (Basu et al. 2021, ICLR): see the influence guide.

    Args:
        model: A trained Keras model (never modified).
        train: ``(x, y)`` arrays, or a ``tf.data.Dataset`` of ``(x, y)``.
        loss: The training loss (None: the model's compiled loss).
        layers: Names of the layers whose weights are varied (None: all trainable).
        hessian: ``"exact"`` or ``"arnoldi"``.
        damping: λ added to the Hessian's eigenvalues (>= 0).
        arnoldi_dim: Arnoldi iterations (Krylov dimension), for ``"arnoldi"``.
        projection_dim: Eigenpairs kept by ``"arnoldi"``.
        seed: Seed of Arnoldi's start vector.

    Raises:
        TypeError: As :class:`~keras_explain.influence.TracIn`.
        ValueError: For an unknown ``hessian``, a negative damping, too many
            parameters for the exact Hessian, or a singular Hessian (at the first
            query; pass ``damping > 0``).

    Warns:
        RuntimeWarning: At the first query, when ``H + λI`` has negative
            eigenvalues (they are inverted as they are).

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        ...     1, kernel_regularizer=keras.regularizers.L2(0.1))])
        >>> x = np.random.default_rng(0).normal(size=(20, 3)).astype("float32")
        >>> y = (x[:, :1] > 0).astype("float32")
        >>> loss = keras.losses.BinaryCrossentropy(from_logits=True)
        >>> function = kx.influence.InfluenceFunction(model, (x, y), loss=loss)
        >>> function.influence(x[:2], y[:2]).shape
        (2, 20)
    """

    owner = "InfluenceFunction"

    def __init__(
        self,
        model,
        train,
        *,
        loss: Any = None,
        layers: Any = None,
        hessian: str = "exact",
        damping: float = 0.0,
        arnoldi_dim: int = 200,
        projection_dim: int = 50,
        seed: int = 0,
    ):
        owner = self.owner
        self.model = checked_model(model, owner)
        self.hessian = engine.checked(owner, _validate.one_of, hessian, "hessian", HESSIANS)
        self.damping = engine.checked(owner, _validate.non_negative, damping, "damping")
        self.arnoldi_dim = engine.checked(owner, _validate.positive_int, arnoldi_dim, "arnoldi_dim")
        self.projection_dim = engine.checked(
            owner, _validate.positive_int, projection_dim, "projection_dim"
        )
        self.seed = seed
        self.training = engine.TrainingSet(train, owner, engine.input_rank(model))
        self.loss = engine.per_example_loss(loss, model, owner)
        chosen = engine.chosen_layers(model, layers, owner)
        self.gradients = engine.GradientFeatures(model, self.loss, chosen, None, seed)
        parameters = self.gradients.parameters
        if self.hessian == "exact" and parameters > EXACT_PARAMETERS:
            raise ValueError(
                f"{owner}: the exact Hessian of {parameters} parameters is too large (at most "
                f"{EXACT_PARAMETERS}). Received: layers={layers!r}. Pass layers=[...] (e.g. "
                "the last layer) or hessian='arnoldi'."
            )
        self._hvp_chunk = engine.compiled(InfluenceFunction._chunk_hvp, self)
        self._eigen: tuple[np.ndarray, np.ndarray] | None = None
        self._train: engine.Features | None = None

    # -- the Hessian ------------------------------------------------------------------------
    def _objective_hvp(self, vectors, total_of):
        variables = self.gradients.variables
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                total = total_of()
            grads = _gradient(inner, total, variables)
            dot = tf.add_n(
                [tf.reduce_sum(tf.cast(g, tf.float32) * v) for g, v in zip(grads, vectors)]
            )
        return _gradient(outer, dot, variables)

    def _chunk_hvp(self, x, y, vectors):
        clone = self.gradients.clone
        return self._objective_hvp(
            vectors,
            lambda: tf.reduce_sum(self.gradients.losses(y, clone(x, training=False))),
        )

    def _regularization_hvp(self, vectors):
        return self._objective_hvp(vectors, self._regularization)

    def hvp(self, vector: np.ndarray) -> np.ndarray:
        """``H v`` of a flat ``(P,)`` vector: the training set's mean plus the regularization's."""
        variables = self.gradients.variables
        pieces, start = [], 0
        for variable in variables:
            size = int(np.prod(variable.shape))
            pieces.append(
                tf.constant(vector[start : start + size].reshape(variable.shape), tf.float32)
            )
            start += size
        total = np.zeros(len(vector))
        for x, y in self.training.chunks(self.gradients.rows()):
            parts = self._hvp_chunk(engine.tensors(x), tf.constant(y), pieces)
            total += _flat(parts)
        total /= self.training.size
        if self.gradients.clone.losses:
            total += _flat(self._regularization_hvp(pieces))
        return total

    def _hessian_of(self, total_of) -> np.ndarray:
        variables = self.gradients.variables
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                total = total_of()
            grads = _gradient(inner, total, variables)
            flat = tf.concat([tf.reshape(tf.cast(g, tf.float32), [-1]) for g in grads], 0)
        rows = outer.jacobian(flat, variables, experimental_use_pfor=True)
        size = self.gradients.parameters
        rows = [
            tf.zeros((size, *v.shape), tf.float32) if r is None else tf.cast(r, tf.float32)
            for r, v in zip(rows, variables)
        ]
        return tf.concat([tf.reshape(r, [size, -1]) for r in rows], 1)

    def _chunk_hessian(self, x, y):
        clone = self.gradients.clone
        return self._hessian_of(
            lambda: tf.reduce_sum(self.gradients.losses(y, clone(x, training=False)))
        )

    def _exact_hessian(self) -> np.ndarray:
        """``H``: the mean of the chunks' Hessians plus the regularization's, symmetrized."""
        chunk_hessian = engine.compiled(InfluenceFunction._chunk_hessian, self)
        hessian = np.zeros((self.gradients.parameters,) * 2)
        rows = self.gradients.rows(backward_passes=self.gradients.parameters)
        for x, y in self.training.chunks(rows):
            hessian += chunk_hessian(engine.tensors(x), tf.constant(y)).numpy()
        hessian /= self.training.size
        if self.gradients.clone.losses:
            hessian += self._hessian_of(self._regularization).numpy()
        return (hessian + hessian.T) / 2

    def _regularization(self):
        return tf.add_n([tf.cast(v, tf.float32) for v in self.gradients.clone.losses])

    def _arnoldi(self) -> tuple[np.ndarray, np.ndarray]:
        """Top eigenpairs of ``H`` from ``arnoldi_dim`` Arnoldi iterations (Schioppa et al.)."""
        parameters = self.gradients.parameters
        steps = min(self.arnoldi_dim, parameters)
        basis = np.zeros((steps + 1, parameters))
        hessenberg = np.zeros((steps + 1, steps))
        start = np.random.default_rng(self.seed).normal(size=parameters)
        basis[0] = start / np.linalg.norm(start)
        for j in range(steps):
            w = self.hvp(basis[j])
            for i in range(j + 1):  # modified Gram-Schmidt
                hessenberg[i, j] = basis[i] @ w
                w = w - hessenberg[i, j] * basis[i]
            hessenberg[j + 1, j] = np.linalg.norm(w)
            if hessenberg[j + 1, j] < 1e-12:  # an invariant subspace: exact
                steps = j + 1
                break
            basis[j + 1] = w / hessenberg[j + 1, j]
        square = hessenberg[:steps, :steps]
        values, vectors = np.linalg.eigh((square + square.T) / 2)
        keep = np.argsort(-np.abs(values))[: self.projection_dim]
        return values[keep], basis[:steps].T @ vectors[:, keep]

    def _eigenpairs(self) -> tuple[np.ndarray, np.ndarray]:
        if self._eigen is None:
            if self.hessian == "exact":
                values, vectors = np.linalg.eigh(self._exact_hessian())
            else:
                values, vectors = self._arnoldi()
            values = values + self.damping
            # below float32 round-off of the Hessian's entries, an eigenvalue is noise
            noise = np.finfo(np.float32).eps * len(values) * max(np.abs(values).max(), 1e-30)
            if np.any(np.abs(values) <= noise):
                raise ValueError(
                    f"{self.owner}: the Hessian is singular (smallest |eigenvalue| "
                    f"{np.abs(values).min():.3g}). Received: damping={self.damping}. Pass "
                    "damping > 0 (e.g. 0.01), or regularize the model."
                )
            if values.min() < 0:
                warnings.warn(
                    f"{self.owner}: the Hessian plus damping has {int((values < 0).sum())} "
                    f"negative eigenvalue(s) (smallest {values.min():.3g}): these weights are "
                    "not the minimum of a convex objective, and the scores are unreliable "
                    f"(Basu et al. 2021). Raise damping above {-values.min():.3g}, pass "
                    "layers=[the last layer], or train to convergence.",
                    RuntimeWarning,
                    stacklevel=4,
                )
            self._eigen = (values, vectors)
            self.gradients.basis = vectors
        return self._eigen

    # -- scores -----------------------------------------------------------------------------
    def _training_features(self) -> engine.Features:
        self._eigenpairs()
        if self._train is None:
            chunks = self.training.chunks(self.gradients.rows())
            self._train = self.gradients.features(chunks)
        return self._train

    def influence(self, x: Any, y: Any = None) -> np.ndarray:
        """``(n_test, n_train)`` scores ``g_testᵀ (H + λI)⁻¹ g_train``, float64.

        Args:
            x: Test inputs ``(n_test, ...)``.
            y: Their labels, as the loss expects them.

        Raises:
            ValueError: For labels that are not one per test example, or a singular Hessian.
        """
        x, y = engine.query_pair(x, y, self.owner)
        training = self._training_features()
        values, _ = self._eigenpairs()
        test = self.gradients.features(engine.chunked(x, y, self.gradients.rows()))
        return (test.full.astype(np.float64) / values) @ training.full.T.astype(np.float64)

    def self_influence(self) -> np.ndarray:
        """``(n_train,)`` ``g_zᵀ (H + λI)⁻¹ g_z`` of every training example."""
        training = self._training_features()
        values, _ = self._eigenpairs()
        return np.sum(training.full.astype(np.float64) ** 2 / values, axis=1)


def _gradient(tape: tf.GradientTape, target, variables) -> list[tf.Tensor]:
    """The gradient, zeros for a variable the target does not reach (e.g. a bias' penalty)."""
    grads = tape.gradient(target, variables)
    return [
        tf.zeros(v.shape, tf.float32) if g is None else tf.cast(g, tf.float32)
        for g, v in zip(grads, variables)
    ]


def _flat(tensors) -> np.ndarray:
    return np.concatenate([np.asarray(t, np.float64).reshape(-1) for t in tensors])
