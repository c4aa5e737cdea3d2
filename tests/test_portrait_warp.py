"""The portrait warp: the rest pose is the image, nothing outside the face region moves, and each control moves
what it names (measured by finding the face mesh again on the rendered frame)."""
from __future__ import annotations

import numpy as np
import pytest

from mfruntime.data.render import FaceRenderer, FaceState, Identity
from mfruntime.portrait.landmarks import find_face
from mfruntime.portrait.warp import FaceControls, PortraitRig


@pytest.fixture(scope="module")
def rig():
    image = FaceRenderer(Identity.from_seed(2), 256).render(FaceState())
    return PortraitRig(np.pad(image, ((0, 0), (64, 64), (0, 0)), mode="edge"), size=384)  # 384 × 256, landscape


def test_the_rest_pose_is_the_image_and_the_outside_never_moves(rig):
    assert rig.image.shape == (256, 384, 3)  # the image's own framing, long side = size
    assert np.array_equal(rig.render(), rig.image)
    x0, y0, x1, y1 = rig.region
    outside = np.ones(rig.image.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    frame = rig.render(FaceControls(jaw_open=1.0, mouth_spread=-1.0, blink_left=1.0, head_roll=0.1, head_dx=0.05))
    assert outside.any() and np.array_equal(frame[outside], rig.image[outside])
    assert not np.array_equal(frame, rig.image)


def test_controls_move_what_they_name(rig):
    rest = find_face(rig.render()).mesh
    opened = find_face(rig.render(FaceControls(jaw_open=1.0))).mesh
    gap = lambda m: m[14, 1] - m[13, 1]  # noqa: E731  inner lower lip − inner upper lip
    assert gap(opened) > gap(rest) + 4
    width = lambda m: m[291, 0] - m[61, 0]  # noqa: E731  mouth corners
    spread = find_face(rig.render(FaceControls(mouth_spread=1.0))).mesh
    rounded = find_face(rig.render(FaceControls(mouth_spread=-1.0))).mesh
    assert width(spread) > width(rest) + 2 > width(rounded) + 4
    rolled = find_face(rig.render(FaceControls(head_roll=0.1))).mesh
    tilt = lambda m: np.arctan2(m[263, 1] - m[33, 1], m[263, 0] - m[33, 0])  # noqa: E731
    assert tilt(rolled) - tilt(rest) > 0.05


def test_the_open_mouth_shows_teeth_and_a_dark_inside(rig):
    """Where the lips part: the upper teeth (light, under the upper lip), a darker inside below them; an image that shows no teeth gets the ivory default,
    and a smiling one keeps its own teeth's colour."""
    from PIL import Image, ImageDraw

    from mfruntime.portrait.warp import LOWER_INNER_LIP, TEETH, UPPER_INNER_LIP

    assert rig.teeth == TEETH  # the cartoon's closed mouth shows no teeth
    big = PortraitRig(rig.image, size=512, face=rig.face)  # the fixture's face is at scale 1
    opened = big.render(FaceControls(jaw_open=1.0))
    moved = big.rest + big.displacement(FaceControls(jaw_open=1.0))
    top, bottom = moved[13], moved[14]  # inner upper lip, inner lower lip at the centre
    assert bottom[1] - top[1] > 10
    x = int(round(top[0]))
    column = opened[int(top[1]) + 1:int(bottom[1]), x].astype(np.float32) @ np.array([0.299, 0.587, 0.114])
    luma_teeth = column[1:3].mean()  # just under the upper lip
    assert luma_teeth > 180 and column.min() < 0.5 * luma_teeth  # teeth, then the dark inside
    # A face that smiles with its teeth: their colour is taken from the image.
    smile = rig.image.copy()
    poly = np.concatenate([rig.rest[list(UPPER_INNER_LIP)], rig.rest[list(LOWER_INNER_LIP)][::-1]])
    mask = Image.new("L", (rig.width, rig.height), 0)
    ImageDraw.Draw(mask).polygon([tuple(v) for v in poly], fill=255)
    grown = np.asarray(mask) > 0
    grown |= np.roll(grown, 2, 0) | np.roll(grown, -2, 0)  # an open smile, 4 px taller
    smile[grown] = (250, 245, 235)
    assert PortraitRig(smile, size=384, face=rig.face).teeth == (250, 245, 235)  # the fixture is at scale 1


def test_bad_sizes_are_refused():
    image = FaceRenderer(Identity.from_seed(0), 256).render(FaceState())
    with pytest.raises(ValueError, match="portrait size must be 256–512"):
        PortraitRig(image, size=128)


def test_a_portrait_is_driven_by_the_models_rig_stream():
    """Session.set_portrait: the chunks carry the portrait at its own size, moved by the rig stream of the same
    chunks (its mouth opens where the rig's jawOpen is high); a picture without a face is refused clearly, and
    set_character goes back to the model's face."""
    from mfruntime import Session
    from mfruntime.portrait.drive import face_controls_of
    from mfruntime.rig import CONTROLS

    image = FaceRenderer(Identity.from_seed(2), 256).render(FaceState())
    s = Session(device="cpu", backend="eager", threads=2)
    s.set_portrait(image, size=256)
    assert s.frame_size == (256, 256)
    chunks = list(s.say("Hello, my name is Ada and I am a portrait."))
    frames = np.concatenate([c.frames for c in chunks])
    rig = np.concatenate([c.rig for c in chunks])
    assert frames.shape == (len(rig), 256, 256, 3)
    jaw = rig[:, CONTROLS.index("jawOpen")]
    # Each frame is the warp of the rig frame of the same index.
    i = int(jaw.argmax())
    assert np.array_equal(frames[i], s._portrait.rig.render(face_controls_of(rig[i])))
    closed = int(jaw.argmin())
    assert not np.array_equal(frames[i], frames[closed])
    # Listening: the portrait blinks with the idle rig, and the model does not run for it.
    model_chunks = s._generator.state.chunk
    idle = list(s.reserve_idle(6.0, paced=False).chunks())
    irig, iframes = np.concatenate([c.rig for c in idle]), np.concatenate([c.frames for c in idle])
    b = int(irig[:, CONTROLS.index("eyeBlinkLeft")].argmax())
    assert irig[b, CONTROLS.index("eyeBlinkLeft")] > 0.9 and iframes.shape[1:] == (256, 256, 3)
    assert np.array_equal(iframes[b], s._portrait.rig.render(face_controls_of(irig[b])))
    assert s._generator.state.chunk == model_chunks  # the portrait listens without the model running
    with pytest.raises(ValueError, match="face"):
        s.set_portrait(np.full((300, 300, 3), 200, np.uint8))
    assert s.set_character(image, renderer="model") == "model" and s.renderer == "model"
    assert s.frame_size == (64, 64) and next(iter(s.say("Hi."))).frames.shape == (4, 64, 64, 3)


def test_set_character_chooses_the_renderer_and_says_which(tmp_path, capsys):
    """auto: the model for images the size of its own characters, the portrait renderer for larger ones; the
    choice is returned and shown by mf demo; wrong combinations are clear errors."""
    from PIL import Image

    from mfruntime import Session
    from mfruntime.cli import main

    s = Session(device="cpu", backend="eager", threads=2)
    small = FaceRenderer(Identity.from_seed(3), 64).render(FaceState())
    large = np.pad(FaceRenderer(Identity.from_seed(3), 256).render(FaceState()), ((32, 32), (32, 32), (0, 0)),
                   mode="edge")  # 320 × 320
    assert s.set_character(small) == "model" and s.frame_size == (64, 64)
    assert s.set_character(large) == "portrait" and s.renderer == "portrait" and s.frame_size == (256, 256)
    assert s.set_character(large, size=320) == "portrait" and s.frame_size == (320, 320)
    assert s.set_character(large, renderer="model") == "model" and s.frame_size == (64, 64)
    with pytest.raises(ValueError, match="size is the portrait renderer's"):
        s.set_character(small, renderer="model", size=256)
    assert s.set_character(small, size=256) == "model"  # auto chose the model: the size was for a portrait
    with pytest.raises(ValueError, match="renderer must be one of auto, model, portrait"):
        s.set_character(small, renderer="3d")
    with pytest.raises(ValueError, match='--renderer model'):  # a large picture with no face: says what to do
        s.set_character(np.full((300, 300, 3), 90, np.uint8))
    with pytest.raises(ValueError, match="too small for the portrait renderer"):
        s.set_character(np.full((40, 40, 3), 90, np.uint8), renderer="portrait")  # says the size, not "no face"
    assert s.renderer == "model"  # a refused image changes nothing
    path = tmp_path / "face.png"
    Image.fromarray(large).save(path)
    out = tmp_path / "demo.mp4"
    assert main(["demo", "--text", "Hi.", "--out", str(out), "--backend", "eager", "--image", str(path)]) == 0
    assert "drawn by the portrait renderer at 256×256 px" in capsys.readouterr().out
    assert main(["demo", "--text", "Hi.", "--out", str(out), "--size", "256"]) == 2
    assert "pass --image FILE too" in capsys.readouterr().err
    assert main(["demo", "--text", "Hi.", "--out", str(tmp_path / "nowhere" / "x.mp4")]) == 2  # before any work
    assert "does not exist (make it first)" in capsys.readouterr().err


def test_frames_have_even_sides_for_video_encoders(rig):
    """A 3:2 photo at 256 would be 256 × 171, which H.264 and VP8 refuse: both sides are rounded to even."""
    odd = PortraitRig(rig.image, size=301, face=rig.face)  # the fixture's 384 × 256 image at 301: 301 × 200.7
    assert odd.width % 2 == 0 and odd.height % 2 == 0 and abs(odd.width - 301) <= 1 and odd.height == 200
    assert odd.render(FaceControls(jaw_open=0.5)).shape == (odd.height, odd.width, 3)
