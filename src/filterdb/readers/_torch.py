"""Reader for torch models (placeholder: to be written)."""
