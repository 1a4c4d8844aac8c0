"""Ending the background tasks the library owns."""

from __future__ import annotations

import asyncio
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
