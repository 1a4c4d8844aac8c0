"""The ``eventuali-pg`` command line (also ``python -m eventuali_pg``).

:func:`main` parses the arguments, imports the one command module it needs, runs it (async
commands under :func:`asyncio.run`, with SIGTERM handled like Ctrl-C), and turns every outcome
into an exit code: 0 ok, 1 error, 2 bad usage, 3 check failed, 130 interrupted, 143 terminated.
Errors are one ``error: <message>`` line on stderr, never a traceback (unless ``--debug``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

from .parser import HANDLER, PROG, UsageError, build_parser

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "main",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: What a command handler returns: an exit code, or a coroutine producing one.
CommandResult = int | Coroutine[Any, Any, int]


class _Terminated(Exception):
    """SIGTERM arrived while an async command ran."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``eventuali-pg`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.

    Output left in stdout's buffer is flushed here: when the reader of a pipe has gone (``| head
    -n 1``), that is a quiet exit 0 instead of an error at the interpreter's final flush.
    """
    try:
        code = _main(argv)
    except BrokenPipeError:
        code = EXIT_OK
        _silence_stdout()
    except KeyboardInterrupt:  # outside a command: while parsing, --help
        _stderr("interrupted")
        code = EXIT_INTERRUPTED
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except (OSError, ValueError):
        pass
    return code


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or bad usage (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.version:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"{PROG} {version('eventuali-pg')}")
        except PackageNotFoundError:
            print(f"{PROG} (not installed)")
        return EXIT_OK
    handler_name = getattr(args, HANDLER, None)
    if handler_name is None:
        print(f"{PROG}: error: choose a command (see `{PROG} --help`)", file=sys.stderr)
        return EXIT_USAGE
    debug = bool(args.debug)
    with _cli_logging(debug):
        return _dispatch(str(handler_name), args, debug)


def _dispatch(handler_name: str, args: Any, debug: bool) -> int:
    """Run the command's handler and turn its outcome into an exit code."""
    try:
        return _run(_load_handler(handler_name), args)
    except UsageError as exc:
        command = f"{PROG} {args.command}"
        print(f"{command}: error: {exc} (see `{command} --help`)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _stderr("interrupted")
        return EXIT_INTERRUPTED
    except _Terminated:
        _stderr("terminated")
        return EXIT_TERMINATED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except Exception as exc:
        return _report(exc, debug)


def _load_handler(name: str) -> Callable[[Any], CommandResult]:
    module_name, _, function = name.partition(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    handler: Callable[[Any], CommandResult] = getattr(module, function)
    return handler


def _run(handler: Callable[[Any], CommandResult], args: Any) -> int:
    result = handler(args)
    if isinstance(result, int):
        return result
    return asyncio.run(_with_sigterm(result))


async def _with_sigterm(command: Coroutine[Any, Any, int]) -> int:
    """Run ``command``; SIGTERM cancels it (so its cleanup runs) and raises _Terminated."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated = False

    def on_sigterm() -> None:
        nonlocal terminated
        terminated = True
        task.cancel()

    installed = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        installed = True
    try:
        return await command
    except asyncio.CancelledError:
        if terminated:
            raise _Terminated from None
        raise
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)


def _report(exc: BaseException, debug: bool) -> int:
    """Print one line for ``exc`` (a traceback too with --debug); return the exit code."""
    from ..errors import EventualiError

    leaf = _single_leaf(exc)
    if leaf is not exc and isinstance(leaf, (KeyboardInterrupt, BrokenPipeError, _Terminated)):
        if isinstance(leaf, BrokenPipeError):
            _silence_stdout()
            return EXIT_OK
        _stderr("interrupted" if isinstance(leaf, KeyboardInterrupt) else "terminated")
        return EXIT_INTERRUPTED if isinstance(leaf, KeyboardInterrupt) else EXIT_TERMINATED
    if debug:
        import traceback

        traceback.print_exception(exc)
    if isinstance(leaf, EventualiError):
        message = str(leaf)
    elif type(leaf).__module__.startswith("asyncpg"):
        message = f"PostgreSQL: {leaf}"
    elif isinstance(leaf, OSError):
        message = str(leaf)
    else:
        message = f"unexpected {type(leaf).__name__}: {leaf}"
        if not debug:
            message += f" (run `{PROG} --debug ...` for the traceback)"
    from .output import safe_text

    print(f"error: {safe_text(message)}", file=sys.stderr)
    return EXIT_ERROR


def _single_leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _stderr(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(f"{PROG}: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail on a closed pipe."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record arrives (not when it was created)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _OneLineHandler(_CurrentStderrHandler):
    """A warning on one line, the exception's type and message appended, no traceback.

    For the library's and the driver's warnings: asyncpg's pool logs "Failed to restore the
    pool connection floor; retrying" with a traceback each time it fails to reconnect while the
    server is down (a restart under ``tail``); nothing is lost, so one line is all it takes.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            detail = " ".join(str(exc).split())
            name = type(exc).__name__
            message += f" ({name}: {detail})" if detail and detail not in message else f" ({name})"
        from .output import safe_text

        return f"{PROG}: {record.levelname} {record.name}: {safe_text(message)}"


@contextlib.contextmanager
def _cli_logging(debug: bool) -> Iterator[None]:
    """Library warnings (reconnects, retries) go to stderr; everything with --debug.

    The loggers are put back as they were afterwards, so :func:`main` can run inside another
    program (or a test) without changing its logging.
    """
    root = logging.getLogger("eventuali_pg")
    driver = logging.getLogger("asyncpg")
    quieted = [logging.getLogger(name) for name in _QUIETED_LOGGERS]
    saved = [(lg, lg.level, lg.propagate) for lg in (root, driver, *quieted)]
    # Warnings (the library's reconnects and retries, the driver's pool) are one line each;
    # with --debug, everything and with its traceback.
    handler = _CurrentStderrHandler() if debug else _OneLineHandler()
    handler.setFormatter(logging.Formatter(f"{PROG}: %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    root.propagate = False
    driver.addHandler(handler)
    driver.setLevel(logging.WARNING)
    driver.propagate = False
    try:
        yield
    finally:
        root.removeHandler(handler)
        driver.removeHandler(handler)
        for logger, level, propagate in saved:
            logger.setLevel(level)
            logger.propagate = propagate


#: Loggers a command may quiet while it runs (restored afterwards).
_QUIETED_LOGGERS = ("eventuali_pg.projections",)
