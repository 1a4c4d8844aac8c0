"""Least-privilege roles: an owner runs the migrations, a writer appends, reads, streams and
runs projections, a reader reads and streams (:func:`grant_roles`, ``eventuali-pg grant``).
The per-object decisions are in :mod:`eventuali_pg.roles.policy`."""

from .grant import Grant, GrantReport, grant_roles

__all__ = ["Grant", "GrantReport", "grant_roles"]
