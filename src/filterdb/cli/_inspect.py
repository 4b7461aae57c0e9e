"""filterdb inspect (placeholder)."""
