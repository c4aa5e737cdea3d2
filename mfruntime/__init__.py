"""mfruntime: a real-time avatar runtime that generates a talking character's voice and face together."""
__version__ = "0.1.0"


def __getattr__(name: str):
    # `from mfruntime import Session` without importing torch for `mf --help`
    if name in ("Session", "Chunk", "SessionStats"):
        from mfruntime import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'mfruntime' has no attribute {name!r}")
