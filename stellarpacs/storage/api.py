"""What the services need of storage, as typing Protocols, and everything they take from it.

The services (:mod:`stellarpacs.services`) import storage through this module
only. It names four roles:

- :class:`InstanceArchive`: C-STORE writes into it (:meth:`~InstanceArchive.begin`
  gives an :class:`IncomingInstance`), C-FIND reads an :class:`InstanceCatalog`
  of it;
- :class:`InstanceLookup`: C-MOVE, C-GET and storage commitment look stored
  instances up in it and read their files;
- :class:`InstanceCatalog`: streams the matches of one C-FIND query;
- :class:`NServiceStore`: keeps storage commitment requests and MPPS
  instances.

:class:`~stellarpacs.storage.archive.Archive` (files plus the SQLite index,
:mod:`stellarpacs.storage.index`) is one implementation; a PostgreSQL index
is meant to be another, behind the same Protocols. No type of a database
driver appears here: a backend raises :class:`StorageUnavailable` for
whatever its driver raises, and the services map storage's exceptions (from
:mod:`stellarpacs.storage.errors`) to DIMSE statuses.

The identifier parsers and query values of :mod:`stellarpacs.storage.query`
are re-exported here too, since a service needs them to build what it asks.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from pathlib import Path
from typing import Protocol

from stellarpacs.storage.errors import (
    InvalidQuery,
    NotFound,
    QueryProblem,
    SchemaTooNew,
    StorageError,
    StorageUnavailable,
    UnreadableDataSet,
)
from stellarpacs.storage.query.identifier import Query, decode_identifier, parse_query
from stellarpacs.storage.query.matches import Match
from stellarpacs.storage.query.retrieval import RetrieveKeys, retrieve_keys
from stellarpacs.storage.records import (
    CommitmentRequest,
    CommitmentState,
    InstanceRecord,
    MPPSRecord,
    Reference,
    StoredEvent,
    StoreOutcome,
    StoreResult,
)

__all__ = [
    "CommitmentRequest",
    "CommitmentState",
    "IncomingInstance",
    "InstanceArchive",
    "InstanceCatalog",
    "InstanceLookup",
    "InstanceRecord",
    "InvalidQuery",
    "MPPSRecord",
    "Match",
    "NServiceStore",
    "NotFound",
    "Query",
    "QueryProblem",
    "Reference",
    "RetrieveKeys",
    "SchemaTooNew",
    "StorageError",
    "StorageUnavailable",
    "StoreOutcome",
    "StoreResult",
    "StoredEvent",
    "UnreadableDataSet",
    "decode_identifier",
    "parse_query",
    "retrieve_keys",
]


class IncomingInstance(Protocol):
    """One C-STORE data set on its way into storage (PS3.4 B.2.3)."""

    def write(self, data: bytes) -> None:
        """Append one fragment; cheap enough for the event loop, never raises for I/O."""
        ...

    async def commit(self) -> StoreOutcome:
        """Make the instance durable and indexed, then say how it went."""
        ...

    async def discard(self) -> None:
        """The association ended mid-transfer: forget what was written."""
        ...


class InstanceCatalog(Protocol):
    """Streams the matches of C-FIND queries (PS3.4 C.4.1.3.1), one connection of its own."""

    def find(
        self,
        query: Query,
        *,
        retrieve_ae_title: str = "",
        stop: Callable[[], bool] | None = None,
    ) -> AsyncGenerator[Match, None]:
        """Each match's response identifier as it is read; ``stop`` is asked before each.

        Raises :class:`StorageUnavailable` when the index cannot be read.
        """
        ...

    async def close(self) -> None:
        """Release the catalog's connection."""
        ...


class InstanceLookup(Protocol):
    """Stored instances by UID or by retrieve keys, and where their files are."""

    def check_available(self) -> None:
        """Raise :class:`StorageUnavailable` while the index cannot be used (not open yet)."""
        ...

    async def get_instance(self, sop_instance_uid: str) -> InstanceRecord | None:
        """The record of one instance; None when it is not stored."""
        ...

    async def instances_for(self, keys: RetrieveKeys) -> list[InstanceRecord]:
        """The instances a C-MOVE or C-GET names, parents first (PS3.4 C.4.2.2.1)."""
        ...

    def file_path(self, record: InstanceRecord) -> Path:
        """The PS3.10 file of ``record``; :class:`NotFound` when the record names none."""
        ...


class InstanceArchive(InstanceLookup, Protocol):
    """Where C-STORE writes and what C-FIND searches."""

    def begin(
        self,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax_uid: str,
        calling_ae: str,
        check_uids: bool = False,
    ) -> IncomingInstance:
        """Start receiving one instance; failures are answered by its ``commit()``.

        ``check_uids``: refuse a data set whose own SOP Class or Instance UID is
        not the one given (a C-STORE command's, PS3.4 B.2.3); see ``StoreOutcome.mismatch``.
        """
        ...

    def catalog(self) -> InstanceCatalog:
        """A new catalog over this archive's index."""
        ...


class NServiceStore(Protocol):
    """Storage commitment requests (PS3.4 J.3) and MPPS instances (PS3.4 F.7), kept durably.

    Every method raises :class:`StorageUnavailable` when the store cannot be used.
    """

    async def add_commitment(
        self, transaction_uid: str, requester_ae: str, references: Sequence[Reference]
    ) -> CommitmentRequest:
        """Keep a new request (a re-sent identical pending one is not doubled)."""
        ...

    async def pending_commitments(self) -> list[CommitmentRequest]:
        """The requests whose report is not acknowledged yet, oldest first."""
        ...

    async def record_attempt(self, pk: int, error: str) -> None:
        """One failed delivery of a request's report, and why."""
        ...

    async def mark_delivered(self, pk: int, event_type_id: int, failed_count: int) -> None:
        """The requester acknowledged the report of request ``pk``."""
        ...

    async def create_mpps(self, record: MPPSRecord) -> bool:
        """Keep a new MPPS instance; False (nothing written) when its UID is known."""
        ...

    async def get_mpps(self, sop_instance_uid: str) -> MPPSRecord | None:
        """One MPPS instance; None when unknown."""
        ...

    async def update_mpps(
        self, sop_instance_uid: str, change: Callable[[MPPSRecord], MPPSRecord]
    ) -> MPPSRecord | None:
        """Apply ``change`` atomically; what it raises leaves the instance as it was."""
        ...

    async def close(self) -> None:
        """Release the store's connection."""
        ...
