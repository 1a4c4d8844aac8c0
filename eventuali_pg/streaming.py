"""Alias of :mod:`eventuali_pg.stream`, so ``from eventuali.streaming import ...`` code runs with
``eventuali`` replaced by ``eventuali_pg``."""

from .stream import *  # noqa: F403
from .stream import __all__ as __all__
