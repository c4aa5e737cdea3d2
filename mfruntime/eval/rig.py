"""`mf eval`'s scores of the rig stream (docs/RIG.md): accuracy, visemes, sync, drive with unseen voices, level.

- **jawOpen r**: Pearson correlation of the generated ``jawOpen`` with the ground-truth mouth opening of the
  reference clip the generation follows (same phonemes and timing; in drive mode, the same speech).
- **frames r**: the same against the face probe's mouth opening of the generated frames (rig vs pixels).
- **viseme agreement**: the share of frames whose strongest generated viseme is the strongest viseme of the
  clip's phoneme timeline (all frames, and spoken frames only); the confusion matrix is kept in eval.json.
- **rig offset**: the project's offset estimator (:mod:`mfruntime.eval.offset`) on the ``jawOpen`` track vs
  the generated (or driving) audio, minus the natural lag of the ground-truth opening measured the same way on
  the reference clips.
- **unseen voices** (drive): each clip's text spoken by an eSpeak voice outside the corpus' ranges
  (:func:`unseen_voice`) drives the model; rig and frame offsets against that speech.
- **level** (drive): the same speech at 0 dB and −12 dB; the probe's mouth opening (max and mean over the
  clip) and the rig's ``jawOpen`` at −12 dB as a share of those at 0 dB.
"""
from __future__ import annotations

import numpy as np

from mfruntime.data.speech import Voice
from mfruntime.rig import CONTROLS, FACE_CONTROLS, OVR_VISEMES, ovr_weights

JAW = CONTROLS.index("jawOpen")
#: Voices outside the training corpus' ranges (variants m1–m7/f1–f5, pitch 25–75, rate 135–205, range 30–80).
UNSEEN_VOICES = (Voice("en-us+klatt", pitch=88, rate=235, pitch_range=95),
                 Voice("en+croak", pitch=12, rate=110, pitch_range=10),
                 Voice("en-gb-x-rp+m8", pitch=92, rate=120, pitch_range=90),
                 Voice("en-us+f5", pitch=8, rate=250, pitch_range=20))
LEVEL_DB = -12.0


def unseen_voice(i: int) -> Voice:
    return UNSEEN_VOICES[i % len(UNSEEN_VOICES)]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    a, b = np.asarray(a[:n], np.float64), np.asarray(b[:n], np.float64)
    return float(np.corrcoef(a, b)[0, 1]) if n > 1 and a.std() > 0 and b.std() > 0 else float("nan")


def viseme_truth(phonemes, n: int, fps: int) -> np.ndarray:
    """(n,) index of the strongest OVR viseme of ``phonemes`` at each frame."""
    return ovr_weights(phonemes, np.arange(n) / fps).argmax(1)


def rig_scores(rig: np.ndarray, truth_open: np.ndarray, frames_open: np.ndarray, phonemes, fps: int) -> dict:
    """Accuracy scores of one clip's rig frames (T, len(CONTROLS)); ``confusion`` is a (15, 15) count matrix
    (rows: true viseme, columns: generated)."""
    n = min(len(rig), len(truth_open), len(frames_open))
    k = len(FACE_CONTROLS)
    gen = rig[:n, k:].argmax(1)
    true = viseme_truth(phonemes, n, fps)
    spoken = true != OVR_VISEMES.index("sil")
    confusion = np.zeros((len(OVR_VISEMES), len(OVR_VISEMES)), np.int64)
    np.add.at(confusion, (true, gen), 1)
    return {"jaw_r": _pearson(rig[:n, JAW], truth_open[:n]), "frames_r": _pearson(rig[:n, JAW], frames_open[:n]),
            "viseme_agree": float((gen == true).mean()),
            "viseme_agree_spoken": float((gen[spoken] == true[spoken]).mean()) if spoken.any() else float("nan"),
            "confusion": confusion}


def nan_mean(values) -> float:
    """Mean of the finite values (NaN when there are none, without numpy's warning)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def nan_std(values) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.std()) if v.size else float("nan")


def summarize(per_clip: list[dict], offsets: list[float]) -> dict:
    """Means over clips (NaN-safe) and the rig offset's mean and std; the confusion matrix summed."""
    out = {f"rig_{k}": nan_mean([c[k] for c in per_clip]) for k in ("jaw_r", "frames_r", "viseme_agree",
                                                                    "viseme_agree_spoken")}
    out["rig_offset_ms"] = nan_mean(offsets)
    out["rig_offset_std_ms"] = nan_std(offsets)
    out["rig_confusion"] = np.sum([c["confusion"] for c in per_clip], axis=0).tolist()
    return out
