"""``eventuali-pg demo``: the product in one minute.

Writers save orders and customers concurrently; five subscribers receive them through two
streamers attached to the same store:

* ``everything``: every event, live;
* ``orders``: aggregate type ``Order``;
* ``shipping``: event type ``OrderShipped``;
* ``late-joiner``: aggregate type ``Customer``, subscribed once a third of the events are
  written, from the position where the demo started: it catches up from the table, then live;
* ``slow``: every event, sleeping after each one, with a tiny buffer: it overflows, catches up
  from the table and rejoins the live feed.

When the writers are done, the demo reads back from the table which events each subscriber
should have received (by position, aggregate type and event type) and compares: same events,
same order, none missing, none twice. Latency is measured from the ``save()`` call in the
writer (so it includes the commit) to the subscriber receiving the event, for events saved after
the subscriber subscribed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..models import Aggregate, Event
from . import EXIT_CHECK_FAILED, EXIT_OK
from .output import console, json_text, percentile
from .target import Target, open_store, resolve

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from ..store.event_store import EventStore
    from ..stream import EventStreamer, EventStreamReceiver, Subscription

#: Seconds the slow subscriber sleeps after each event.
SLOW_DELAY = 0.002
#: Give up waiting for subscribers that made no progress for this long after the writers ended.
STALL_TIMEOUT = 15.0
READ_PAGE = 5000


# -- the demo domain -----------------------------------------------------------------------------


class OrderPlaced(Event):
    """A customer placed an order."""

    customer_id: str
    amount_cents: int


class OrderPaid(Event):
    """An order was paid."""

    amount_cents: int


class OrderShipped(Event):
    """An order left the warehouse."""

    carrier: str


class CustomerRegistered(Event):
    """A new customer."""

    name: str


class CustomerUpgraded(Event):
    """A customer moved to another tier."""

    tier: str


class Order(Aggregate):
    """placed -> paid -> shipped."""

    status: str = "new"
    amount_cents: int = 0

    def apply_order_placed(self, event: OrderPlaced) -> None:
        """State after OrderPlaced."""
        self.status, self.amount_cents = "placed", event.amount_cents

    def apply_order_paid(self, event: OrderPaid) -> None:
        """State after OrderPaid."""
        self.status = "paid"

    def apply_order_shipped(self, event: OrderShipped) -> None:
        """State after OrderShipped."""
        self.status = "shipped"


class Customer(Aggregate):
    """registered -> upgraded (any number of times)."""

    name: str = ""
    tier: str = "basic"

    def apply_customer_registered(self, event: CustomerRegistered) -> None:
        """State after CustomerRegistered."""
        self.name = event.name

    def apply_customer_upgraded(self, event: CustomerUpgraded) -> None:
        """State after CustomerUpgraded."""
        self.tier = event.tier


TIERS = ("silver", "gold", "platinum")
CARRIERS = ("DHL", "UPS", "PostNL", "La Poste")
NAMES = ("Ada", "Grace", "Edsger", "Barbara", "Donald", "Leslie", "Frances", "Ken")


# -- subscribers ---------------------------------------------------------------------------------


@dataclass
class DemoSubscriber:
    """One subscriber of the demo, what it received and when."""

    name: str
    description: str
    aggregate_type: str | None = None
    event_type: str | None = None
    delay: float = 0.0
    late: bool = False
    received: list[int] = field(default_factory=list)
    received_at: dict[int, float] = field(default_factory=dict)
    subscribed_at: float | None = None
    last: str = ""
    error: str | None = None
    expected: list[int] | None = None
    receiver: EventStreamReceiver | None = None
    task: asyncio.Task[None] | None = None

    def wants(self, aggregate_type: str, event_type: str) -> bool:
        """The demo's own statement of this subscriber's filter (used to check it)."""
        return (self.aggregate_type is None or aggregate_type == self.aggregate_type) and (
            self.event_type is None or event_type == self.event_type
        )

    def subscription(self, from_position: int) -> Subscription:
        """The subscription this subscriber asks for."""
        from ..stream import Subscription

        return Subscription(
            id=f"demo-{self.name}",
            aggregate_type_filter=self.aggregate_type,
            event_type_filter=self.event_type,
            from_position=from_position,
        )

    @property
    def done(self) -> bool:
        """True once everything expected has arrived (or it failed)."""
        if self.error is not None:
            return True
        if self.expected is None:
            return False
        return not self.expected or (bool(self.received) and self.received[-1] >= self.expected[-1])


def _subscribers(slow_capacity: int) -> list[DemoSubscriber]:
    return [
        DemoSubscriber("everything", "all events"),
        DemoSubscriber("orders", "aggregate_type=Order", aggregate_type="Order"),
        DemoSubscriber("shipping", "event_type=OrderShipped", event_type="OrderShipped"),
        DemoSubscriber(
            "late-joiner",
            "aggregate_type=Customer, joins late from the start",
            aggregate_type="Customer",
            late=True,
        ),
        DemoSubscriber("slow", f"all events, slow, capacity {slow_capacity}", delay=SLOW_DELAY),
    ]


async def _consume(subscriber: DemoSubscriber) -> None:
    receiver = subscriber.receiver
    assert receiver is not None
    clock = time.perf_counter
    try:
        async for item in receiver:
            subscriber.received_at[item.global_position] = clock()
            subscriber.received.append(item.global_position)
            event = item.event
            subscriber.last = (
                f"#{item.global_position} {event.aggregate_type} {event.aggregate_id} "
                f"{event.event_type}"
            )
            if subscriber.delay:
                await asyncio.sleep(subscriber.delay)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        subscriber.error = f"{type(exc).__name__}: {exc}"


# -- writers -------------------------------------------------------------------------------------


@dataclass
class Writing:
    """Shared state of the writers."""

    total: int
    writers: int
    rate: float
    run_id: str
    written: int = 0
    saved_at: dict[int, float] = field(default_factory=dict)
    at_milestone: int = 0
    milestone_reached: asyncio.Event = field(default_factory=asyncio.Event)
    resume: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = 0.0
    finished: float | None = None


async def _writer(store: EventStore, writing: Writing, index: int) -> None:
    """Save this writer's share of events one save at a time, pausing at a third for the
    late joiner and keeping to its share of ``--rate``."""
    share = writing.total // writing.writers + (1 if index < writing.total % writing.writers else 0)
    milestone = share // 3
    per_second = writing.rate / writing.writers if writing.rate > 0 else 0.0
    rng = random.Random(f"{writing.run_id}-{index}")
    orders: list[Order] = []
    customers: list[Customer] = []
    start = time.perf_counter()
    for step in range(share):
        if step == milestone:
            writing.at_milestone += 1
            if writing.at_milestone == writing.writers:
                writing.milestone_reached.set()
            await writing.resume.wait()
            start = time.perf_counter() - (step / per_second if per_second else 0.0)
        if per_second:
            delay = start + step / per_second - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        aggregate = _next_change(rng, writing.run_id, index, step + 1, orders, customers)
        events = aggregate.get_uncommitted_events()
        # Measured from the call, so the figure covers the commit: events saved here are
        # published as soon as they are committed, often before save() has returned.
        now = time.perf_counter()
        await store.save(aggregate)
        for event in events:
            if event.global_position is not None:
                writing.saved_at[event.global_position] = now
        writing.written += len(events)
    if milestone >= share:  # a writer with too small a share never reached the milestone
        writing.at_milestone += 1
        if writing.at_milestone == writing.writers:
            writing.milestone_reached.set()


def _next_change(
    rng: random.Random,
    run_id: str,
    writer: int,
    serial: int,
    orders: list[Order],
    customers: list[Customer],
) -> Aggregate:
    """One new event on a new or existing aggregate of this writer (its own, so no conflicts)."""
    roll = rng.random()
    if not customers or roll < 0.15:
        customer = Customer(id=f"customer-{run_id}-{writer}-{serial:05d}")
        customer.apply(CustomerRegistered(name=rng.choice(NAMES)))
        customers.append(customer)
        return customer
    if roll < 0.25:
        customer = rng.choice(customers)
        customer.apply(CustomerUpgraded(tier=rng.choice(TIERS)))
        return customer
    open_orders = [order for order in orders if order.status != "shipped"]
    if not open_orders or roll < 0.5:
        order = Order(id=f"order-{run_id}-{writer}-{serial:05d}")
        order.apply(
            OrderPlaced(customer_id=rng.choice(customers).id, amount_cents=rng.randint(500, 50000))
        )
        orders.append(order)
        return order
    order = rng.choice(open_orders)
    if order.status == "placed":
        order.apply(OrderPaid(amount_cents=order.amount_cents))
    else:
        order.apply(OrderShipped(carrier=rng.choice(CARRIERS)))
        orders.remove(order)
    return order


# -- the run -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 when every subscriber received exactly what it should, else 3."""
    from ..migration import migrate
    from ..stream import EventStreamer

    target = await resolve(args, migrate_embedded=False)
    await migrate(target.dsn, schema=target.schema)
    out = None if args.json else console()
    main_streamer = EventStreamer(capacity=1000)
    slow_streamer = EventStreamer(capacity=args.slow_capacity)
    writing = Writing(
        total=args.events, writers=args.writers, rate=args.rate, run_id=uuid.uuid4().hex[:6]
    )
    subscribers = _subscribers(args.slow_capacity)
    async with await open_store(
        target, streamer=main_streamer, pool_max_size=args.writers + 2
    ) as store:
        await store.attach_streamer(slow_streamer)
        start = await store.get_global_position()
        try:
            head = await _run_demo(
                store, start, writing, subscribers, main_streamer, slow_streamer, out
            )
        finally:
            await _stop_subscribers(subscribers)
    report = _report(target, writing, subscribers, start, head)
    if args.json:
        print(json_text(report))
    else:
        assert out is not None
        _print_summary(out, report)
    return EXIT_OK if report["ok"] else EXIT_CHECK_FAILED


async def _run_demo(
    store: EventStore,
    start: int,
    writing: Writing,
    subscribers: list[DemoSubscriber],
    main_streamer: EventStreamer,
    slow_streamer: EventStreamer,
    out: Console | None,
) -> int:
    async def subscribe(subscriber: DemoSubscriber) -> None:
        streamer = slow_streamer if subscriber.delay else main_streamer
        subscriber.receiver = await streamer.subscribe(subscriber.subscription(start))
        subscriber.subscribed_at = time.perf_counter()
        subscriber.task = asyncio.create_task(
            _consume(subscriber), name=f"eventuali-pg demo subscriber {subscriber.name}"
        )

    for subscriber in subscribers:
        if not subscriber.late:
            await subscribe(subscriber)

    async def late_join() -> None:
        await writing.milestone_reached.wait()
        for subscriber in subscribers:
            if subscriber.late:
                await subscribe(subscriber)
        writing.resume.set()

    view = _View(out, writing, subscribers)
    with view:
        writing.started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            writers = [
                group.create_task(
                    _writer(store, writing, index), name=f"eventuali-pg demo writer {index}"
                )
                for index in range(writing.writers)
            ]
            group.create_task(late_join(), name="eventuali-pg demo late joiner")
            while not all(task.done() for task in writers):
                view.refresh()
                await asyncio.wait(writers, timeout=view.interval)
        writing.finished = time.perf_counter()
        head = await store.get_global_position()
        await _expectations(store, start, head, subscribers)
        progress_at, progress = time.monotonic(), _received_total(subscribers)
        while not all(subscriber.done for subscriber in subscribers):
            view.refresh()
            await asyncio.sleep(view.interval)
            total = _received_total(subscribers)
            if total != progress:
                progress_at, progress = time.monotonic(), total
            elif time.monotonic() - progress_at > STALL_TIMEOUT:
                break
        view.refresh(final=True)
    return head


def _received_total(subscribers: list[DemoSubscriber]) -> int:
    return sum(len(subscriber.received) for subscriber in subscribers)


async def _expectations(
    store: EventStore, start: int, head: int, subscribers: list[DemoSubscriber]
) -> None:
    """Read (start, head] back from the table: what each subscriber should receive."""
    expected: dict[str, list[int]] = {subscriber.name: [] for subscriber in subscribers}
    position = start
    while position < head:
        events = await store.load_events_from_position(position, READ_PAGE, up_to=head)
        if not events:
            break
        for event in events:
            assert event.global_position is not None
            for subscriber in subscribers:
                if subscriber.wants(event.aggregate_type, event.event_type):
                    expected[subscriber.name].append(event.global_position)
        position = events[-1].global_position or head
    for subscriber in subscribers:
        subscriber.expected = expected[subscriber.name]


async def _stop_subscribers(subscribers: list[DemoSubscriber]) -> None:
    for subscriber in subscribers:
        if subscriber.receiver is not None:
            await subscriber.receiver.close()
    tasks = [subscriber.task for subscriber in subscribers if subscriber.task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- checking and reporting ------------------------------------------------------------------------


def _check(subscriber: DemoSubscriber, head: int) -> str | None:
    """None when the subscriber got exactly its expected events, else what went wrong."""
    if subscriber.error is not None:
        return f"failed: {subscriber.error}"
    expected = subscriber.expected or []
    got = [position for position in subscriber.received if position <= head]
    if got == expected:
        return None
    seen: set[int] = set()
    duplicates: list[int] = []
    for position in got:
        if position in seen:
            duplicates.append(position)
        seen.add(position)
    missing = sorted(set(expected) - seen)
    unexpected = sorted(seen - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (first at position {missing[0]})")
    if duplicates:
        problems.append(f"{len(duplicates)} received twice (first {duplicates[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} not matching its filter (first {unexpected[0]})")
    if not problems:
        problems.append("received out of order")
    return "; ".join(problems)


def _latencies(subscriber: DemoSubscriber, saved_at: dict[int, float]) -> list[float]:
    """Milliseconds from the save() call to receipt, for events saved after subscribing."""
    since = subscriber.subscribed_at or 0.0
    values = []
    for position, received in subscriber.received_at.items():
        saved = saved_at.get(position)
        if saved is not None and saved >= since:
            values.append(max(0.0, received - saved) * 1000)
    return sorted(values)


def _latency_figures(values: list[float]) -> dict[str, float | None]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {
        "p50": rounded(percentile(values, 0.50)),
        "p99": rounded(percentile(values, 0.99)),
        "samples": len(values),
    }


def _report(
    target: Target,
    writing: Writing,
    subscribers: list[DemoSubscriber],
    start: int,
    head: int,
) -> dict[str, Any]:
    seconds = (writing.finished or time.perf_counter()) - writing.started
    rows = []
    live: list[float] = []
    for subscriber in subscribers:
        problem = _check(subscriber, head)
        latencies = _latencies(subscriber, writing.saved_at)
        if not subscriber.delay and not subscriber.late:
            live += latencies
        stats = subscriber.receiver.stats() if subscriber.receiver is not None else None
        rows.append(
            {
                "name": subscriber.name,
                "filter": subscriber.description,
                "expected": len(subscriber.expected or []),
                "received": len([p for p in subscriber.received if p <= head]),
                "ok": problem is None,
                "problem": problem,
                "catch_ups": stats.catch_ups if stats else 0,
                "overflows": stats.overflows if stats else 0,
                "latency_ms": _latency_figures(latencies),
            }
        )
    return {
        "ok": all(row["ok"] for row in rows),
        "database": target.describe(),
        "schema": target.schema,
        "events_written": writing.written,
        "writers": writing.writers,
        "positions": [start + 1, head] if head > start else None,
        "write_seconds": round(seconds, 3),
        "events_per_second": round(writing.written / seconds, 1) if seconds > 0 else None,
        "latency_measured_from": (
            "the save() call in the writer (so including its commit), to receipt by the subscriber"
        ),
        "live_latency_ms": _latency_figures(sorted(live)),
        "subscribers": rows,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _print_summary(out: Console, report: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table

    positions = report["positions"]
    span = f"positions {positions[0]}..{positions[1]}" if positions else "no positions"
    out.print()
    out.print(
        f"[bold]events written[/]  {report['events_written']} by {report['writers']} writers "
        f"in {report['write_seconds']:.1f} s ({report['events_per_second']} events/s), {span}, "
        f"schema {report['schema']!r} on {report['database']}"
    )
    live = report["live_latency_ms"]
    out.print(
        f"[bold]latency[/]         p50 {_ms(live['p50'])}, p99 {_ms(live['p99'])} "
        "(live subscribers; from the save() call, commit included, to receipt)"
    )
    table = Table(box=box.SIMPLE_HEAD, title="delivered per subscriber", title_justify="left")
    for name, justify in (
        ("subscriber", "left"),
        ("filter", "left"),
        ("expected", "right"),
        ("received", "right"),
        ("catch-ups", "right"),
        ("overflows", "right"),
        ("p50", "right"),
        ("p99", "right"),
        ("check", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in report["subscribers"]:
        check = "[green]exact[/]" if row["ok"] else f"[red]{row['problem']}[/]"
        table.add_row(
            row["name"],
            row["filter"],
            str(row["expected"]),
            str(row["received"]),
            str(row["catch_ups"]),
            str(row["overflows"]),
            _ms(row["latency_ms"]["p50"]),
            _ms(row["latency_ms"]["p99"]),
            check,
        )
    out.print(table)
    if report["ok"]:
        out.print(
            "[green bold]OK[/]: every subscriber received exactly the events it should, in "
            "order, none missing, none twice."
        )
    else:
        out.print("[red bold]FAILED[/]: see the check column.")


# -- the live view -------------------------------------------------------------------------------


class _View:
    """A rich live table on a terminal; a plain progress line per second otherwise."""

    def __init__(
        self, out: Console | None, writing: Writing, subscribers: list[DemoSubscriber]
    ) -> None:
        self._out = out
        self._writing = writing
        self._subscribers = subscribers
        self._live: Any = None
        self._last_line = 0.0
        self.interval = 0.1

    def __enter__(self) -> _View:
        if self._out is not None and self._out.is_terminal:
            from rich.live import Live

            self._live = Live(
                self._render(), console=self._out, auto_refresh=False, transient=False
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def refresh(self, *, final: bool = False) -> None:
        """Redraw the live table, or print a progress line at most once a second."""
        if self._out is None:
            return
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            return
        now = time.monotonic()
        if final or now - self._last_line >= 1.0:
            self._last_line = now
            self._out.print(self._line(), soft_wrap=True, markup=False)

    def _line(self) -> str:
        writing = self._writing
        elapsed = time.perf_counter() - writing.started
        counts = ", ".join(
            f"{subscriber.name} {len(subscriber.received)}" for subscriber in self._subscribers
        )
        return f"{elapsed:5.1f}s  written {writing.written}/{writing.total}  received: {counts}"

    def _render(self) -> RenderableType:
        from rich import box
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        writing = self._writing
        elapsed = max(time.perf_counter() - writing.started, 1e-9) if writing.started else 0.0
        header = Table.grid(padding=(0, 1))
        header.add_row(
            "[bold]writing[/]",
            ProgressBar(total=writing.total, completed=writing.written, width=40),
            f"{writing.written}/{writing.total} events, {writing.writers} writers, "
            f"{writing.written / elapsed if elapsed else 0:.0f}/s",
        )
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("subscriber", style="bold")
        table.add_column("filter")
        table.add_column("received", justify="right")
        table.add_column("state")
        table.add_column("last event received", style="dim", overflow="ellipsis", no_wrap=True)
        for subscriber in self._subscribers:
            table.add_row(
                subscriber.name,
                subscriber.description,
                str(len(subscriber.received)),
                _state(subscriber),
                subscriber.last,
            )
        return Group(header, table)


def _state(subscriber: DemoSubscriber) -> str:
    receiver = subscriber.receiver
    if subscriber.error is not None:
        return "[red]failed[/]"
    if receiver is None:
        return "[dim]waiting to join[/]"
    stats = receiver.stats()
    extra = f", {stats.overflows} overflows" if stats.overflows else ""
    if subscriber.done:
        return f"[green]complete[/]{extra}"
    if stats.live:
        return f"[green]live[/] (buffer {stats.buffer_depth}/{stats.capacity}){extra}"
    return f"[yellow]catching up[/]{extra}"
