"""``eventuali.performance`` under eventuali-pg: not provided.

Importing its names (``PoolConfig``, ``WalConfig``, ...) raises
:class:`~eventuali_pg.errors.UnsupportedFeatureError` saying what to use instead.
"""

from typing import Any

from .compat.unsupported import module_getattr

__all__: list[str] = []

_getattr = module_getattr("eventuali_pg.performance", frozenset({"performance"}))


def __getattr__(name: str) -> Any:
    return _getattr(name)
