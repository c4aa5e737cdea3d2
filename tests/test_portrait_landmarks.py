"""Face and mesh landmarks with MediaPipe's models (ai-edge-litert): found on our own rendered portraits, and
clear errors when there is no usable face."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mfruntime.data.render import FaceRenderer, FaceState, Identity
from mfruntime.portrait.landmarks import FaceNotFound, anchors, find_face, FULL_RANGE, SHORT_RANGE

# MediaPipe face-mesh indices: inner upper lip, inner lower lip, right / left eye outer corners.
UPPER_LIP, LOWER_LIP, RIGHT_EYE, LEFT_EYE = 13, 14, 33, 263


def test_anchor_grids_match_the_detectors_outputs():
    assert anchors(SHORT_RANGE).shape == (896, 2) and anchors(FULL_RANGE).shape == (2304, 2)
    assert anchors(SHORT_RANGE).min() > 0 and anchors(SHORT_RANGE).max() < 1


@pytest.mark.parametrize("seed", [0, 1])
def test_the_mesh_lands_on_a_rendered_portrait(seed):
    """On a 256-px portrait of a known face the mesh's eyes and lips are where the renderer drew them, and an
    open mouth opens the mesh's lips."""
    renderer = FaceRenderer(Identity.from_seed(seed), 256)
    closed, opened = find_face(renderer.render(FaceState())), find_face(renderer.render(FaceState(open=0.8)))
    for face in (closed, opened):
        assert face.score > 0.5 and face.mesh_score > 0.5 and face.mesh.shape == (468, 3)
        x0, y0, x1, y1 = face.box
        assert 40 < x0 < x1 < 216 and 40 < y0 < y1 < 240  # the face, in the middle of the picture
        assert face.mesh[RIGHT_EYE, 0] < face.mesh[LEFT_EYE, 0]  # the subject's right eye on the image's left
        assert face.mesh[RIGHT_EYE, 1] < face.mesh[UPPER_LIP, 1]  # eyes above the mouth
    gap = lambda f: f.mesh[LOWER_LIP, 1] - f.mesh[UPPER_LIP, 1]  # noqa: E731
    assert gap(opened) > gap(closed) + 5


def test_no_face_and_a_tiny_face_are_clear_errors():
    with pytest.raises(FaceNotFound, match="no face found in the 256×256 image"):
        find_face(np.full((256, 256, 3), 128, np.uint8))
    small = FaceRenderer(Identity.from_seed(0), 64).render(FaceState())
    canvas = Image.new("RGB", (640, 640), (90, 90, 90))
    canvas.paste(Image.fromarray(small), (288, 288))
    with pytest.raises(FaceNotFound, match="no face found|px wide"):
        find_face(np.asarray(canvas))
