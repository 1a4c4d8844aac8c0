"""Ending the background tasks the library owns."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended.

    The task's own cancellation is absorbed and an error it ended with is raised. If the caller
    is cancelled meanwhile, the task is still waited for (it is unwinding), then the caller's
    cancellation propagates: it is never swallowed.
    """
    if task is None:
        return
    task.cancel()
    interrupted: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError as exc:
            interrupted = exc  # let the task finish unwinding; cancelling again would cut it
    if interrupted is not None:
        raise interrupted
    if not task.cancelled():
        error = task.exception()
        if error is not None:
            raise error


async def run_together(owner: str, parts: list[tuple[str, Coroutine[Any, Any, None]]]) -> None:
    """Run the coroutines as tasks until the first one ends; cancel and await the others, then
    raise the first one's error (if any)."""
    tasks = [
        asyncio.create_task(coro, name=f"eventuali_pg {owner} {name}")
        for name, coro in parts
    ]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        errors = [task.exception() for task in tasks if task.done() and not task.cancelled()]
    for task in tasks:
        if task in done:
            if task.cancelled():  # by someone else: this function cancels only after the wait
                raise RuntimeError(f"projection {owner}: task {task.get_name()!r} was cancelled")
            error = task.exception()
            if error is not None:
                raise error
    for error in errors:
        if error is not None:
            raise error
