"""The services ``python -m stellarpacs`` runs, built from the configuration.

The composition root of the SCP side: the one module that picks the storage
backend and hands each service its part of it.  The server only sees the
:class:`~stellarpacs.aio.handler.ServiceHandler` interface.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from stellarpacs.aio.handler import ServiceHandler
from stellarpacs.aio.verification import VerificationService
from stellarpacs.audit import Auditor
from stellarpacs.config import Config
from stellarpacs.services.commitment import CommitmentService
from stellarpacs.services.mpps import MPPSService
from stellarpacs.services.query import FindService
from stellarpacs.services.retrieve import GetService, MoveService
from stellarpacs.services.storage import StorageService
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.index.nservices import SQLiteNServiceStore

__all__ = ["ServiceSet", "default_services"]


@dataclass
class ServiceSet:
    """The services to serve, and what must be closed after them."""

    services: list[ServiceHandler] = field(default_factory=list)
    archive: Archive | None = None
    #: Called on close, last added first, before the archive closes (e.g. index readers).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Release what the services hold (files, the index)."""
        for closer in reversed(self.closers):
            await closer()
        if self.archive is not None:
            await self.archive.close()


async def open_archive(config: Config) -> Archive:
    """The archive under ``config.storage``, opened (crash leftovers cleaned)."""
    archive = Archive(
        config.storage,
        fsync=config.fsync,
        max_inflated_header=config.max_inflated_header,
        duplicate_policy=config.duplicate_policy,
    )
    await archive.open()
    return archive


async def default_services(
    config: Config, archive: Archive | None = None, *, auditor: Auditor | None = None
) -> ServiceSet:
    """Verification, Storage, Retrieve, Find, Storage Commitment and MPPS over ``archive``.

    ``archive`` is opened from the config if None.  The storage commitment
    delivery worker starts here and stops in :meth:`ServiceSet.close`.
    ``auditor`` records stores, queries and retrieves (none by default).
    """
    if archive is None:
        archive = await open_archive(config)
    services: list[ServiceHandler] = [
        VerificationService(),
        StorageService(archive, config, auditor=auditor),
        MoveService(archive, config, auditor=auditor),
        GetService(archive, config, auditor=auditor),
    ]
    find = FindService(archive, config, auditor=auditor)
    services.append(find)
    # Storage Commitment and MPPS keep their rows in the index file (own tables and
    # connection); the delivery worker waits for the archive to open (the CLI opens it late).
    nstore = SQLiteNServiceStore(archive.layout.index_path, durable=archive.fsync)
    commitment = CommitmentService(archive, nstore, config)
    services += [commitment, MPPSService(nstore)]
    commitment.worker.start()
    return ServiceSet(services, archive, [find.close, nstore.close, commitment.worker.close])
