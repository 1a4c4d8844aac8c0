"""Personal fields in and out: AES-256-GCM per field under the subject's key.

A personal field is stored as ``{"$personal": base64(nonce + ciphertext + tag), "s": subject,
"g": key generation}`` in place of its JSON value. The plaintext is the field's JSON; the
associated data binds the ciphertext to its event id and payload key, so a value cannot be
moved to another event or field. The subject and generation are in clear so that any reader
(also one without the event's class, as the command line) knows which key it needs.

Decoding asks a :class:`KeySource` for ciphers: a cipher decrypts, :data:`FORGOTTEN` gives the
field's erased form, and :data:`MISSING` (not known yet) makes the caller fetch the keys of the
whole page in one query and decode again (see :class:`eventuali_pg.store.keys.KeyRing`).
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic_core import from_json, to_json

from ..errors import InvalidInputError
from ..personal import ERASED, PersonalField, subject_of

if TYPE_CHECKING:
    from ..models import Event

#: The key that marks an encrypted value in a stored payload.
MARKER: Final = "$personal"
#: The same, as it appears in a payload's JSON text (a cheap test before parsing further).
MARKER_TEXT: Final = '"$personal"'
_NONCE_BYTES: Final = 12


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: The key of that subject and generation was destroyed: the field reads erased.
FORGOTTEN: Final = _Sentinel("FORGOTTEN")
#: The key is not known yet: fetch it and decode again.
MISSING: Final = _Sentinel("MISSING")


@dataclass(frozen=True)
class SubjectKey:
    """The current key of a subject, for writing."""

    subject_id: str
    generation: int
    cipher: AESGCM


class KeySource(Protocol):
    """Where decoding finds the cipher of a subject's key generation."""

    def cipher(self, subject_id: str, generation: int) -> AESGCM | _Sentinel:
        """The cipher, :data:`FORGOTTEN`, or :data:`MISSING` (recorded for a fetch)."""


_AAD_PREFIX: Final = b"eventuali_pg:1:"
_NONE: frozenset[str] = frozenset()


def _aad(event_id: Any, key: str) -> bytes:
    return _AAD_PREFIX + bytes(event_id.bytes) + key.encode()


def encrypt_fields(event: Event, payload: bytes, keys: Mapping[str, SubjectKey]) -> bytes:
    """``payload`` (the event's JSON) with each personal field encrypted under its subject's
    key in ``keys`` (which must hold every subject of the event)."""
    data = from_json(payload)
    for field in type(event).__personal__:
        if field.key not in data:
            continue
        subject = subject_of(event, field)
        key = keys.get(subject)
        if key is None:
            raise InvalidInputError(
                f"no key for subject {subject!r} of event {event.event_type!r}: events with "
                "personal fields are saved through EventStore.save, which provides the keys"
            )
        nonce = os.urandom(_NONCE_BYTES)
        aad = _aad(event.event_id, field.key)
        sealed = key.cipher.encrypt(nonce, to_json(data[field.key]), aad)
        data[field.key] = {
            MARKER: binascii.b2a_base64(nonce + sealed, newline=False).decode("ascii"),
            "s": subject,
            "g": key.generation,
        }
    return bytes(to_json(data))


def is_sealed(value: Any) -> bool:
    """True for an encrypted value as stored."""
    return type(value) is dict and MARKER in value


def wanted_keys(data: dict[str, Any]) -> set[tuple[str, int]]:
    """(subject, generation) of every encrypted value at the top of ``data``."""
    return {
        (str(value["s"]), int(value["g"])) for value in data.values() if is_sealed(value)
    }


def reveal(
    data: dict[str, Any],
    fields: tuple[PersonalField, ...] | None,
    event_id: Any,
    keys: KeySource | None,
) -> tuple[frozenset[str], bool]:
    """Decrypt the encrypted values of ``data`` in place; return the names of the fields
    erased (their key was destroyed) and whether every key was known.

    ``fields`` are the class's personal fields; None (no class, or an upcast event) looks at
    every top-level value. A value that is not encrypted (written before the field was
    personal) is left as it is. Raises ``ValueError`` for a value that does not decrypt.
    """
    erased: list[str] = []
    complete = True
    if fields is None:
        items = [(key, key, ERASED) for key, value in data.items() if is_sealed(value)]
    else:
        items = [(f.key, f.name, f.erased) for f in fields if is_sealed(data.get(f.key))]
    if not items:
        return _NONE, True
    prefix = _AAD_PREFIX + bytes(event_id.bytes)
    last: tuple[Any, Any] | None = None
    cipher: AESGCM | _Sentinel = FORGOTTEN
    for key, name, erased_form in items:
        sealed = data[key]
        wanted = (sealed["s"], sealed["g"])
        if wanted != last:  # the fields of one event usually share one subject
            last = wanted
            cipher = FORGOTTEN if keys is None else keys.cipher(str(wanted[0]), int(wanted[1]))
        if cipher is MISSING:
            complete = False
            data[key] = erased_form
            continue
        if isinstance(cipher, _Sentinel):
            data[key] = erased_form
            erased.append(name)
            continue
        try:
            blob = binascii.a2b_base64(sealed[MARKER])
            plain = cipher.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], prefix + key.encode())
        except (InvalidTag, binascii.Error, ValueError, TypeError) as exc:
            raise ValueError(
                f"{key}: the personal value does not decrypt with the key of subject "
                f"{sealed['s']!r} ({type(exc).__name__}); the stored value or key was altered"
            ) from None
        data[key] = from_json(plain)
    return (frozenset(erased) if erased else _NONE), complete


def erase_copy(event: Event, dumped: dict[str, Any]) -> dict[str, Any]:
    """``dumped`` (an event's JSON dump) with its personal fields replaced by their erased
    form, for copies kept outside the events table (dead letters)."""
    for field in type(event).__personal__:
        if field.name in dumped:
            dumped[field.name] = field.erased
    for name in event.erased_fields:
        if name in dumped:
            dumped[name] = ERASED
    return dumped
