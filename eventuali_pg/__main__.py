"""``python -m eventuali_pg``: the ``eventuali-pg`` command line."""

from eventuali_pg.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
