"""filterdb check (placeholder)."""
