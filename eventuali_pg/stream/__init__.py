"""Live delivery: EventStreamer, subscriptions, receivers (``eventuali_pg.streaming`` too)."""

from ..errors import SubscriptionClosed, SubscriptionLagged
from .feed import FeedStats
from .receiver import EventStreamReceiver, ReceiverState, ReceiverStats
from .stream_event import StreamEvent
from .streamer import EventStreamer, StreamerStats
from .subscription import Subscription, SubscriptionBuilder

__all__ = [
    "EventStreamReceiver",
    "EventStreamer",
    "FeedStats",
    "ReceiverState",
    "ReceiverStats",
    "StreamEvent",
    "StreamerStats",
    "Subscription",
    "SubscriptionBuilder",
    "SubscriptionClosed",
    "SubscriptionLagged",
]
