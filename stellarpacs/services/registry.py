"""The services ``python -m stellarpacs`` runs, built from the configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from stellarpacs.config import Config
from stellarpacs.services.base import Service
from stellarpacs.services.verification import VerificationService

__all__ = ["ServiceSet", "default_services"]


@dataclass
class ServiceSet:
    """The services to serve, and what must be closed after them."""

    services: list[Service] = field(default_factory=list)

    async def close(self) -> None:
        """Release what the services hold (files, the index)."""


async def default_services(config: Config) -> ServiceSet:
    """Verification, and every service the configuration enables."""
    return ServiceSet([VerificationService()])
