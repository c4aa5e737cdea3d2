"""The inference core over the network of mfruntime.model: streaming state (state.py) and the chunk step
(step.py) over the KV ring caches (cache.py), the kernel seam (kernels.py) and its native implementation
(native.py, native_block.py, native_layer.py), the chunk-by-chunk generator (generator.py) and the
execution backends (backends.py).

This file imports nothing, so the command line can list the backends without loading PyTorch.
"""

#: Execution backends a Session, ``mf demo`` and ``mf serve`` accept (engine/backends.py).
BACKENDS = ("auto", "eager", "native", "compile", "tensorrt")
