"""qstar.lab."""
