"""Dead letters for the ``eventuali-pg dead-letters`` tests: parked by a real ProjectionRunner
with a failing handler (in the test process), plus projection modules for ``retry`` written into
a folder the CLI then runs in."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

from eventuali_pg import Event, EventStore
from eventuali_pg.projections import DeadLetter, DeadLetterQueue, Projection, ProjectionRunner
from helpers.cli_run import Result, cli_env, command, stop_process
from helpers.projection_domain import ProjTicker, seed

#: Table the retry projections below write to (exactly-once: in the retry's transaction).
HANDLED_TABLE = "public.cli_dead_letters_handled"


class Poisoned(Exception):
    pass


class PoisonIntolerant(Projection):
    """Fails on every event with ``poison=True``; its message has two lines on purpose."""

    async def handle_event(self, event: Event) -> None:
        if getattr(event, "poison", False):
            raise Poisoned(
                f"cannot digest event {event.global_position}\nsecond line of the message"
            )


async def park_letters(dsn: str, subscriptions: tuple[str, ...]) -> list[int]:
    """Save 2 poison events among good ones, run one runner per subscription over them (two
    attempts each), and return the poison positions: each subscription parks both."""
    async with await EventStore.create(dsn, poll_interval=0.2) as store:
        await seed(store, aggregates=2, rounds=2, prefix="good")
        poisons = []
        for number in (1, 2):
            bad = ProjTicker(id=f"bad-{number}")
            bad.tick(poison=True)
            await store.save(bad)
            poisons.append(await store.get_global_position())
            await seed(store, aggregates=1, rounds=1, prefix=f"after-{number}")
        head = await store.get_global_position()
        for subscription_id in subscriptions:
            runner = ProjectionRunner(
                store,
                PoisonIntolerant(),
                subscription_id=subscription_id,
                max_attempts=2,
                retry_delay=0.001,
                max_retry_delay=0.01,
            )
            async with runner:
                await runner.wait_for_position(head, timeout=30)
        queue = DeadLetterQueue(store)
        for subscription_id in subscriptions:
            assert await queue.count(subscription_id) == len(poisons)
    return poisons


async def get_letter(dsn: str, subscription_id: str, position: int) -> DeadLetter | None:
    """The parked event, read through the library."""
    async with await EventStore.create(dsn) as store:
        return await DeadLetterQueue(store).get(subscription_id, position)


async def count_letters(dsn: str, subscription_id: str) -> int:
    """How many events ``subscription_id`` has parked."""
    async with await EventStore.create(dsn) as store:
        return await DeadLetterQueue(store).count(subscription_id)


PROJECTIONS = {
    "fixed_views.py": f"""
        from eventuali_pg.projections import Projection, TransactionalProjection

        class FixedView(TransactionalProjection):
            async def handle_event(self, event, connection):
                await connection.execute(
                    "INSERT INTO {HANDLED_TABLE} (position, event_type, poison, via) "
                    "VALUES ($1, $2, $3, 'class')",
                    event.global_position, event.event_type, event.poison,
                )

        class AtLeastOnceView(Projection):
            async def handle_event(self, event):
                pass

        def build():
            view = FixedView()
            return view

        class NeedsArguments(FixedView):
            def __init__(self, dsn):
                self.dsn = dsn

        NOT_A_PROJECTION = "just a string"
    """,
    "broken_views.py": f"""
        from eventuali_pg.projections import TransactionalProjection

        class StillBroken(TransactionalProjection):
            async def handle_event(self, event, connection):
                await connection.execute(
                    "INSERT INTO {HANDLED_TABLE} (position, event_type, poison, via) "
                    "VALUES ($1, $2, $3, 'broken')",
                    event.global_position, event.event_type, event.poison,
                )
                raise RuntimeError("still broken\\nsecond line")
    """,
    "fails_on_import.py": """
        raise ValueError("this module is broken\\nat import time")
    """,
}


def write_projections(folder: Path) -> None:
    """Write the projection modules ``retry`` imports into ``folder``."""
    for name, source in PROJECTIONS.items():
        (folder / name).write_text(textwrap.dedent(source).lstrip())


HANDLED_DDL = f"""
DROP TABLE IF EXISTS {HANDLED_TABLE};
CREATE TABLE {HANDLED_TABLE} (
    position bigint NOT NULL,
    event_type text NOT NULL,
    poison boolean NOT NULL,
    via text NOT NULL
);
"""


#: The installed ``eventuali-pg`` console script next to this interpreter (if installed).
CONSOLE_SCRIPT = Path(sys.executable).parent / "eventuali-pg"


async def run_cli_in(
    folder: Path, *args: str, console_script: bool = False, timeout: float = 90
) -> Result:
    """Run the CLI to completion with ``folder`` as its current directory: ``python -m
    eventuali_pg`` (the current directory on sys.path), or with ``console_script`` the
    installed ``eventuali-pg`` script (its own folder on sys.path instead)."""
    argv = [str(CONSOLE_SCRIPT), *args] if console_script else command(*args)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
        cwd=folder,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        await stop_process(proc)
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())
