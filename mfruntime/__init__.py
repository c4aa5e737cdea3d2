"""mfruntime: a real-time avatar runtime that generates a talking character's voice and face together."""
__version__ = "0.1.0"
