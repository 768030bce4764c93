"""qstar.learn."""
