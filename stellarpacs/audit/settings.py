"""The ``[audit]`` table of the configuration: where the audit trail goes.

Kept beside the auditor rather than in :mod:`stellarpacs.config`, which holds
one field of this type; the checks are the configuration's own
(:class:`~stellarpacs.config_checks.KeyProblem` names the key), so a bad
``[audit]`` table ends ``serve`` with one line and exit status 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from stellarpacs.config_checks import KeyProblem

__all__ = ["SYSLOG_PORTS", "AuditSettings", "SyslogTarget", "audit_from_table", "audit_key_rows"]

#: The default port of each transport: RFC 5426 (UDP) and RFC 5425 (TLS).
SYSLOG_PORTS: Final = {"udp": 514, "tls": 6514}


@dataclass(frozen=True, slots=True)
class SyslogTarget:
    """A collector: ``udp`` (RFC 5426) or ``tls`` (RFC 5425), a host and a port."""

    transport: str
    host: str
    port: int


def parse_syslog(key: str, value: str) -> SyslogTarget | None:
    """``udp://host:port`` or ``tls://host:port`` (port optional); "" for none."""
    if not value:
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        raise KeyProblem(key, f"is not a udp:// or tls:// address: {value!r} ({error})") from None
    if parts.scheme not in SYSLOG_PORTS or not parts.hostname or parts.path not in ("", "/"):
        raise KeyProblem(key, f"must be udp://host:port or tls://host:port, got {value!r}")
    return SyslogTarget(parts.scheme, parts.hostname, port or SYSLOG_PORTS[parts.scheme])


def _meta(help: str, kind: str) -> dict[str, str]:
    return {"help": help, "kind": kind}


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """``[audit]``: the JSON lines file and the syslog collector; both off by default."""

    file: str = field(
        default="",
        metadata=_meta(
            "JSON lines file of the audit trail, one line per security-relevant event, "
            "appended and flushed per record; empty for none.",
            "string (path)",
        ),
    )
    syslog: str = field(
        default="",
        metadata=_meta(
            "Syslog collector for the same events as PS3.15 A.5 audit messages: "
            '"udp://host:port" (RFC 5426) or "tls://host:port" (RFC 5425); empty for none.',
            "string",
        ),
    )
    syslog_ca_file: str = field(
        default="",
        metadata=_meta(
            "PEM file of the certificate authorities that a tls:// collector's certificate "
            "is checked against; empty for the system's.",
            "string (path)",
        ),
    )
    syslog_certificate: str = field(
        default="",
        metadata=_meta(
            "PEM certificate (chain) we show a tls:// collector, for the mutual "
            "authentication IHE ATNA asks of RFC 5425; empty for none.",
            "string (path)",
        ),
    )
    syslog_private_key: str = field(
        default="",
        metadata=_meta(
            "PEM private key of `audit.syslog_certificate`; empty when the certificate "
            "file holds it.",
            "string (path)",
        ),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), str):
                raise KeyProblem(f"audit.{f.name}", "must be a string")
        parse_syslog("audit.syslog", self.syslog)

    @property
    def path(self) -> Path | None:
        return Path(self.file).expanduser() if self.file else None

    @property
    def target(self) -> SyslogTarget | None:
        return parse_syslog("audit.syslog", self.syslog)

    @property
    def enabled(self) -> bool:
        return bool(self.file or self.syslog)


_KEYS: Final = tuple(f.name for f in fields(AuditSettings))


def audit_from_table(table: object) -> AuditSettings:
    """The ``[audit]`` table of a TOML file; unknown keys and wrong types name the key."""
    if isinstance(table, AuditSettings):
        return table
    if not isinstance(table, Mapping):
        raise KeyProblem("audit", "must be a table ([audit])")
    values: dict[str, Any] = dict(table)
    for key in values:
        if key not in _KEYS:
            raise KeyProblem(f"audit.{key}", f"is not a key of [audit] ({', '.join(_KEYS)})")
    return AuditSettings(**values)


def audit_key_rows() -> list[tuple[str, str, str, str]]:
    """``(key, TOML type, default, help)`` of each ``audit.*`` key, for the README."""
    return [
        (f"audit.{f.name}", f.metadata["kind"], '""', f.metadata["help"])
        for f in fields(AuditSettings)
    ]
