"""`mf eval` end to end on an untrained tiny model (speed of the pipeline, shape of the report)."""
import dataclasses
import json

import numpy as np

import pytest

from mfruntime.cli import main
from mfruntime.config import preset
from mfruntime.eval.report import format_table, write_json
from mfruntime.eval.run import EvalConfig, evaluate
from mfruntime.model.av import AVModel
from mfruntime.model.bundle import save_bundle


@pytest.fixture(scope="module")
def untrained_bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "untrained.safetensors"
    return save_bundle(AVModel(dataclasses.replace(preset("tiny"), rig="av")), path)  # with a rig head


def test_eval_table_end_to_end_on_untrained_model(untrained_bundle, tmp_path):
    cfg = EvalConfig(model=str(untrained_bundle), baseline=str(untrained_bundle), clips=2, seconds=2.0, steps=(2, 1),
                     drift_seconds=4.0, drift_window=2.0, drift_steps=1, out=str(tmp_path / "eval"),
                     cache=str(tmp_path / "cache"), seeds=(0, 1))
    result = evaluate(cfg, progress=False)
    rows = {(r["variant"], r["steps"]) for r in result["rows"]}
    assert len(result["per_seed"]) == 2 * len(result["rows"])  # one row per seed, then their mean
    two = [r for r in result["per_seed"] if (r["variant"], r["steps"]) == ("mutual", 1)]
    mean = [r for r in result["rows"] if (r["variant"], r["steps"]) == ("mutual", 1)][0]
    assert [r["seed"] for r in two] == [0, 1] and two[0]["fd"] != two[1]["fd"]  # another seed, other noise
    assert mean["fd"] == pytest.approx((two[0]["fd"] + two[1]["fd"]) / 2)
    assert mean["spread"]["fd"] == pytest.approx(abs(two[0]["fd"] - two[1]["fd"]) / 2)
    assert rows == {("mutual", 2), ("mutual", 1), ("no-mutual", 2), ("no-mutual", 1), ("drive", 1)}
    for r in result["rows"]:
        assert r["s_per_s"] > 0 and r["ttfc_ms"] > 0 and r["fd"] >= 0 and 1.0 <= r["pesq"] <= 4.7
        assert r["identity_error"] >= 0 and r["confidence_shuffled"] == r["confidence_shuffled"]  # not NaN
    drive = [r for r in result["rows"] if r["variant"] == "drive"][0]
    assert drive["pesq"] > 4.0  # audio-driven chunks carry the reference speech itself
    assert len(result["drift"]["windows"]) == 2 and len(result["drift"]["chunk_ms"]) == 25
    text = (tmp_path / "eval" / "eval.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    saved = json.loads(text)
    # eval.json holds the rows with any metric that could not be computed as null (an untrained rig head's
    # constant jawOpen has no correlation).
    assert saved["rows"] == json.loads(write_json({"rows": result["rows"]}, tmp_path / "rows.json").read_text())["rows"]
    assert all((tmp_path / "eval" / name).is_file() for name in ("metrics_vs_steps.png", "drift.png", "contact_sheet.png"))
    from PIL import Image
    sheet = Image.open(tmp_path / "eval" / "contact_sheet.png")
    # 2 clips × (2 step counts + the reference) rows of 64-px frames, 8 frames wide after an 80-px label column.
    assert sheet.size == (80 + 8 * 64, 2 * 3 * 64 + 6)
    table = format_table(result)
    assert "Mutual Forcing (few-step)" in table and "without MF" in table and "offset estimator" in table
    assert "spread over seeds" in table
    # The rig stream's agreement with the frames and the phonemes is scored (an untrained head: any value).
    for r in result["rows"]:
        assert 0 <= r["rig_viseme_agree"] <= 1 and r["rig_offset_std_ms"] >= 0
    confusion = np.array(result["per_seed"][0]["rig_confusion"])
    assert confusion.shape == (15, 15) and confusion.sum() == 2 * 48  # 2 clips × 48 frames (whole chunks), once each
    d = result["rig_drive"]
    assert d["level_db"] == -12 and d["level_mouth_max_ratio"] > 0 and 0 <= d["unseen_scored"] <= 2
    assert "rig stream (docs/RIG.md)" in table and "unseen voices" in table
    # The reference clips are cached: a second run does not synthesise them again.
    assert len(list((tmp_path / "cache").glob("eval-corpus-*"))) == 2


def test_eval_cli_rejects_bad_arguments(capsys, tmp_path):
    assert main(["eval", "--clips", "0", "--out", str(tmp_path)]) == 2
    assert "--clips must be at least 1" in capsys.readouterr().err
    assert main(["eval", "--model", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_eval_json_has_no_nan(tmp_path):
    """JSON has no NaN: a metric that could not be computed (a silent window's PESQ) is written as null."""
    path = write_json({"pesq": float("nan"), "rows": [{"x": float("inf"), "y": 1.5}]}, tmp_path / "e.json")
    assert json.loads(path.read_text()) == {"pesq": None, "rows": [{"x": None, "y": 1.5}]}


def test_eval_rejects_repeated_seeds():
    with pytest.raises(ValueError, match="--seeds must be distinct"):
        EvalConfig(seeds=(1, 1))


def _eval_doc(fd_by_seed: list[float], seeds=(0, 1, 2)) -> dict:
    rows = [{"variant": "mutual", "steps": 4, "seed": s, "fd": fd, "stoi": 0.8, "pesq": 1.1, "offset_std_ms": 5.0,
             "abs_offset_ms": 3.0, "confidence": 0.4, "identity_error": 0.1, "offset_ms": 0.0}
            for s, fd in zip(seeds, fd_by_seed)]
    return {"config": {"clips": 16, "seconds": 4.0, "seeds": list(seeds), "drift_steps": 4}, "per_seed": rows}


def test_compare_claims_a_difference_only_beyond_the_spread(tmp_path, capsys):
    """Paired, seed-by-seed differences: a lower FD on every seed by more than the spread is "better" (+); a
    mixed or small difference is no claim (~); results evaluated with other seeds are refused."""
    from mfruntime.eval.compare import load_result, paired

    for name, fds in {"ref": [5.0, 5.2, 4.9], "better": [4.0, 4.1, 3.9], "noise": [5.1, 4.9, 5.0]}.items():
        (tmp_path / name).mkdir()
        write_json(_eval_doc(fds), tmp_path / name / "eval.json")
    ref, better, noise = (load_result(str(tmp_path / n)) for n in ("ref", "better", "noise"))
    d = paired(better, ref, "mutual", "mutual", 4, "fd")
    assert d["beyond_spread"] and d["a_better"] and d["mean"] == pytest.approx(-1.033, abs=1e-3)
    assert not paired(noise, ref, "mutual", "mutual", 4, "fd")["beyond_spread"]
    assert main(["compare", f"ref={tmp_path / 'ref'}", f"better={tmp_path / 'better'}", f"noise={tmp_path / 'noise'}",
                 "--steps", "4"]) == 0
    out = capsys.readouterr().out
    better_line = [line for line in out.splitlines() if line.startswith("better") and "±" in line][-1]
    noise_line = [line for line in out.splitlines() if line.startswith("noise") and "±" in line][-1]
    assert better_line.split()[2].startswith("-1.033") and "+" in better_line.split()[4] and "~" in noise_line
    (tmp_path / "other").mkdir()
    write_json(_eval_doc([4.0, 4.1], seeds=(0, 1)), tmp_path / "other" / "eval.json")
    assert main(["compare", str(tmp_path / "ref"), str(tmp_path / "other")]) == 2
    assert "paired differences need the same" in capsys.readouterr().err
