"""The analyzer registry (analyzers/registry.py): names and their errors."""

import pytest

import keras_explain as kx


def test_unknown_analyzer_name_lists_close_names(dense_model):
    with pytest.raises(
        ValueError,
        match=r"Unknown analyzer name\. Received: "
        r"name='guided_backpropagation'\. Did you mean "
        r"\['guided_backprop'",
    ):
        kx.create_analyzer("guided_backpropagation", dense_model)
    with pytest.raises(ValueError, match=r"'integrated_gradient'.*'integrated_gradients'"):
        kx.create_analyzer("integrated_gradient", dense_model)
    with pytest.raises(
        ValueError,
        match=r"Received: name='zzz'\. All names: "
        r"keras_explain\.analyzers\.names\(\)",
    ):
        kx.create_analyzer("zzz", dense_model)
