"""Deployment: inference rewrites, ONNX export and graph passes, int8 (ONNX Runtime and
PT2E), the CPU backends, and :class:`~edgeseg.deploy.segmenter.Segmenter`.

Nothing here trains: it takes a trained model or checkpoint and makes it run fast.
"""
