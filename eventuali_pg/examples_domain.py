"""Upstream eventuali's built-in example domain, for code and examples written against it.

These are **example types**, not part of the event store: a ``User`` aggregate and its events
(``UserRegistered``, ``UserEmailChanged``, ``UserDeactivated``), plus the ``DomainEvent`` and
``SystemEvent`` base classes. Import them from :mod:`eventuali_pg.event` and
:mod:`eventuali_pg.aggregate` (as from ``eventuali.event`` and ``eventuali.aggregate``); those
modules create them on first access only.

They never clash with an application's own types: each event class here registers its event
type only if no application class holds the name already, and an application class defined
later under the same name (its own ``UserRegistered``, say) takes the name over silently.
"""

from __future__ import annotations

from .models import Aggregate, Event


class DomainEvent(Event, example=True):
    """Base class for business events (upstream eventuali's name); subclass it like ``Event``."""


class SystemEvent(Event, example=True):
    """Base class for infrastructure events such as snapshots or migrations (upstream name)."""


class UserRegistered(DomainEvent, example=True):
    """Example event: a user registered."""

    name: str
    email: str


class UserEmailChanged(DomainEvent, example=True):
    """Example event: a user changed their e-mail address."""

    old_email: str
    new_email: str


class UserDeactivated(DomainEvent, example=True):
    """Example event: a user account was deactivated."""

    reason: str | None = None


class User(Aggregate):
    """Example aggregate: a user with a name, an e-mail address and an active flag."""

    name: str = ""
    email: str = ""
    is_active: bool = True

    def apply_user_registered(self, event: Event) -> None:
        """Apply :class:`UserRegistered`."""
        self.name = getattr(event, "name", "")
        self.email = getattr(event, "email", "")
        self.is_active = True

    def apply_user_email_changed(self, event: Event) -> None:
        """Apply :class:`UserEmailChanged`."""
        self.email = getattr(event, "new_email", self.email)

    def apply_user_deactivated(self, event: Event) -> None:
        """Apply :class:`UserDeactivated`."""
        self.is_active = False

    def register(self, name: str, email: str) -> None:
        """Command: register the user (records :class:`UserRegistered`)."""
        self.apply(UserRegistered(name=name, email=email))

    def change_email(self, new_email: str) -> None:
        """Command: change the e-mail address; ``ValueError`` if it has no ``@``; no event if
        unchanged."""
        if not new_email or "@" not in new_email:
            raise ValueError("Invalid email address")
        if new_email == self.email:
            return
        self.apply(UserEmailChanged(old_email=self.email, new_email=new_email))

    def deactivate(self, reason: str | None = None) -> None:
        """Command: deactivate the account (no event if already inactive)."""
        if not self.is_active:
            return
        self.apply(UserDeactivated(reason=reason))


__all__ = [
    "DomainEvent",
    "SystemEvent",
    "User",
    "UserDeactivated",
    "UserEmailChanged",
    "UserRegistered",
]
