"""Subject keys: the per-subject AES-256-GCM keys of personal fields, and their cache.

One row per subject in ``<schema>.subject_keys``: its key generation and the 32-byte key, or a
tombstone (key NULL, ``forgotten_at`` set) once :func:`eventuali_pg.store.forget.forget`
destroyed it. Each store keeps a bounded LRU cache of keys (``key_cache_size`` subjects); an
entry is trusted for ``key_cache_ttl`` seconds, which bounds how long another process that had
a forgotten key cached can still decrypt with it (the forgetting process evicts it at once).
A generation seen forgotten is forgotten for good and cached as such.

Reads fetch the keys a page of events needs in one query (:meth:`KeyRing.fetch`). Writes get
the current key of each subject (:meth:`KeyRing.for_write`), creating missing ones with
``INSERT ... ON CONFLICT DO NOTHING`` and reading back the winner of a race; a subject whose
key was destroyed raises :class:`SubjectForgottenError`. The append statement then checks,
holding a share lock on each key row until it commits, that the keys it encrypted with still
exist, so a ``forget`` that commits first refuses the save and one that commits later waits
for it.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._db import Pool, database_errors
from ..codec.personal import FORGOTTEN, MISSING, SubjectKey, _Sentinel
from ..errors import SubjectForgottenError

#: Subjects whose keys one store keeps in memory unless configured otherwise.
DEFAULT_KEY_CACHE_SIZE = 10_000
#: Seconds a cached key is trusted unless configured otherwise.
DEFAULT_KEY_CACHE_TTL = 30.0


@dataclass(frozen=True)
class KeySql:
    """The statements of the keys table of one schema."""

    schema: str

    @property
    def read(self) -> str:
        """Generation and key (NULL when forgotten) of the subjects ``$1``."""
        # A join, not "= ANY($1)": a generic plan would test every row against the array.
        return (
            f"SELECT k.subject_id, k.generation, k.key FROM unnest($1::text[]) AS s(subject_id)"
            f" JOIN {self.schema}.subject_keys k ON k.subject_id = s.subject_id"
        )

    @property
    def create(self) -> str:
        """Create the keys ``$2`` of subjects ``$1`` unless they have a row (key or tombstone)."""
        return (
            f"INSERT INTO {self.schema}.subject_keys (subject_id, key) "
            "SELECT * FROM unnest($1::text[], $2::bytea[]) ORDER BY 1 "
            "ON CONFLICT (subject_id) DO NOTHING"
        )

    @property
    def forget(self) -> str:
        """Destroy the key of subject ``$1`` (a tombstone stays); its generation, or no row
        when it had no live key."""
        return (
            f"UPDATE {self.schema}.subject_keys SET key = NULL, forgotten_at = now() "
            "WHERE subject_id = $1 AND key IS NOT NULL RETURNING generation"
        )

    @property
    def tombstone(self) -> str:
        """A tombstone for subject ``$1`` that never had a key; its generation, or no row
        when the subject has a row already."""
        return (
            f"INSERT INTO {self.schema}.subject_keys (subject_id, key, forgotten_at) "
            "VALUES ($1, NULL, now()) ON CONFLICT (subject_id) DO NOTHING RETURNING generation"
        )

    @property
    def renew(self) -> str:
        """Give forgotten subject ``$1`` the new key ``$2`` (the next generation); the new
        generation, or no row when the subject is not forgotten."""
        return (
            f"UPDATE {self.schema}.subject_keys SET key = $2, generation = generation + 1, "
            "forgotten_at = NULL, created_at = now() WHERE subject_id = $1 AND key IS NULL "
            "RETURNING generation"
        )

    @property
    def delete_snapshots(self) -> str:
        """Delete the snapshots of aggregate ``$1`` and those whose state mentions ``$1``."""
        return (
            f"DELETE FROM {self.schema}.snapshots WHERE aggregate_id = $1 "
            "OR strpos(state::text, to_jsonb($1::text)::text) > 0"
        )


_Entry = tuple[int, AESGCM | None, float]  # generation, cipher (None: forgotten), fetched at


class KeyRing:
    """The subject keys of one store: a bounded LRU cache in front of the keys table."""

    def __init__(
        self, pool: Pool, schema: str, dsn: str, *, size: int, ttl: float
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self.sql = KeySql(schema)
        self._size = size
        self._ttl = ttl
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self.fetches = 0
        self.created = 0

    def __len__(self) -> int:
        return len(self._cache)

    # -- the cache ----------------------------------------------------------------------------

    def cached(self, subject_id: str, generation: int) -> AESGCM | _Sentinel:
        """The cipher of ``subject_id``'s ``generation`` if the cache knows it, FORGOTTEN
        when that generation is known destroyed, else MISSING."""
        entry = self._cache.get(subject_id)
        if entry is None:
            return MISSING
        current, cipher, fetched_at = entry
        if generation < current:
            return FORGOTTEN  # a newer generation exists only after this one was forgotten
        if generation > current or time.monotonic() - fetched_at > self._ttl:
            return MISSING
        self._cache.move_to_end(subject_id)
        return FORGOTTEN if cipher is None else cipher

    def _put(self, subject_id: str, generation: int, key: bytes | None) -> AESGCM | None:
        cipher = AESGCM(key) if key is not None else None
        self._cache[subject_id] = (generation, cipher, time.monotonic())
        self._cache.move_to_end(subject_id)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return cipher

    def evict(self, subject_id: str) -> None:
        """Drop ``subject_id`` from the cache (after a forget or a refused save)."""
        self._cache.pop(subject_id, None)

    # -- reads --------------------------------------------------------------------------------

    def lookup(self) -> KeyLookup:
        """A key source for decoding one page (records the keys it misses)."""
        return KeyLookup(self)

    async def fetch(self, lookup: KeyLookup) -> None:
        """Read every key ``lookup`` missed in one query, into the cache and ``lookup``."""
        wanted = lookup.missing
        lookup.missing = set()
        subjects = sorted({subject for subject, _ in wanted})
        with database_errors(self._dsn):
            rows = await self._pool.fetch(self.sql.read, subjects)
        self.fetches += 1
        found = {row["subject_id"]: row for row in rows}
        for subject, generation in wanted:
            row = found.get(subject)
            if row is None:
                lookup.fetched[(subject, generation)] = FORGOTTEN  # no key row: never readable
                continue
            cipher = self._put(subject, row["generation"], row["key"])
            if generation == row["generation"] and cipher is not None:
                lookup.fetched[(subject, generation)] = cipher
            else:
                lookup.fetched[(subject, generation)] = FORGOTTEN

    # -- writes -------------------------------------------------------------------------------

    async def for_write(
        self, subjects: Iterable[str], connection: Any = None
    ) -> dict[str, SubjectKey]:
        """The current key of each subject, created when it has none (on ``connection``, the
        caller's transaction, when given). Raises :class:`SubjectForgottenError` for a
        forgotten subject."""
        keys: dict[str, SubjectKey] = {}
        unknown: list[str] = []
        now = time.monotonic()
        for subject in subjects:
            entry = self._cache.get(subject)
            if entry is not None and entry[1] is not None and now - entry[2] <= self._ttl:
                keys[subject] = SubjectKey(subject, entry[0], entry[1])
            else:
                unknown.append(subject)
        if not unknown:
            return keys
        unknown.sort()
        fresh = [os.urandom(32) for _ in unknown]
        with database_errors(self._dsn, writing=True):
            if connection is not None:
                rows = await _create_and_read(connection, self.sql, unknown, fresh)
            else:
                async with self._pool.acquire() as conn:
                    rows = await _create_and_read(conn, self.sql, unknown, fresh)
        self.created += 1
        for row in rows:
            subject = row["subject_id"]
            if row["key"] is None:
                self._put(subject, row["generation"], None)
                raise forgotten_error(subject)
            cipher = AESGCM(row["key"])
            if connection is None:  # else not cached: the caller's transaction may roll back
                self._put(subject, row["generation"], row["key"])
            keys[subject] = SubjectKey(subject, row["generation"], cipher)
        return keys


async def _create_and_read(
    connection: Any, sql: KeySql, subjects: list[str], fresh: list[bytes]
) -> list[Any]:
    # Two statements: the read must see a key another writer committed while the insert
    # waited for it (ON CONFLICT DO NOTHING), which the insert's own snapshot would not.
    await connection.execute(sql.create, subjects, fresh)
    return list(await connection.fetch(sql.read, subjects))


def forgotten_error(subject_id: str) -> SubjectForgottenError:
    """The refusal of a save with personal data of forgotten ``subject_id``."""
    return SubjectForgottenError(
        f"subject {subject_id!r} was forgotten (its key destroyed), so personal data for it "
        "cannot be saved; nothing was written. If the subject really comes back (and may be "
        "stored again), call `await store.new_subject_key(subject_id)` first",
        subject_id=subject_id,
    )


class KeyLookup:
    """The key source of one decode: cached keys, keys fetched for it, and what it missed."""

    __slots__ = ("fetched", "missing", "ring")

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self.fetched: dict[tuple[str, int], AESGCM | _Sentinel] = {}
        self.missing: set[tuple[str, int]] = set()

    def cipher(self, subject_id: str, generation: int) -> AESGCM | _Sentinel:
        """See :class:`eventuali_pg.codec.personal.KeySource`."""
        found = self.fetched.get((subject_id, generation))
        if found is not None:
            return found
        found = self.ring.cached(subject_id, generation)
        if found is MISSING:
            self.missing.add((subject_id, generation))
        else:  # kept for the second pass, which the cache may no longer serve (LRU bound)
            self.fetched[(subject_id, generation)] = found
        return found
