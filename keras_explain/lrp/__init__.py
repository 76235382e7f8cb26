"""Rule-based backward passes: rules, composites that assign them, canonizers.

- :mod:`~keras_explain.lrp.rules`: how the signal arriving at one op turns into
  the one leaving it (LRP rules, guided backprop, deconvnet).
- :mod:`~keras_explain.lrp.composites`: which rule applies to which op; the
  presets.
- :mod:`~keras_explain.lrp.canonizers`: analysis-time rewrites of a model's plan
  (BatchNormalization folding).

They are written against the public graph view, :mod:`keras_explain.graph`.
The three modules are also available as ``keras_explain.rules``,
``keras_explain.composites`` and ``keras_explain.canonizers``.
"""

from keras_explain.lrp import canonizers, composites, rules

__all__ = ["canonizers", "composites", "rules"]
