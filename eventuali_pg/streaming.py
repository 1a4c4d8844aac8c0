"""Alias of :mod:`eventuali_pg.stream`, so ``from eventuali.streaming import ...`` code runs with
``eventuali`` replaced by ``eventuali_pg``; it also exports ``Projection`` and ``SagaHandler``,
as upstream's ``eventuali.streaming`` does."""

from .compat.streaming import SagaHandler
from .projections import Projection
from .stream import *  # noqa: F403
from .stream import __all__ as _stream_all

__all__ = [*_stream_all, "Projection", "SagaHandler"]
