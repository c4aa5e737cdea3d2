"""The `mf` command: help for every option, one-line errors, and a real synth run."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mfruntime.cli import build_parser, main


def _mf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mfruntime.cli", *args], capture_output=True, text=True, timeout=120)


def test_synth_command_writes_a_corpus(tmp_path):
    out = tmp_path / "c"
    res = _mf("-q", "data", "synth", "--out", str(out), "--clips", "2", "--seconds", "1.5", "--seed", "3")
    assert res.returncode == 0, res.stderr
    assert str(out.resolve()) in res.stdout and "2 clips" in res.stdout
    assert len(list(out.glob("clip_*.mp4"))) == 2
    assert json.loads((out / "corpus.json").read_text())["config"]["seed"] == 3
    res = _mf("-q", "data", "scan", str(out), "--window", "0.64")
    assert res.returncode == 0, res.stderr
    assert "2 usable clips (2 with ground truth), 0 skipped" in res.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["data", "synth"], "--out"),
        (["data", "synth", "--out", "x", "--clips", "abc"], "invalid int value"),
        (["data", "synth", "--out", "x", "--clips", "0"], "--clips must be"),
        (["data", "synth", "--out", "x", "--size", "65"], "invalid choice"),
        (["data", "synth", "--out", "x", "--seconds", "0.2"], "--seconds must be"),
        (["data", "synth", "--out", "x", "--bogus"], "unrecognized arguments"),
        (["data", "frobnicate"], "invalid choice"),
        (["dance"], "invalid choice"),
        (["data", "scan", "/no/such/folder"], "does not exist"),
        ([], "required"),
    ],
)
def test_bad_arguments_give_one_line(args, expected, capsys):
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mf: error:") and expected in lines[0]
    assert "Traceback" not in err


def test_bad_arguments_through_the_real_entry_point():
    res = _mf("data", "synth", "--out", "x", "--clips", "-4")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def _all_parsers(parser):
    yield parser
    for action in parser._actions:
        if hasattr(action, "choices") and isinstance(action.choices, dict):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_every_option_has_help():
    for parser in _all_parsers(build_parser()):
        for action in parser._actions:
            if action.option_strings or action.dest not in ("verb", "action"):
                assert action.help, f"{parser.prog}: {action.dest} has no help text"
        assert parser.format_help()
    res = _mf("data", "synth", "--help")
    assert res.returncode == 0
    for opt in ("--out", "--clips", "--seconds", "--size", "--seed", "--workers"):
        assert opt in res.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "--stage", "audio", "--config", "/no/such/recipe.toml"], "not found"),
        (["train", "--stage", "dance", "--config", "recipes/tiny.toml"], "invalid choice"),
        (["export", "--runs", "/no/such/runs", "--out", "/tmp/x.safetensors"], "is missing: train stage"),
    ],
)
def test_train_and_export_errors_are_one_line(args, expected, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
