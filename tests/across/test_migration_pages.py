"""The migration pages name what exists: every ``kx.`` name and every registry name.

``docs/coming_from_captum.md``, ``docs/coming_from_tf_keras_vis.md`` and
``docs/innvestigate.md`` map other libraries' names to ours; a name that does not
resolve (a renamed class, a method that was said to be missing but exists, or the
reverse) fails here.
"""

import re
from pathlib import Path

import pytest

import keras_explain as kx
from keras_explain.analyzers import registry

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ["coming_from_captum.md", "coming_from_tf_keras_vis.md", "innvestigate.md"]


def resolve(dotted: str):
    value = kx
    for part in dotted.split(".")[1:]:
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("page", PAGES)
def test_every_kx_name_a_page_mentions_exists(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    names = sorted(set(re.findall(r"\bkx(?:\.[A-Za-z_]\w*)+", text)))
    assert names, page
    missing = []
    for name in names:
        try:
            resolve(name)
        except AttributeError:
            missing.append(name)
    assert missing == [], f"{page} names {missing}, which keras_explain does not have"


@pytest.mark.parametrize("page", PAGES)
def test_the_keras_explain_column_holds_registry_names(page):
    """Backquoted lower-case names in the second column of the name maps are methods."""
    text = (DOCS / page).read_text(encoding="utf-8")
    known = set(registry.names())
    unknown = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[1].startswith("---") or cells[1] == "keras_explain":
            continue
        for name in re.findall(r"`([a-z][a-z0-9_.]*)`", cells[1]):
            if not name.startswith("kx.") and name not in known:
                unknown.append(name)
    assert unknown == [], f"{page}: not registry names: {unknown}"
