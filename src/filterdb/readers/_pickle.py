"""Reader for pickle models (placeholder: to be written)."""
