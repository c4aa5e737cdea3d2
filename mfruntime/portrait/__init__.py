"""The portrait renderer: any face image animated by the rig stream (docs/PORTRAIT.md). ``landmarks.py`` finds
the face and its 468-point mesh with MediaPipe's models, ``warp.py`` moves the image by face controls,
``drive.py`` turns rig frames into those controls. Its sizes are in mfruntime.config (PORTRAIT_SIZES)."""
