"""Sphinx configuration for keras_explain (MyST-NB, napoleon, autodoc)."""

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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

# The tutorials live in ../tutorials (run by `pytest --nbmake tutorials/`); they
# are copied here so that MyST-NB renders them as pages. Stored outputs are shown
# as they are: the docs build never executes notebooks.
TUTORIALS = HERE / "tutorials"
TUTORIALS.mkdir(exist_ok=True)
for stale in TUTORIALS.glob("*.ipynb"):
    stale.unlink()
for notebook in sorted((ROOT / "tutorials").glob("*.ipynb")):
    shutil.copy2(notebook, TUTORIALS / notebook.name)

nb_execution_mode = "off"
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
