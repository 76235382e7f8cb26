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


def test_the_command_holds_back_tensorflow_start_up_logs():
    # TensorFlow 2.21 writes its oneDNN / CUDA / CPU-guard lines from C++ before its log
    # level is read: without the launcher this stderr holds them.
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = subprocess.run(
        [sys.executable, "-m", "keras_explain_cli", "methods"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "integrated_gradients" in quiet.stdout.split()
    assert quiet.stderr == ""


def test_the_launcher_level_yields_to_the_user_and_to_verbose(monkeypatch, capsys):
    import keras_explain_cli

    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert keras_explain_cli.main(["methods"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    assert keras_explain_cli.main(["methods"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    assert keras_explain_cli.main(["--verbose", "methods"]) == 0
    assert keras_explain_cli.main(["methods", "--verbose"]) == 0
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert "lrp.epsilon" in capsys.readouterr().out


def test_held_stderr_discards_on_success_and_replays_on_failure(capfd):
    from keras_explain_cli import held_stderr

    with held_stderr():
        os.write(2, b"start-up noise\n")
    print("after", file=sys.stderr)
    assert capfd.readouterr().err == "after\n"
    with pytest.raises(ImportError, match="broken"), held_stderr():
        os.write(2, b"why it broke\n")
        raise ImportError("broken")
    assert capfd.readouterr().err == "why it broke\n"
