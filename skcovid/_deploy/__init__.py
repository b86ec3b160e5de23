"""Deployment: model files, persistence, export and the ONNX runtime."""
