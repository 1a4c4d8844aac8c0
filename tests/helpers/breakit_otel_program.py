"""A workload under a tracer provider whose span processor raises (in ``on_start`` or
``on_end``, the mode) and whose exporter raises: it saves one event and runs a projection
until that event is handled, then writes what happened as JSON.

Usage: python breakit_otel_program.py start|end DSN OUT
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from eventuali_pg import Aggregate, Event, EventStore
from eventuali_pg.projections import Projection, ProjectionRunner


class Raising(SpanProcessor):
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self.mode == "start":
            raise RuntimeError("span processor on_start failed")

    def on_end(self, span: ReadableSpan) -> None:
        if self.mode == "end":
            raise RuntimeError("span processor on_end failed")


class Down(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        raise OSError("collector unreachable")


class Pinged(Event, event_type="breakit.Pinged"):
    n: int


class Pinger(Aggregate):
    def ping(self, n: int) -> None:
        self.apply(Pinged(n=n))

    def apply_breakit_pinged(self, event: Pinged) -> None:
        pass


class Seen(Projection):
    def __init__(self) -> None:
        self.seen: list[int] = []

    async def handle_event(self, event: Event) -> None:
        assert event.global_position is not None
        self.seen.append(event.global_position)


async def main(mode: str, dsn: str, out: Path) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Down()))
    provider.add_span_processor(Raising(mode))
    trace.set_tracer_provider(provider)
    result: dict[str, Any] = {}
    async with await EventStore.create(dsn) as store:
        pinger = Pinger(id="pinger")
        pinger.ping(1)
        try:
            result["position"] = await store.save(pinger)
        except Exception as exc:
            result["save_error"] = f"{type(exc).__name__}: {exc}"
        result["head"] = await store.get_global_position()
        projection = Seen()
        runner = ProjectionRunner(store, projection, subscription_id="breakit-otel")
        await runner.start()
        try:
            for _ in range(200):  # a hang detector only
                if projection.seen:
                    break
                await asyncio.sleep(0.05)
        finally:
            await runner.stop()
        result["handled"] = projection.seen
    await asyncio.to_thread(out.write_text, json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
