"""Reader for tflite models (placeholder: to be written)."""
