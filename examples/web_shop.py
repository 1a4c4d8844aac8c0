"""A web service on eventuali-pg: FastAPI, an exactly-once projection, server-sent events.

Run it (from this folder, with a migrated or fresh database; ``pip install 'eventuali-pg[web]'``)::

    EVENTUALI_PG_DSN=postgresql://user@localhost/shop uvicorn web_shop:app --workers 2

and try it::

    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
         -d '{"customer": "ada", "amount": "12.50"}'
    # {"id": "order-...", "version": 1, "position": 1}
    curl 'localhost:8000/customers/ada/summary?after=1'   # read-your-writes, any worker
    curl -N 'localhost:8000/events?from_position=0'        # server-sent events, live

What it shows:

* ``StoreLifespan`` migrates, opens the store, creates the read-model table and runs the
  ``order_summary`` projection (exactly-once, ``single_active``: with several workers one runs
  it and the others stand by, taking over if it dies);
* ``Depends(get_store)`` hands the store to endpoints; a ``ConcurrencyError`` becomes 409;
* ``EventContextMiddleware`` (``event_context`` per request) stamps the request id and the
  user on every saved event;
* ``save()`` returns the event's global position, and ``GET .../summary?after=<position>``
  waits for the projection's *stored* checkpoint (``wait_for_checkpoint``), so a client reads
  its own write whichever worker answers;
* ``event_stream`` serves server-sent events from a position or ``Last-Event-ID``; a client
  hanging up releases its subscription at once, and SIGTERM ends every stream so the server
  stops promptly.

Do not start this file with ``python web_shop.py`` *and* let uvicorn import ``web_shop``: the
module would be loaded twice (as ``__main__`` and as ``web_shop``) and its event classes
defined twice. Always give uvicorn the module name.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import asdict
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from eventuali_pg import (
    Aggregate,
    AggregateTypeMismatchError,
    ConcurrencyError,
    Event,
    EventStore,
)
from eventuali_pg.projections import ProjectionRunner, TransactionalProjection
from eventuali_pg.web import (
    EventContextMiddleware,
    StoreLifespan,
    event_stream,
    get_lifespan,
    get_store,
)

# -- the domain -----------------------------------------------------------------------------------


class OrderPlaced(Event):
    customer: str
    amount: Decimal


class OrderCancelled(Event):
    reason: str
    customer: str  # carried along so that read models need not look the order up
    amount: Decimal


class CustomerRegistered(Event):
    name: str


class Order(Aggregate):
    customer: str = ""
    amount: Decimal = Decimal(0)
    cancelled: bool = False

    def place(self, customer: str, amount: Decimal) -> None:
        if amount <= 0:
            raise ValueError("amount must be positive")
        self.apply(OrderPlaced(customer=customer, amount=amount))

    def cancel(self, reason: str) -> None:
        if self.cancelled:
            raise ValueError("the order is already cancelled")
        self.apply(OrderCancelled(reason=reason, customer=self.customer, amount=self.amount))

    def apply_order_placed(self, event: OrderPlaced) -> None:
        self.customer, self.amount = event.customer, event.amount

    def apply_order_cancelled(self, event: OrderCancelled) -> None:
        self.cancelled = True


class Customer(Aggregate):
    name: str = ""

    def register(self, name: str) -> None:
        self.apply(CustomerRegistered(name=name))

    def apply_customer_registered(self, event: CustomerRegistered) -> None:
        self.name = event.name


# -- the read model: exactly-once, in the event store's database ----------------------------------

# A real application keeps this DDL in its own alembic migrations, next to eventuali-pg's (see
# the README, "Building a web service"); CREATE ... IF NOT EXISTS under an advisory lock keeps
# this example self-contained and safe when several workers start at once.
READ_MODEL_DDL = """
SELECT pg_advisory_xact_lock(hashtext('web_shop read model'));
CREATE TABLE IF NOT EXISTS order_summary (
    customer text PRIMARY KEY,
    orders integer NOT NULL,
    total numeric NOT NULL
);
"""


class OrderSummary(TransactionalProjection):
    """Orders and total per customer; cancelled orders are taken off."""

    async def handle_event(self, event: Event, connection: Any) -> None:
        if isinstance(event, OrderPlaced):
            await connection.execute(
                "INSERT INTO order_summary (customer, orders, total) VALUES ($1, 1, $2) "
                "ON CONFLICT (customer) DO UPDATE SET orders = order_summary.orders + 1, "
                "total = order_summary.total + $2",
                event.customer,
                event.amount,
            )
        elif isinstance(event, OrderCancelled):
            await connection.execute(
                "UPDATE order_summary SET orders = orders - 1, total = total - $2 "
                "WHERE customer = $1",
                event.customer,
                event.amount,
            )

    async def reset(self, connection: Any) -> None:
        await connection.execute("TRUNCATE order_summary")


async def create_read_model(store: EventStore) -> None:
    async with store.connection() as connection, connection.transaction():
        await connection.execute(READ_MODEL_DDL)


SUMMARY = "order-summary"

lifespan = StoreLifespan(
    migrate=True,  # many deployments run `eventuali-pg migrate` in a release step instead
    on_startup=create_read_model,
    projections=[
        lambda store: ProjectionRunner(
            store,
            OrderSummary(),
            subscription_id=SUMMARY,
            aggregate_type_filter="Order",
            single_active=True,  # one worker runs it; the others stand by and take over
            lease_poll_interval=0.5,
        )
    ],
)
app = FastAPI(title="web shop on eventuali-pg", lifespan=lifespan)
StoreDep = Annotated[EventStore, Depends(get_store)]


# Every event saved while handling a request carries the request's X-Request-ID (or a new
# id) as correlation id, and the user (here simply an X-User header; use your authentication).
app.add_middleware(
    EventContextMiddleware,
    user_of=lambda scope: dict(scope["headers"]).get(b"x-user", b"").decode() or None,
)


@app.exception_handler(ConcurrencyError)
async def conflict(request: Request, exc: ConcurrencyError) -> JSONResponse:
    return JSONResponse(
        status_code=409,
        content={
            "error": "conflict",
            "detail": str(exc),
            "aggregate_id": exc.aggregate_id,
            "actual_version": exc.actual_version,
        },
    )


# -- commands -------------------------------------------------------------------------------------


class PlaceOrder(BaseModel):
    customer: str
    amount: Decimal


class CancelOrder(BaseModel):
    reason: str
    expected_version: int  # the version the client saw: optimistic concurrency over HTTP


@app.post("/orders", status_code=201)
async def place_order(command: PlaceOrder, store: StoreDep) -> dict[str, Any]:
    order = Order(id=f"order-{uuid.uuid4().hex[:12]}")
    try:
        order.place(command.customer, command.amount)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    position = await store.save(order)
    return {"id": order.id, "version": order.version, "position": position}


@app.post("/orders/{order_id}/cancel")
async def cancel_order(order_id: str, command: CancelOrder, store: StoreDep) -> dict[str, Any]:
    # Rebuild the order as the client saw it; if anything was saved since, save() raises
    # ConcurrencyError, answered with 409 by the handler above.
    seen = [
        event
        for event in await store.load_events(order_id)
        if event.aggregate_version <= command.expected_version
    ]
    if not seen or seen[0].aggregate_type != Order.get_aggregate_type():
        raise HTTPException(404, f"no order {order_id!r}")
    order = Order.from_events(seen)
    try:
        order.cancel(command.reason)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    position = await store.save(order)
    return {"id": order.id, "version": order.version, "position": position}


@app.post("/customers", status_code=201)
async def register_customer(name: str, store: StoreDep) -> dict[str, Any]:
    customer = Customer(id=f"customer-{uuid.uuid4().hex[:12]}")
    customer.register(name)
    return {"id": customer.id, "position": await store.save(customer)}


# -- queries --------------------------------------------------------------------------------------


@app.get("/orders/{order_id}")
async def get_order(order_id: str, store: StoreDep) -> dict[str, Any]:
    try:
        order = await store.load(Order, order_id)
    except AggregateTypeMismatchError:  # the id of a customer, say
        order = None
    if order is None:
        raise HTTPException(404, f"no order {order_id!r}")
    return {
        "id": order.id,
        "version": order.version,
        "customer": order.customer,
        "amount": str(order.amount),
        "cancelled": order.cancelled,
    }


@app.get("/customers/{customer}/summary")
async def customer_summary(
    customer: str,
    store: StoreDep,
    after: Annotated[int, Query(ge=0, description="a position save() returned")] = 0,
    timeout: Annotated[float, Query(gt=0, le=30)] = 5.0,
) -> dict[str, Any]:
    """The read model, once it includes every event up to ``after`` (read-your-writes)."""
    runner = lifespan.runner(SUMMARY)
    try:
        # The *stored* checkpoint: the projection may run in another worker.
        await runner.wait_for_checkpoint(after, timeout=timeout)
    except TimeoutError as exc:
        raise HTTPException(504, str(exc)) from exc
    async with store.connection() as connection:
        row = await connection.fetchrow(
            "SELECT orders, total FROM order_summary WHERE customer = $1", customer
        )
    return {
        "customer": customer,
        "orders": row["orders"] if row else 0,
        "total": str(row["total"]) if row else "0",
    }


@app.get("/events")
async def events(
    request: Request,
    from_position: Annotated[int | None, Query(ge=0)] = None,
    aggregate_type: Annotated[list[str] | None, Query()] = None,
    event_type: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """Server-sent events: every matching event after ``from_position`` (or the
    ``Last-Event-ID`` header), then live. Each ``data:`` is the JSON of ``tail --json``."""
    return event_stream(
        request,
        from_position=from_position,
        aggregate_types=aggregate_type,
        event_types=event_type,
        heartbeat=float(os.environ.get("WEB_SHOP_HEARTBEAT", "15")),
    )


@app.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """This worker: its pid, open event streams and the projection's figures."""
    state = get_lifespan(request)
    return {
        "pid": os.getpid(),
        "streams": len(state.streamer.subscription_ids),
        "projection": asdict(state.runner(SUMMARY).stats()),
    }


if __name__ == "__main__":
    import uvicorn

    # The app object, not "web_shop:app": a string would import this file a second time.
    uvicorn.run(app, port=int(os.environ.get("PORT", "8000")))
