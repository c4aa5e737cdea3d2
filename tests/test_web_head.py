"""The web page's 3D preview head (runtime/web/head.py) and how three.js is vendored (runtime/web/vendor.py):
the .glb is valid glTF 2.0 with the rig's names as morph targets, each target moves what it names, and a
download that does not match the pinned integrity is refused."""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile

import numpy as np
import pytest

from mfruntime.rig import CONTROLS, FACE_CONTROLS, OVR_VISEMES
from mfruntime.runtime.web import head, vendor


@pytest.fixture(scope="module")
def glb():
    data = head.head_glb()
    return data, *head.read_glb(data)


def test_the_head_is_a_glb_with_the_rigs_names_as_morph_targets(glb):
    data, doc, blob = glb
    assert doc["asset"]["version"] == "2.0" and len(blob) == doc["buffers"][0]["byteLength"]
    assert head.head_glb() == data  # made by code, the same every time
    by_name = {m["name"]: m for m in doc["meshes"]}
    assert set(by_name) == {"face", "eyes", "eyelids", "mouth"}
    face_targets = by_name["face"]["extras"]["targetNames"]
    assert face_targets == [*FACE_CONTROLS[:6], *(f"viseme_{v}" for v in OVR_VISEMES)]
    assert by_name["eyelids"]["extras"]["targetNames"] == ["eyeBlinkLeft", "eyeBlinkRight"]
    assert set(face_targets) | {"eyeBlinkLeft", "eyeBlinkRight"} <= set(CONTROLS)
    head_node = next(n for n in doc["nodes"] if n["name"] == "head")
    assert doc["scenes"][0]["nodes"] == [doc["nodes"].index(head_node)] and len(head_node["children"]) == 4
    for m in doc["meshes"]:
        prim = m["primitives"][0]
        pos = head.accessor_array(doc, blob, prim["attributes"]["POSITION"])
        idx = head.accessor_array(doc, blob, prim["indices"])
        normals = head.accessor_array(doc, blob, prim["attributes"]["NORMAL"])
        colours = head.accessor_array(doc, blob, prim["attributes"]["COLOR_0"])
        assert idx.max() < len(pos) and len(idx) % 3 == 0 and len(normals) == len(colours) == len(pos)
        assert np.allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-3) and 0 <= colours.min() <= colours.max() <= 1
        acc = doc["accessors"][prim["attributes"]["POSITION"]]
        assert np.allclose(acc["min"], pos.min(0)) and np.allclose(acc["max"], pos.max(0))  # glTF requires them
        for t in prim.get("targets", []):
            assert len(head.accessor_array(doc, blob, t["POSITION"])) == len(pos)


def _targets(name: str) -> tuple[np.ndarray, dict]:
    mesh = next(m for m in head.head_meshes() if m.name == name)
    return mesh.positions, mesh.targets


def test_each_target_moves_what_it_names():
    pos, t = _targets("face")
    front = pos[:, 2] > 0.5
    mouth = front & (np.abs(pos[:, 0]) < 0.05) & (np.abs(pos[:, 1] - head.MOUTH_Y) < 1e-6)  # the slit's centre
    assert mouth.sum() == 2  # the mouth line twice: the upper lip's copy and the lower lip's
    jaw = t["jawOpen"][mouth]
    assert jaw[:, 1].min() < -0.15 and jaw[:, 1].max() > -0.05  # the lower lip drops, the upper one stays: it opens
    assert np.abs(t["jawOpen"][pos[:, 1] > 0]).max() < 1e-6  # nothing above the mouth moves with the jaw
    assert np.abs(t["jawOpen"][pos[:, 2] < -0.5]).max() < 1e-6  # nor the back of the head
    left, right = t["mouthStretchLeft"], t["mouthStretchRight"]
    assert left[:, 0].max() > 0.05 and np.abs(left[pos[:, 0] < 0]).max() < 1e-6  # the subject's left is +x
    assert right[:, 0].min() < -0.05 and np.abs(right[pos[:, 0] > 0]).max() < 1e-6
    for rounded in ("mouthPucker", "mouthFunnel"):  # the lips come in and forward
        d = t[rounded]
        lips = np.abs(d).sum(1) > 1e-4
        assert (np.sign(d[lips & (pos[:, 0] > 0.1), 0]) <= 0).all() and d[lips, 2].max() > 0.05
    assert np.abs(t["viseme_sil"]).max() == 0
    np.testing.assert_allclose(t["viseme_aa"], 0.7 * t["jawOpen"], atol=1e-6)
    lid_pos, lids = _targets("eyelids")
    for name, side in (("eyeBlinkLeft", 1), ("eyeBlinkRight", -1)):
        moved = np.abs(lids[name]).sum(1) > 1e-6
        assert moved.any() and (np.sign(lid_pos[moved, 0]) == side).all()  # one eye each
        assert lids[name][moved, 2].max() > 0.05  # the lid comes forward over the eye


def test_a_tarball_that_does_not_match_the_pinned_integrity_is_refused(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in vendor.FILES:
            body = f"// {name}\n".encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    data = buf.getvalue()
    with pytest.raises(ValueError, match="does not match the registry's sha512 integrity"):
        vendor.unpack(data, tmp_path)
    assert not any(tmp_path.iterdir()) and not vendor.installed(tmp_path)
    monkeypatch.setattr(vendor, "INTEGRITY", "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode())
    vendor.unpack(data, tmp_path)
    assert vendor.installed(tmp_path) and (tmp_path / "build/three.module.js").read_text() == "// build/three.module.js\n"
