"""Conflicting arrivals: a known SOP Instance UID received again with other content.

PS3.4 B.4.1 leaves a second copy of an instance to the SCP; the archive's
``duplicate_policy`` keeps the first, rejects the new one or replaces the
stored one, and each such arrival is written here, durably, before the
C-STORE is answered, so that ``storage verify`` can list it later.

Like the DIMSE-N tables (:mod:`nservices`), the table lives in the index
file and is NOT part of :data:`~stellarpacs.storage.index.schema.MIGRATIONS`:
it is created with ``CREATE TABLE IF NOT EXISTS`` on first use, so the
index's own schema version is untouched and a ``storage reindex`` (which
rebuilds the instance tables) keeps the history.  Conflicts are rare, so
each is one short blocking transaction on a connection of its own, run from
the worker thread that settles the store; a replacement updates the
instance's row in the same transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from stellarpacs.storage.index.database import Database
from stellarpacs.storage.index.schema import insert_plan
from stellarpacs.storage.index.threads import run_plan
from stellarpacs.storage.records import ConflictRecord, InstanceRow

__all__ = ["list_conflicts_blocking", "record_conflict_blocking"]

_CREATE: Final = """CREATE TABLE IF NOT EXISTS conflict_arrival (
    pk INTEGER PRIMARY KEY,
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    calling_ae TEXT NOT NULL,
    received_at TEXT NOT NULL,
    size INTEGER NOT NULL,
    action TEXT NOT NULL,
    path TEXT NOT NULL)"""
_COLUMNS: Final = "sop_instance_uid, sop_class_uid, calling_ae, received_at, size, action, path"
_INSERT: Final = f"INSERT INTO conflict_arrival ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_DELETE_INSTANCE: Final = "DELETE FROM instance WHERE sop_instance_uid = ?"


def record_conflict_blocking(
    database: Database, conflict: ConflictRecord, replacement: InstanceRow | None = None
) -> None:
    """Blocking: keep ``conflict``; with ``replacement``, put that row in place of the old one."""
    db = database.connect()
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_CREATE)
            if replacement is not None:
                db.execute(_DELETE_INSTANCE, (replacement.record.sop_instance_uid,))
                run_plan(db, insert_plan(replacement))
            c = conflict
            db.execute(
                _INSERT,
                (c.sop_instance_uid, c.sop_class_uid, c.calling_ae, c.received_at, c.size,
                 c.action, c.path),
            )  # fmt: skip
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    finally:
        db.close()


def list_conflicts_blocking(database: Database) -> list[ConflictRecord]:
    """Blocking: every conflicting arrival, oldest first; none when the table was never made."""
    db = database.connect(read_only=True)
    try:
        rows = db.execute(f"SELECT {_COLUMNS} FROM conflict_arrival ORDER BY pk").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        db.close()
    return [
        ConflictRecord(str(u), str(k), str(ae), str(at), int(size), str(action), str(path))
        for u, k, ae, at, size, action, path in rows
    ]
