"""The keras-explain command: method listing and argument errors."""

import os
import subprocess
import sys

import pytest

from keras_explain import analyzers, cli


def test_methods_lists_the_registry(capsys):
    assert cli.main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == analyzers.names()
    gradient = next(line for line in lines if line.split()[0] == "gradient")
    assert "Saliency" in gradient
    deconvnet = next(line for line in lines if line.split()[0] == "deconvnet")
    assert "g_in = relu(g_out)" in deconvnet  # reST markup is stripped for the terminal
    assert not any("``" in line or ":class:" in line for line in lines)
    epsilon = next(line for line in lines if line.split()[0] == "lrp.epsilon")
    assert epsilon.endswith("LRP-ε on every linear op [kx.LRP(model, 'epsilon')]")


def test_methods_through_the_installed_module():
    result = subprocess.run(
        [sys.executable, "-m", "keras_explain.cli", "methods"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "integrated_gradients" in result.stdout.split()


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--epochs", "0"])
    assert exit_info.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([])
