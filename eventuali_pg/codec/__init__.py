"""The mapper: events become rows and rows become events here, and nowhere else.

Every read path (loads, catch-up, the live feed, projections, dead letters, the command line)
decodes through :mod:`.decode`; every append encodes through :mod:`.encode`.
"""

from .decode import record_to_event, records_to_events, require_decoded
from .encode import EncodedBatch

__all__ = ["EncodedBatch", "record_to_event", "records_to_events", "require_decoded"]
