"""qstar.serve."""
