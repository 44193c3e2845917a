"""A cluster's registry, whole, in the shared PostgreSQL (docs/scale.md, "Registry changes").

Each worker has a registry file of its own; the one copy all of them share is this row: the
document (`Registry.to_json`, compressed), a version that rises by one with every change, the
fingerprint of the document's text, and when and by which worker it was changed. A worker knows
the version it runs; another version here is a change it has not applied yet.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.registry import Registry, registry_from_json
from storage.cluster_models import SharedRegistryRow

ROW_ID = 1


@dataclass(frozen=True, slots=True)
class Head:
    """What the shared registry is, without its document."""

    version: int
    fingerprint: str
    changed_at: float
    changed_by: str


def document_of(registry: Registry) -> tuple[bytes, str]:
    """The registry's JSON document and its fingerprint (equal documents, equal fingerprints)."""
    text = registry.to_json().encode("utf-8")
    return text, hashlib.blake2b(text, digest_size=20).hexdigest()


def read_head(sessions: sessionmaker[Session]) -> Head | None:
    """The shared registry's version, fingerprint and change; None before any worker wrote it."""
    with sessions() as s:
        row = s.execute(
            select(
                SharedRegistryRow.version,
                SharedRegistryRow.fingerprint,
                SharedRegistryRow.changed_at,
                SharedRegistryRow.changed_by,
            ).where(SharedRegistryRow.id == ROW_ID)
        ).one_or_none()
    return None if row is None else Head(int(row[0]), str(row[1]), float(row[2]), str(row[3]))


def read_registry(sessions: sessionmaker[Session]) -> tuple[Head, Registry] | None:
    """The shared registry and its head, read in one query; None before any worker wrote it."""
    with sessions() as s:
        row = s.get(SharedRegistryRow, ROW_ID)
        if row is None:
            return None
        head = Head(row.version, row.fingerprint, row.changed_at, row.changed_by)
        blob = row.document
    return head, registry_from_json(zlib.decompress(blob))


def write_registry(
    s: Session,
    registry: Registry,
    *,
    changed_at: float,
    changed_by: str,
    document: tuple[bytes, str] | None = None,
) -> Head:
    """Store `registry` as the next version, in the caller's transaction. Callers hold the
    cluster's registry lock (firewatch/cluster/registry_share.py): two changes never take one
    version, and none is made on a stale base."""
    text, fingerprint = document or document_of(registry)
    row = s.get(SharedRegistryRow, ROW_ID, with_for_update=True)
    version = 1 if row is None else row.version + 1
    head = Head(version, fingerprint, changed_at, changed_by[:100])
    values = {
        "version": head.version,
        "fingerprint": head.fingerprint,
        "changed_at": head.changed_at,
        "changed_by": head.changed_by,
        "document": zlib.compress(text, 6),
    }
    if row is None:
        s.add(SharedRegistryRow(id=ROW_ID, **values))
    else:
        for k, v in values.items():
            setattr(row, k, v)
    return head
