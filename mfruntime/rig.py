"""The rig stream's control set: per video frame, the face controls of what the model generated.

A fixed, versioned list of named numbers (:data:`CONTROLS`), named by Apple ARKit's blendshape convention where
one exists, then the weights of the 15 Oculus/Meta OVR visemes (:data:`OVR_VISEMES`). Engines map the names to
their own rigs (blendshapes, morph targets). A new control is only ever appended, with a new
:data:`RIG_VERSION`; a client reads the names it knows and ignores the rest.

The ground truth the rig is trained against comes from the synthetic corpus: the renderer's per-frame face
state and the phoneme timeline (:func:`ground_truth`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # the control set itself imports nothing heavy: the wire protocol and clients read it
    from mfruntime.data.render import FaceState
    from mfruntime.data.speech import Phoneme

RIG_VERSION = 1

#: Face controls (ARKit names; the head pose has no ARKit blendshape, so it is named plainly).
FACE_CONTROLS = (
    "jawOpen",  # 0–1
    "mouthClose",  # 0–1: lips pressed together (p, b, m)
    "mouthFunnel",  # 0–1: rounded with the jaw open (o, w as in "who")
    "mouthPucker",  # 0–1: rounded with the jaw nearly closed (oo, w)
    "mouthStretchLeft",  # 0–1: lips spread (ee, s); the subject's left
    "mouthStretchRight",
    "eyeBlinkLeft",  # 0–1 closed
    "eyeBlinkRight",
    "headYaw",  # radians, + = the subject turns to their left
    "headPitch",  # radians, + = nods down
    "headRoll",  # radians, + = tilts to the image's right
    "headOffsetX",  # face widths, + = image right
    "headOffsetY",  # face widths, + = down
)

#: Face controls that are blendshape weights (0–1); the head pose and offset are not bounded.
BOUNDED_CONTROLS = FACE_CONTROLS[:8]

#: The 15 OVR visemes (Oculus Lipsync / Meta), in their conventional order.
OVR_VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")

CONTROLS = FACE_CONTROLS + tuple(f"viseme_{v}" for v in OVR_VISEMES)

#: The corpus' viseme classes (data/visemes.py) → OVR visemes. The corpus draws n with t, d, l (one mouth shape);
#: it is reported as DD.
CORPUS_TO_OVR = {"sil": "sil", "PP": "PP", "FF": "FF", "TH": "TH", "DD": "DD", "SS": "SS", "CH": "CH", "KK": "kk",
                 "RR": "RR", "WW": "ou", "JJ": "ih", "AA": "aa", "EH": "E", "IH": "ih", "AH": "aa", "OH": "oh",
                 "UU": "ou"}

#: Half the face's width in the renderer's face units (head offsets are reported in face widths).
_FACE_HALF_WIDTH = 0.62


def face_controls(state: FaceState, lips_pressed: float = 0.0) -> np.ndarray:
    """The :data:`FACE_CONTROLS` of one rendered face state, (len(FACE_CONTROLS),) float32."""
    rounded, spread = max(0.0, -state.spread), max(0.0, state.spread)
    return np.array([
        state.open,
        lips_pressed,
        rounded * state.open,
        rounded * (1.0 - state.open),
        spread, spread,
        state.blink, state.blink,
        0.0, 0.0, state.angle,  # the corpus renderer turns the head only in the image plane
        state.dx / (2 * _FACE_HALF_WIDTH), state.dy / (2 * _FACE_HALF_WIDTH),
    ], np.float32)


def ovr_weights(phonemes: Sequence[Phoneme], times: np.ndarray) -> np.ndarray:
    """(T, 15) OVR viseme weights at ``times``: the corpus' coarticulation weights per viseme class, summed into
    the OVR classes; each row sums to 1 (silence where nothing is said)."""
    from mfruntime.data.visemes import viseme_weights

    corpus = viseme_weights(phonemes, times)  # {class: (T,)}
    out = np.zeros((len(times), len(OVR_VISEMES)), np.float32)
    for name, w in corpus.items():
        out[:, OVR_VISEMES.index(CORPUS_TO_OVR[name])] += w
    return out


def ground_truth(states: Sequence[FaceState], phonemes: Sequence[Phoneme], times: np.ndarray) -> np.ndarray:
    """(T, len(CONTROLS)) rig ground truth of a rendered clip: face controls and OVR viseme weights."""
    visemes = ovr_weights(phonemes, times)
    pressed = visemes[:, OVR_VISEMES.index("PP")]
    face = np.stack([face_controls(s, float(p)) for s, p in zip(states, pressed)]) if len(states) else \
        np.zeros((0, len(FACE_CONTROLS)), np.float32)
    return np.concatenate([face, visemes], axis=1)


def ground_truth_from_sidecar(sidecar: dict) -> np.ndarray:
    """(T, len(CONTROLS)) rig ground truth of a corpus clip from its JSON sidecar (sidecar version ≥ 2)."""
    from mfruntime.data.render import FaceState
    from mfruntime.data.speech import Phoneme
    from mfruntime.data.synth import FACE_STATE_FIELDS

    if "face_state" not in sidecar:
        raise ValueError(f"clip sidecar version {sidecar.get('version', 1)} has no per-frame face state (the rig "
                         "stream's ground truth): remake the corpus with this mfruntime (mf data synth)")
    fs = sidecar["face_state"]
    n = len(fs["open"])
    states = [FaceState(**{k: float(fs[k][i]) for k in FACE_STATE_FIELDS}) for i in range(n)]
    phonemes = [Phoneme.from_dict(p) for p in sidecar["phonemes"]]
    return ground_truth(states, phonemes, np.arange(n, dtype=np.float64) / sidecar["fps"])
