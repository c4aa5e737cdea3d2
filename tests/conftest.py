"""Shared fixtures: a tiny real corpus made once per test session."""
from __future__ import annotations

import pytest

from mfruntime.data.synth import SynthConfig, synthesize_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """Four 2-second clips at 64 px, made by the real synthesiser with two worker processes."""
    out = tmp_path_factory.mktemp("corpus")
    cfg = SynthConfig(out=str(out), clips=4, seconds=2.0, size=64, seed=7, workers=2)
    manifest = synthesize_corpus(cfg, progress=False)
    return out, cfg, manifest
