"""The inference core: KV ring cache (cache.py), the kernel seam (kernels.py) and its native implementation
(native.py), the chunk-by-chunk generator (generator.py) and the execution backends (backends.py).

This file imports nothing, so the network (mfruntime.model) can use the seam without an import cycle and
the command line can list the backends without loading PyTorch.
"""

#: Execution backends a Session, ``mf demo`` and ``mf serve`` accept (engine/backends.py).
BACKENDS = ("auto", "eager", "native", "compile", "tensorrt")
