"""Pictures of representations return matplotlib figures."""

import numpy as np

from keras_explain import representations as rep


def test_plots_return_figures():
    from matplotlib.figure import Figure

    figure = rep.plot_similarity(np.eye(2), ["a", "b"], ["c", "d"], title="t")
    assert isinstance(figure, Figure)
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == ["a", "b"]
    figure = rep.plot_embedding(np.zeros((6, 2)), np.array(["x", "y", "z"] * 2))
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["x", "y", "z"]
