"""Models: device/dtype choice, loading (HF folder, GGUF, cache), the embedded default, generation."""
