"""The evaluation instruments' weights: one safetensors file holding the face probe and the SyncNet.

Both are trained by this project (``mf train --stage probe`` / ``--stage syncnet``) and written with
``mf export --eval-out FILE``; the package ships ``mfruntime/weights/eval.safetensors`` for 64-px models.
Tensors are stored in float16 under the prefixes ``probe.`` and ``syncnet.``.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from mfruntime.errors import UserFacingError
from mfruntime.eval.probe import FaceProbe
from mfruntime.eval.syncnet import SyncNet

EVAL_FORMAT = "mfruntime-eval-1"
BUNDLED_EVAL = Path(__file__).resolve().parents[1] / "weights" / "eval.safetensors"
INSTRUMENTS = {"probe": FaceProbe, "syncnet": SyncNet}


def save_instruments(nets: dict[str, nn.Module], path: str | Path, meta: dict | None = None) -> Path:
    """Write {"probe": FaceProbe, "syncnet": SyncNet} (either may be missing) to one file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{k}": v.detach().half().contiguous() for name, net in nets.items() for k, v in net.state_dict().items()}
    tmp = path.with_name(path.name + ".part")
    save_file(tensors, str(tmp), metadata={"format": EVAL_FORMAT, "meta": json.dumps(meta or {})})
    tmp.replace(path)
    return path


def load_instrument(name: str, path: str | Path | None = None) -> nn.Module:
    """The face probe (``name="probe"``) or SyncNet (``"syncnet"``) from ``path`` (default: bundled), eval mode."""
    path = Path(path) if path else BUNDLED_EVAL
    if not path.is_file():
        raise UserFacingError(f"evaluation weights {path} not found: train them (mf train --stage probe / syncnet), "
                              "write them with `mf export --eval-out FILE` and pass that file")
    try:
        with safe_open(str(path), framework="pt") as f:
            fmt = (f.metadata() or {}).get("format")
            if fmt != EVAL_FORMAT:
                raise UserFacingError(f"{path}: not an mfruntime evaluation-weights file (format {fmt!r})")
            tensors = {k[len(name) + 1:]: f.get_tensor(k).float() for k in f.keys() if k.startswith(name + ".")}
    except (SafetensorError, OSError) as exc:
        raise UserFacingError(f"{path}: corrupt or truncated evaluation weights ({exc})") from exc
    if not tensors:
        raise UserFacingError(f"{path} holds no {name} weights: train it with `mf train --stage {name}` and export again")
    net = INSTRUMENTS[name]()
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        raise UserFacingError(f"{path}: {name} weights do not fit ({str(exc).splitlines()[0]})") from exc
    return net.eval()


def load_probe(path: str | Path | None = None) -> FaceProbe:
    return load_instrument("probe", path)  # type: ignore[return-value]


def load_syncnet(path: str | Path | None = None) -> SyncNet:
    return load_instrument("syncnet", path)  # type: ignore[return-value]
