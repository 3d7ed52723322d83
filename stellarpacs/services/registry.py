"""The services ``python -m stellarpacs`` runs, built from the configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from stellarpacs.config import Config
from stellarpacs.services.base import Service
from stellarpacs.services.retrieve import GetService, MoveService
from stellarpacs.services.storage import StorageService
from stellarpacs.services.verification import VerificationService
from stellarpacs.storage.archive import Archive

__all__ = ["ServiceSet", "default_services"]


@dataclass
class ServiceSet:
    """The services to serve, and what must be closed after them."""

    services: list[Service] = field(default_factory=list)
    archive: Archive | None = None

    async def close(self) -> None:
        """Release what the services hold (files, the index)."""
        if self.archive is not None:
            await self.archive.close()


async def open_archive(config: Config) -> Archive:
    """The archive under ``config.storage``, opened (crash leftovers cleaned)."""
    archive = Archive(config.storage, fsync=config.fsync)
    await archive.open()
    return archive


async def default_services(config: Config, archive: Archive | None = None) -> ServiceSet:
    """Verification, Storage and Retrieve over ``archive`` (opened from the config if None)."""
    if archive is None:
        archive = await open_archive(config)
    services: list[Service] = [
        VerificationService(),
        StorageService(archive, config),
        MoveService(archive, config),
        GetService(archive, config),
    ]
    return ServiceSet(services, archive)
