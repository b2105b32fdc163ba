"""Stage 1: the model.

Convert, read and run it on the host (TensorFlow, LiteRT, TFLM), its arena, metrics,
references, data files and the manifest.
"""
