"""``kx.visualize`` as a package: it imports neither TensorFlow nor pyplot."""

from keras_explain import visualize


def test_module_needs_no_tensorflow_and_no_display():
    """kx.visualize imports neither TensorFlow nor pyplot (loaded without the package's
    __init__, which imports TensorFlow for the analyzers)."""
    import os
    import subprocess
    import sys

    package = os.path.dirname(os.path.dirname(visualize.__file__))
    script = (
        "import sys, types\n"
        "stub = types.ModuleType('keras_explain')\n"
        f"stub.__path__ = [{package!r}]\n"
        "sys.modules['keras_explain'] = stub\n"
        "import keras_explain.visualize as module\n"
        "import numpy as np\n"
        "module.overlay(np.ones((1, 4, 4, 1)), np.ones((1, 4, 4, 1)))\n"
        "module.heatmap(np.ones((1, 4, 4, 1)))\n"
        "module.text_heatmap(['a', 'b'], [1.0, -1.0])\n"
        "loaded = ('matplotlib.pyplot', 'tensorflow', 'keras')\n"
        "print(sorted(k for k in loaded if k in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
