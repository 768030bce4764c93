"""qstar.model."""
