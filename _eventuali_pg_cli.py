"""Entry point of the ``eventuali-pg`` console script: Ctrl-C at any moment is a quiet exit 130.

Importing ``eventuali_pg`` takes a few tenths of a second (pydantic, asyncpg); a Ctrl-C in that
window would otherwise print a ``KeyboardInterrupt`` traceback. This module is outside the
package, so nothing heavy runs before the interrupt is handled here; once
:func:`eventuali_pg.cli.main` runs, it handles Ctrl-C itself.
"""

from __future__ import annotations

import contextlib
import sys

EXIT_INTERRUPTED = 130


def main() -> int:
    """Import the command line and run it; a Ctrl-C during the imports exits 130 quietly."""
    try:
        from eventuali_pg.cli import main as run
    except KeyboardInterrupt:
        _interrupted()
        return EXIT_INTERRUPTED
    return run()


def _interrupted() -> None:
    with contextlib.suppress(OSError, ValueError):
        print("eventuali-pg: interrupted", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
