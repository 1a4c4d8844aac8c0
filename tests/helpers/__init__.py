"""Shared helpers of the store tests (domain classes, database checks)."""
