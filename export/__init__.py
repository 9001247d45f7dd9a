"""slimgan export side: ONNX, FP16, INT8, TensorRT, parity, speed, and the deployable bundle.

``export.manifest`` is torch-free (the server reads it); everything else is imported lazily.
"""
