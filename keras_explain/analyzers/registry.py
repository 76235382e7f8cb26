"""The registry of analyzer names used by :func:`create_analyzer`.

A name maps to a class and the keyword arguments the name implies (presets are
data: ``"lrp.epsilon"`` is :class:`~keras_explain.analyzers.relevance.LRP` with
``composite="epsilon"``). A class registered with :func:`register` carries its
name as ``cls.name``.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from typing import Any

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register(name: str, **defaults: Any):
    """Class decorator: register an analyzer class under ``name``.

    Args:
        name: The registry name, e.g. ``"lrp.epsilon"``.
        **defaults: Keyword arguments the name implies (presets); a user's
            keyword overrides them.

    Returns:
        The decorator, which returns the class unchanged.
    """

    def decorate(cls):
        add(name, cls, **defaults)
        if "name" not in vars(cls):
            cls.name = name
        return cls

    return decorate


def add(name: str, cls: Callable[..., Any], **defaults: Any) -> None:
    """Register ``cls`` (with preset keyword ``defaults``) under ``name``.

    Raises:
        ValueError: If ``name`` is taken by another class.
    """
    factory = functools.partial(cls, **defaults) if defaults else cls
    existing = _REGISTRY.get(name)
    if existing is not None and getattr(existing, "func", existing) is not cls:
        raise ValueError(f"Analyzer name {name!r} is already registered.")
    _REGISTRY[name] = factory


def names() -> list[str]:
    """All registered analyzer names, sorted."""
    return sorted(_REGISTRY)


def analyzer_class(name: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The class registered under ``name`` and the preset keyword arguments it implies.

    Raises:
        KeyError: For an unknown name.

    Example:
        >>> from keras_explain.analyzers import registry
        >>> registry.analyzer_class("gradient")[0].__name__
        'Gradient'
    """
    factory = _REGISTRY[name]
    return getattr(factory, "func", factory), dict(getattr(factory, "keywords", None) or {})


def parameters(name: str) -> list[str]:
    """The keyword parameters the analyzer registered under ``name`` takes.

    The class's own and, for a preset, the preset's (``"lrp.epsilon"`` takes
    ``epsilon``).

    Raises:
        KeyError: For an unknown name.

    Example:
        >>> from keras_explain.analyzers import registry
        >>> registry.parameters("lrp.epsilon")[0]
        'epsilon'
    """
    cls, defaults = analyzer_class(name)
    return cls.parameters(**defaults)


def create_analyzer(name: str, model: Any, **kwargs: Any):
    """Create an analyzer by its registry name.

    Args:
        name: One of :func:`names`, e.g. ``"gradient"`` or ``"lrp.epsilon"``.
        model: The Keras model (or callable, for model-agnostic methods).
        **kwargs: The analyzer's parameters, including iNNvestigate's
            ``neuron_selection_mode``.

    Returns:
        The analyzer.

    Raises:
        ValueError: For an unknown name; the message lists close names.

    Example:
        >>> import keras, numpy as np, keras_explain as kx
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> analyzer = kx.create_analyzer("gradient", model)
        >>> analyzer.analyze(np.ones((1, 4), "float32")).shape
        (1, 4)
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), names(), n=5, cutoff=0.5)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"Unknown analyzer name. Received: name={name!r}.{hint} "
            "All names: keras_explain.analyzers.names()."
        )
    return _REGISTRY[name](model, **kwargs)
