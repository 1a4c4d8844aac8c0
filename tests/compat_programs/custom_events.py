"""Pattern of upstream's custom event subclass examples: get_event_type overrides, an
aggregate type given by an instance method, register_event_class, load_events_by_type, and an
unregistered type loading as a generic Event that keeps its fields."""

import asyncio
import os
from datetime import datetime, timezone
from typing import Any, Dict, Optional

from eventuali_pg import Aggregate, Event, EventStore


class AgentEvent(Event):
    agent_name: str = ""
    workflow_id: str = ""
    event_name: str = ""
    attributes: Dict[str, Any] = {}

    def get_event_type(self) -> str:
        return "AgentEvent"


class PaymentEvent(Event):
    payment_id: str = ""
    amount: float = 0.0
    transaction_id: Optional[str] = None


class AgentAggregate(Aggregate):
    agent_name: str = ""
    status: str = "inactive"

    def get_aggregate_type(self) -> str:
        return "agent_aggregate"

    def command_received(self, command: str, workflow_id: str, agent_name: str) -> None:
        self.apply(
            AgentEvent(
                aggregate_id=self.id,
                aggregate_type=self.get_aggregate_type(),
                agent_name=agent_name,
                workflow_id=workflow_id,
                event_name="agent.commandReceived",
                attributes={"command": command,
                            "received_at": datetime.now(timezone.utc).isoformat()},
            )
        )

    def apply_agent_event(self, event: Event) -> None:
        if isinstance(event, AgentEvent):
            self.agent_name = event.agent_name
            self.status = "active"


class LedgerAggregate(Aggregate):
    def get_aggregate_type(self) -> str:
        return "ledger_aggregate"

    def apply_payment_completed(self, event: Event) -> None:
        pass


async def main() -> None:
    store = await EventStore.create(os.environ["EVENTUALI_PG_DSN"])
    EventStore.register_event_class("AgentEvent", AgentEvent)
    EventStore.register_event_class("agent.simonSays.commandReceived", AgentEvent)
    assert set(EventStore.get_registered_event_classes()) == {
        "AgentEvent", "agent.simonSays.commandReceived"}

    agent = AgentAggregate(id="agent-123")
    agent.command_received("analyze", "workflow-456", "MarketAnalyzer")
    agent.apply(AgentEvent(agent_name="MarketAnalyzer", attributes={"nested": {"x": 1}}))
    await store.save(agent)

    events = await store.load_events_by_type("agent_aggregate")
    assert [type(e) for e in events] == [AgentEvent, AgentEvent]
    assert events[0].event_type == "AgentEvent" and events[0].workflow_id == "workflow-456"
    assert events[1].attributes == {"nested": {"x": 1}}
    loaded = await store.load(AgentAggregate, "agent-123")
    assert loaded is not None and loaded.status == "active" and loaded.version == 2

    EventStore.unregister_event_class("agent.simonSays.commandReceived")

    payment = Event(event_type="payment.completed", payment_id="pay-1", amount=9.5)
    ledger = LedgerAggregate(id="ledger-1")
    ledger.apply(payment)
    await store.save(ledger)
    [stored] = await store.load_events_by_type("ledger_aggregate")
    data = stored.to_dict()
    assert type(stored) is Event and data["payment_id"] == "pay-1" and data["amount"] == 9.5
    await store.close()
    print("ok")


if __name__ == "__main__":
    asyncio.run(main())
