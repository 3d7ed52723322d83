"""The ``[tls]`` table and the TLS keys of ``[remotes.X]``: checked like every other key.

Kept apart from :mod:`stellarpacs.config` so that the whole of TLS configuration
is one table in one place.  Checking includes the files: each must exist and be
readable, the private key must match the certificate and the CA file must load
(a :class:`~stellarpacs.config_checks.KeyProblem` naming ``tls.<key>``
otherwise), so a server never starts with a TLS listener it cannot serve.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from stellarpacs import tls
from stellarpacs.config_checks import KeyProblem, in_range
from stellarpacs.errors import ConfigError

__all__ = [
    "REMOTE_TLS_KEYS",
    "TLS_DEFAULT_SHOWN",
    "TLSConfig",
    "as_tls",
    "check_remote_tls",
    "optional_path",
    "tls_from_table",
    "tls_rows",
    "tls_toml_lines",
]

#: IANA's port for DICOM over TLS ("dicom-tls").
DEFAULT_TLS_PORT: Final = 2762
#: The optional keys of ``[remotes.X]`` this module checks.
REMOTE_TLS_KEYS: Final = ("tls", "tls_ca_file", "tls_certificate", "tls_private_key")


def optional_path(key: str, value: object) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str | Path) or not str(value):
        raise KeyProblem(key, f"must be a non-empty path string, got {value!r:.40}")
    return Path(value).expanduser()


def _bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise KeyProblem(key, f"must be a boolean (true or false), got {value!r:.40}")
    return value


def _int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KeyProblem(key, f"must be an integer, got {value!r:.40}")
    return in_range(0, 65535)(key, value)


def _profile(key: str, value: object) -> str:
    if value not in tls.PROFILES:
        raise KeyProblem(key, f"must be one of {', '.join(tls.PROFILES)}, got {value!r:.40}")
    assert isinstance(value, str)
    return value


_KINDS: Final = {"int": _int, "bool": _bool, "Path | None": optional_path, "str": _profile}
_TOML: Final = {
    "int": "integer",
    "bool": "boolean",
    "Path | None": "string (path)",
    "str": "string",
}


def _key(default: Any, help: str) -> Any:
    """A ``[tls]`` key: its default and one line of help (the README table's)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True, eq=False)
class TLSConfig:
    """``[tls]``: the TLS listener and the certificate we show (PS3.15 B.12, B.13)."""

    port: int = _key(
        DEFAULT_TLS_PORT,
        "TCP port of the TLS listener, beside the plain `port` (2762 is IANA's dicom-tls); "
        "0 picks a free port. TLS is on when `tls.certificate` is set.",
    )
    only: bool = _key(
        False,
        "Serve TLS only: no plain listener on `port`. A key of its own because `port = 0` "
        "already means a free port.",
    )
    certificate: Path | None = _key(  # noqa: RUF009 (returns a Field)
        None,
        "PEM certificate (chain) of our AE: shown by the TLS listener, and the client "
        "certificate of C-MOVE and commitment connections to `tls = true` remotes.",
    )
    private_key: Path | None = _key(  # noqa: RUF009 (returns a Field)
        None, "Its PEM private key, unencrypted; must match `tls.certificate`."
    )
    ca_file: Path | None = _key(  # noqa: RUF009 (returns a Field)
        None,
        "PEM CA certificates that vouch for peers: client certificates when `tls.verify_peer`, "
        "remotes' server certificates (else the system's trust store).",
    )
    verify_peer: bool = _key(
        False,
        "Require a client certificate signed by `tls.ca_file`; a connection without one "
        "fails its handshake.",
    )
    profile: str = _key(
        tls.DEFAULT_PROFILE,
        "Secure transport connection profile: bcp195-nd (non-downgrading BCP 195, PS3.15 "
        "B.13: TLS 1.2+ with RFC 9325's ECDHE AES-GCM suites only), bcp195 (also the older "
        "AES-CBC suites) or basic (B.12: OpenSSL's default suites); all refuse TLS < 1.2.",
    )

    def __eq__(self, other: object) -> bool:
        """Equal to another TLSConfig with the same values, or to a [tls] table that makes one."""
        if isinstance(other, Mapping):
            try:
                other = TLSConfig(**other)
            except (TypeError, ConfigError):
                return False
        if not isinstance(other, TLSConfig):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(self))

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f.name) for f in fields(self)))

    def __post_init__(self) -> None:
        for f in fields(self):
            key = f"tls.{f.name}"
            object.__setattr__(self, f.name, _KINDS[str(f.type)](key, getattr(self, f.name)))
        self._check_files()

    @property
    def enabled(self) -> bool:
        return self.certificate is not None

    def _check_files(self) -> None:
        if self.certificate is None:
            for name in ("private_key", "only", "verify_peer"):
                if getattr(self, name):
                    raise KeyProblem(f"tls.{name}", "needs 'tls.certificate'")
            return
        if self.private_key is None:
            raise KeyProblem("tls.private_key", "must be set with 'tls.certificate'")
        if self.verify_peer and self.ca_file is None:
            raise KeyProblem("tls.ca_file", "must be set when 'tls.verify_peer' is true")
        try:
            self.server_context()
        except tls.TLSFileError as error:
            raise KeyProblem(f"tls.{error.which}", str(error)) from None

    def server_context(self) -> ssl.SSLContext:
        """The listener's ``ssl.SSLContext`` (TLS must be enabled)."""
        assert self.certificate is not None and self.private_key is not None
        return tls.server_context(
            self.profile, self.certificate, self.private_key, self.ca_file, self.verify_peer
        )


def as_tls(key: str, value: object) -> TLSConfig:
    if not isinstance(value, TLSConfig):
        raise KeyProblem(key, f"must be a [tls] table, got {value!r:.40}")
    return value


def tls_from_table(value: object, where: str) -> object:
    """``[tls]`` from TOML: unknown keys refused; a wrong type is left to Config to name."""
    if not isinstance(value, Mapping):
        return value
    known = tuple(f.name for f in fields(TLSConfig))
    for name in value:
        if name not in known:
            raise ConfigError(f"{where}unknown key 'tls.{name}'; the keys are {', '.join(known)}")
    return TLSConfig(**value)


def check_remote_tls(key: str, values: Mapping[str, object]) -> dict[str, object]:
    """Normalise a remote's TLS keys; the files are loaded, as for ``[tls]``."""
    out: dict[str, object] = {"tls": _bool(f"{key}.tls", values.get("tls", False))}
    for name in REMOTE_TLS_KEYS[1:]:
        out[name] = optional_path(f"{key}.{name}", values.get(name))
    if not out["tls"]:
        return out
    if out["tls_private_key"] is not None and out["tls_certificate"] is None:
        raise KeyProblem(f"{key}.tls_private_key", f"needs '{key}.tls_certificate'")
    try:
        tls.client_context(
            tls.DEFAULT_PROFILE,
            out["tls_ca_file"],  # type: ignore[arg-type]
            out["tls_certificate"],  # type: ignore[arg-type]
            out["tls_private_key"],  # type: ignore[arg-type]
        )
    except tls.TLSFileError as error:
        which = "tls_ca_file" if error.which == "ca_file" else f"tls_{error.which}"
        raise KeyProblem(f"{key}.{which}", str(error)) from None
    return out


def tls_rows() -> list[tuple[str, str, str, str]]:
    """``(key, TOML type, default, help)`` of every ``tls.*`` key (for the README)."""
    rows = []
    for f in fields(TLSConfig):
        default = f.default
        shown = (
            "none"
            if default is None
            else ("true" if default else "false")
            if isinstance(default, bool)
            else f'"{default}"'
            if isinstance(default, str)
            else repr(default)
        )
        rows.append((f"tls.{f.name}", _TOML[str(f.type)], shown, f.metadata["help"]))
    return rows


#: The ``tls`` row's default: an inline table of the keys that have one (TOML has no null).
TLS_DEFAULT_SHOWN: Final = (
    "{ " + ", ".join(f"{k[4:]} = {v}" for k, _, v, _ in tls_rows() if v != "none") + " }"
)


def tls_toml_lines() -> list[str]:
    """The commented ``[tls]`` example of the default configuration file."""
    examples = {"certificate": '"server.pem"', "private_key": '"server.key"', "ca_file": '"ca.pem"'}
    return [
        "# TLS (PS3.15 B.12, B.13): set certificate and private_key to listen on tls.port.",
        "# [tls]",
        *(f"# {key[4:]} = {examples.get(key[4:], shown)}" for key, _, shown, _ in tls_rows()),
    ]
