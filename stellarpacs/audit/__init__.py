"""The audit trail (issue 12, item 4): one record per security-relevant event.

The server (association events), the services (stores, queries, retrieves)
and the command line (configuration, start, stop, ``storage delete``) all hand
typed events (:mod:`stellarpacs.audit.events`) to one :class:`Auditor`, which
stamps each with the time and passes it, in order, to its sinks: the JSON
lines file (:mod:`~stellarpacs.audit.jsonl`) and the syslog collector
(:mod:`~stellarpacs.audit.syslog`, PS3.15 A.5).  ``Auditor()`` has no sink and
does nothing: the default wherever none is given.  This package imports
neither the network nor storage, so every layer may be handed an auditor.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from stellarpacs.audit.events import AuditEntry, AuditEvent
from stellarpacs.audit.jsonl import JsonLinesSink
from stellarpacs.audit.settings import AuditSettings
from stellarpacs.audit.syslog import SyslogSink, tls_context
from stellarpacs.config_checks import KeyProblem

__all__ = ["Auditor", "Sink", "open_auditor", "utc_now"]

log = logging.getLogger("stellarpacs.audit")


class Sink(Protocol):
    """Where entries go; ``emit`` must not block and must not raise."""

    def emit(self, entry: AuditEntry) -> None: ...

    async def close(self) -> None: ...


def utc_now() -> str:
    """UTC in ISO 8601 with milliseconds and ``Z`` (also an RFC 5424 TIMESTAMP)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Auditor:
    """Records events to its sinks, in the order :meth:`record` is called."""

    def __init__(self, sinks: Sequence[Sink] = ()) -> None:
        self.sinks = list(sinks)

    @property
    def enabled(self) -> bool:
        """False when nothing is recorded: callers may skip building an event."""
        return bool(self.sinks)

    def record(self, event: AuditEvent) -> None:
        """Stamp ``event`` and hand it to every sink; a failing sink is logged, never raised."""
        if not self.sinks:
            return
        entry = AuditEntry(utc_now(), event)
        for sink in self.sinks:
            try:
                sink.emit(entry)
            except Exception:  # a bug in a sink must not fail the service that audits
                log.exception("audit sink %s failed", type(sink).__name__)

    async def close(self) -> None:
        for sink in self.sinks:
            await sink.close()


def open_auditor(settings: AuditSettings, source_id: str) -> Auditor:
    """The auditor that ``settings`` describe; an unwritable file is a ConfigError (exit 2)."""
    sinks: list[Sink] = []
    path = settings.path
    if path is not None:
        try:
            sinks.append(JsonLinesSink(path))
        except OSError as error:
            raise KeyProblem("audit.file", f"cannot be opened: {path}: {error.strerror}") from None
    target = settings.target
    if target is not None:
        context = _context(settings) if target.transport == "tls" else None
        sinks.append(SyslogSink(target, source_id, context=context))
    return Auditor(sinks)


def _context(settings: AuditSettings) -> ssl.SSLContext:
    """The TLS client context of the collector; a file that cannot be used names its key."""
    files = (settings.syslog_ca_file, settings.syslog_certificate, settings.syslog_private_key)
    for name, path in zip(("ca_file", "certificate", "private_key"), files, strict=True):
        if path and not os.access(path, os.R_OK):
            raise KeyProblem(f"audit.syslog_{name}", f"is not a readable file: {path}")
    try:
        return tls_context(*files)
    except OSError as error:  # ssl.SSLError is one: not PEM, a key that does not match
        raise KeyProblem("audit.syslog", f"TLS files cannot be used: {error}") from None
