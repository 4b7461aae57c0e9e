"""Reader for safetensors models (placeholder: to be written)."""
