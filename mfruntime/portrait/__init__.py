"""The portrait renderer (in progress): any face image animated by the rig stream. So far: finding the face and
its 468-point mesh with MediaPipe's models (landmarks.py)."""
