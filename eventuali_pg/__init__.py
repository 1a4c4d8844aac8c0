"""eventuali-pg."""
