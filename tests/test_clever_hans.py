"""Issue #24's ground truth: a model that learned a shortcut, found by SpRAy and CRP.

Runs ``benchmarks/clever_hans.py``'s experiment (trains a CNN on shapes whose circles
mostly carry a tag; about 40 seconds), so it is in the slow step.
"""

import importlib.util

import helpers
import pytest

pytestmark = pytest.mark.slow


def test_spray_isolates_the_tagged_images_and_crp_finds_the_tag():
    path = helpers.REPO_ROOT / "benchmarks" / "clever_hans.py"
    spec = importlib.util.spec_from_file_location("clever_hans", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = module.experiment()
    assert found["tagged_correct"] > found["removed_correct"] + 0.2  # it does use the tag
    assert found["ari"] >= 0.8  # the tagged circles are a cluster of their own ...
    assert found["suggested"] == 2  # ... and the eigengap points to it
    assert found["best_mass"] >= 0.5  # a conv3 concept that looks at the tag
    # without the tag, the flagged cluster's predictions move (7 December 2026: 41% of
    # them change class, and the probability of "circle" drops by 0.40 on average)
    assert found["flagged_changed"] >= 0.3 and found["flagged_drop"] >= 0.25
