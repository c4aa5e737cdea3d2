"""Every default and limit has one home (mfruntime/config.py); other modules import it instead of re-typing it."""
import re
from pathlib import Path

import mfruntime

ROOT = Path(mfruntime.__file__).parent
# A re-typed default or limit: a literal where config.py's name belongs.
RETYPED = {
    "step range or default": re.compile(r"\b(MIN_STEPS|MAX_STEPS|DEFAULT_STEPS)\s*=|\bsteps: int = 4\b|"
                                        r"add_argument\(\"--(drift-)?steps\"[^)]*default=\d"),
    "sample rate": re.compile(r"sample_rate: int = 16_?000"),
    "frame rate": re.compile(r"\bfps: int = 25\b"),
    "chunk length": re.compile(r"chunk_seconds: float = 0\.16|\* 0\.16\b"),
    "default model": re.compile(r"model: str = \"tiny\"|\"--model\", default=\"tiny\""),
    "serve defaults": re.compile(r"tcp://127\.0\.0\.1:5555\"|max_characters: int = \d|--max-characters\", type=int, default=\d"),
}


def test_defaults_and_limits_are_defined_once():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        if path == ROOT / "config.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for what, rx in RETYPED.items():
                if rx.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()}")
    assert not found, "re-typed instead of imported from mfruntime/config.py:\n" + "\n".join(found)


def test_config_holds_each_of_them():
    text = (ROOT / "config.py").read_text()
    for name in ("MIN_STEPS, MAX_STEPS = 1, 50", "DEFAULT_STEPS = 4", "sample_rate: int = 16_000", "fps: int = 25",
                 "chunk_seconds: float = 0.16", 'DEFAULT_MODEL = "tiny"', "DEFAULT_MAX_CHARACTERS = 16"):
        assert name in text, name
