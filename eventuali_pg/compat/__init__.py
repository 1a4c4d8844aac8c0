"""Compatibility with upstream eventuali: the parts of its API that eventuali-pg adds on top of
its own (see "Coming from eventuali" in the README)."""
