"""The networks: codecs (codec_video, codec_audio, codec_harmonic), the twin-stream transformer and the
loadable AVModel (av.py). Streaming generation over them — KV ring cache, kernel seam, generator,
backends — lives in mfruntime.engine. Import from the submodules (this package imports nothing, so the
engine and the network can use each other's modules without a cycle)."""
