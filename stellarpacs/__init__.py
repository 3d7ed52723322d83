"""StellarPACS: a DICOM server and protocol toolkit on asyncio.

The public facade: the names an application needs to embed a server, talk to
a peer or handle what was stored, re-exported from where they live.  Nothing
is defined here.  The names are loaded on first use (PEP 562), so that the
sans-I/O cores, ``stellarpacs.ul`` (PS3.8) and ``stellarpacs.dimse`` (PS3.7),
import without asyncio, pydicom or aiosqlite.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stellarpacs.aio.client import ClientAssociation, connect
    from stellarpacs.aio.handler import ServiceHandler
    from stellarpacs.aio.scu.contexts import ProposedContext
    from stellarpacs.aio.server import Server
    from stellarpacs.config import Config, RemoteAE, load_config
    from stellarpacs.errors import (
        AssociationAborted,
        AssociationRejected,
        ConfigError,
        DIMSEError,
        StellarPACSError,
    )
    from stellarpacs.services.registry import default_services
    from stellarpacs.storage.archive import Archive
    from stellarpacs.storage.records import StoredEvent

__all__ = [
    "Archive",
    "AssociationAborted",
    "AssociationRejected",
    "ClientAssociation",
    "Config",
    "ConfigError",
    "DIMSEError",
    "ProposedContext",
    "RemoteAE",
    "Server",
    "ServiceHandler",
    "StellarPACSError",
    "StoredEvent",
    "__version__",
    "connect",
    "default_services",
    "load_config",
]

__version__ = "1.3.0"

_HOMES = {
    "ClientAssociation": "stellarpacs.aio.client",
    "ProposedContext": "stellarpacs.aio.scu.contexts",
    "connect": "stellarpacs.aio.client",
    "Server": "stellarpacs.aio.server",
    "ServiceHandler": "stellarpacs.aio.handler",
    "Config": "stellarpacs.config",
    "RemoteAE": "stellarpacs.config",
    "load_config": "stellarpacs.config",
    "AssociationAborted": "stellarpacs.errors",
    "AssociationRejected": "stellarpacs.errors",
    "ConfigError": "stellarpacs.errors",
    "DIMSEError": "stellarpacs.errors",
    "StellarPACSError": "stellarpacs.errors",
    "default_services": "stellarpacs.services.registry",
    "Archive": "stellarpacs.storage.archive",
    "StoredEvent": "stellarpacs.storage.records",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stellarpacs' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
