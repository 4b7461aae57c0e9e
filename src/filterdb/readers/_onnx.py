"""Reader for onnx models (placeholder: to be written)."""
