"""State backends, key groups and checkpoint storage."""
