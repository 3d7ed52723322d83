"""A store whose SOP Instance UID is known already: same content, or a conflict.

PS3.4 B.4.1 leaves it to the SCP what to do with a second copy of an SOP
Instance.  When the data set is byte for byte the one stored (in the same
transfer syntax), the copy is dropped and the store answered as before.
Otherwise the arrival is a conflict, and the archive's ``duplicate_policy``
decides: ``keep`` the first (ours is dropped), ``reject`` ours (dropped too;
the service answers with a failure), or ``replace`` the stored instance: our
file is moved into the tree and the index row replaced, in one transaction
with the conflict's record.  Every conflict is recorded durably
(:mod:`~stellarpacs.storage.index.conflicts`) before the store is answered.

A data set in another transfer syntax counts as other content: the bytes
cannot be compared, and the instance was sent in another encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from stellarpacs.fileio import TempFile, read_file_meta, remove_quietly
from stellarpacs.storage.files import durable
from stellarpacs.storage.files.layout import Layout
from stellarpacs.storage.index.conflicts import record_conflict_blocking
from stellarpacs.storage.index.database import Database
from stellarpacs.storage.records import ConflictRecord, InstanceRecord, InstanceRow

__all__ = ["DUPLICATE_POLICIES", "Known", "checked_policy", "settle_known"]

#: Policy -> the action recorded for a conflict.
DUPLICATE_POLICIES: Final = {"keep": "kept the first", "reject": "rejected", "replace": "replaced"}
_CHUNK = 1 << 20


def checked_policy(policy: str) -> str:
    """``policy`` if it is one of :data:`DUPLICATE_POLICIES`, else ValueError."""
    if policy not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicate_policy must be one of {', '.join(DUPLICATE_POLICIES)}")
    return policy


@dataclass(frozen=True, slots=True)
class Known:
    """What became of a store of a known SOP Instance UID."""

    conflict: bool  # other content than the stored instance
    replaced: bool  # ours now stands in its place (policy replace)
    dest: Path | None = None  # where ours went, when replaced


def same_dataset(first: Path, first_ts: str, temp: TempFile, temp_ts: str) -> bool:
    """Blocking: the stored data set and ours are the same bytes in the same syntax."""
    if first_ts != temp_ts:
        return False
    try:
        _, offset = read_file_meta(first)
        with first.open("rb") as theirs, temp.path.open("rb") as ours:
            if first.stat().st_size - offset != temp.data_size:
                return False
            theirs.seek(offset)
            ours.seek(temp.header_size)
            while chunk := theirs.read(_CHUNK):
                if ours.read(len(chunk)) != chunk:
                    return False
    except (OSError, ValueError):
        return False  # the first file is gone or broken: not provably the same
    return True


def settle_known(
    *,
    layout: Layout,
    dirs: durable.DirSync,
    database: Database,
    policy: str,
    row: InstanceRow,
    first: InstanceRecord,
    temp: TempFile,
) -> Known:
    """Blocking: drop a same copy, or record a conflict and apply ``policy`` to it."""
    first_path = layout.absolute(first.path)
    record = row.record
    if same_dataset(first_path, first.transfer_syntax_uid, temp, record.transfer_syntax_uid):
        remove_quietly(temp.path)
        return Known(conflict=False, replaced=False)
    conflict = ConflictRecord(
        sop_instance_uid=record.sop_instance_uid,
        sop_class_uid=record.sop_class_uid,
        calling_ae=record.calling_ae,
        received_at=record.received_at,
        size=record.size,
        action=DUPLICATE_POLICIES[policy],
        path=record.path,
    )
    if policy != "replace":
        record_conflict_blocking(database, conflict)
        remove_quietly(temp.path)
        return Known(conflict=True, replaced=False)
    dest = layout.absolute(record.path)
    durable.install(temp.path, dest, dirs)
    record_conflict_blocking(database, conflict, replacement=row)
    if dest != first_path:
        remove_quietly(first_path)
    return Known(conflict=True, replaced=True, dest=dest)
