"""Sphinx configuration for keras_explain (MyST-NB, napoleon, autodoc)."""

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
# The notebook kernels inherit this environment. TensorFlow's C++ log (3 = fatal only)
# reports the machine, not the tutorial: a CUDA build on a machine without a GPU logs
# "E0000 ... failed call to cuInit" at its first op, whatever the code does. Python
# warnings (tf.function retracing, ours) are not C++ logs and still fail the build.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

project = "keras_explain"
author = "keras_explain developers"
copyright = "keras_explain developers, MIT License"

import keras_explain  # noqa: E402

release = version = keras_explain.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# The tutorials live in ../tutorials (CI runs them here, in the docs build); they
# are copied here so that MyST-NB renders them as pages. They are stored without
# outputs (tests/across/test_tutorials.py fails otherwise) and the docs build executes them,
# so the pages always show what the current code prints.
TUTORIALS = HERE / "tutorials"
TUTORIALS.mkdir(exist_ok=True)
for stale in TUTORIALS.glob("*.ipynb"):
    stale.unlink()
for notebook in sorted((ROOT / "tutorials").glob("*.ipynb")):
    shutil.copy2(notebook, TUTORIALS / notebook.name)

# "cache": jupyter-cache re-executes a notebook only when its code changed
# (docs/_build/.jupyter_cache); a clean build executes every notebook.
nb_execution_mode = "cache"
nb_execution_cache_path = str(HERE / "_build" / ".jupyter_cache")
nb_execution_timeout = 600
nb_execution_raise_on_error = True  # a failing cell fails the build
nb_execution_show_tb = True
# Any stderr in a rendered notebook (a TensorFlow warning such as tf.function
# retracing, a Python warning) is a Sphinx warning, so `sphinx-build -W` fails on it.
# The one exception is TensorFlow's C++ start-up banner ("All log messages before
# absl::InitializeLog() ...", oneDNN, CUDA), which TF 2.21 writes to stderr at import
# whatever TF_CPP_MIN_LOG_LEVEL says: each notebook's import cell carries the
# `remove-stderr` tag.
nb_output_stderr = "warn"
# Progress bars (tqdm, on stderr) appear only when a run lasts over two seconds, which
# depends on the machine's load: the executed notebooks run without them (tqdm reads
# TQDM_DISABLE from the environment the kernels inherit).
os.environ.setdefault("TQDM_DISABLE", "1")
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
suppress_warnings = ["myst.header"]

html_theme = "sphinx_rtd_theme"
html_title = "keras_explain"
html_static_path = []
