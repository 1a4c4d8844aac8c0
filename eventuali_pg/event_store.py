"""``eventuali.event_store`` under eventuali-pg: :class:`EventStore` (the same class as
``eventuali_pg.EventStore``)."""

from .models import Aggregate, Event
from .store.event_store import EventStore

__all__ = ["Aggregate", "Event", "EventStore"]
