"""Reader for keras models (placeholder: to be written)."""
