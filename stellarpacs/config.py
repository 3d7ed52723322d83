"""Explicit configuration: one frozen :class:`Config`, read from TOML, then CLI overrides.

Theory of operation: each configuration key is one field of :class:`Config`,
and the field's metadata carries its help text and its value check.  The
checks run in ``__post_init__``, whatever built the object (a TOML file, the
CLI, code that embeds the server), so an invalid ``Config`` cannot exist and
there is no module-level state to tweak.  :func:`load_config` only reads the
file, refuses unknown keys, turns ``[remotes.<AE title>]`` tables into
:class:`RemoteAE` and lets overrides win.  Every problem is one
:class:`~stellarpacs.errors.ConfigError` whose message names the key.

File layout (all keys optional, top level, see :data:`DEFAULT_CONFIG_TOML`)::

    ae_title = "STELLARPACS"
    port = 11112
    [remotes.STORESCP]
    host = "192.0.2.10"
    port = 104

Relative paths (``storage``) are taken relative to the working directory of
the process, as for the CLI flags; use an absolute path in a service unit.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

from stellarpacs import uids
from stellarpacs.audit.settings import AuditSettings, audit_from_table
from stellarpacs.config_access import (
    ACCESS_HELP,
    SERVICES,
    JWTSettings,
    UserEntry,
    check_services,
    jwt_from_table,
    table_field,
    users_from_tables,
)
from stellarpacs.config_checks import (
    LOG_LEVELS,
    MIN_PDU_LENGTH,
    KeyProblem,
    check_ae_title,
    check_host,
    check_log_level,
    check_pdu_length,
    check_sop_classes,
    check_transfer_syntaxes,
    in_range,
    non_negative_seconds,
    one_of,
    positive_seconds,
)
from stellarpacs.config_tls import (
    REMOTE_TLS_KEYS,
    TLS_DEFAULT_SHOWN,
    TLSConfig,
    as_tls,
    check_remote_tls,
    tls_from_table,
)
from stellarpacs.errors import ConfigError

__all__ = [
    "LOG_LEVELS",
    "MIN_PDU_LENGTH",
    "Config",
    "RemoteAE",
    "TLSConfig",
    "load_config",
]

_T = TypeVar("_T")


# --- Type checks, dispatched on the field's annotation ------------------------

_KINDS: Final[Mapping[type, str]] = MappingProxyType(
    {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array"}
)


def _given(value: object) -> str:
    kind = _KINDS.get(
        type(value), "a table" if isinstance(value, Mapping) else type(value).__name__
    )
    shown = str(value).lower() if isinstance(value, bool) else repr(value)
    return f"{kind} ({shown[:40]}{'...' if len(shown) > 40 else ''})"


def _wrong_type(key: str, expected: str, value: object) -> ConfigError:
    return KeyProblem(key, f"must be {expected}, got {_given(value)}")


def _as_str(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _wrong_type(key, "a string", value)
    return value


def _as_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(key, "an integer", value)
    return value


def _as_float(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type(key, "a number of seconds", value)
    if not math.isfinite(value):
        raise KeyProblem(key, f"must be a finite number, got {value}")
    return float(value)


def _as_bool(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type(key, "a boolean (true or false)", value)
    return value


def _as_path(key: str, value: object) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise _wrong_type(key, "a non-empty path string", value)
    return Path(value).expanduser()


def _as_uids(key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise _wrong_type(key, "an array of UID strings", value)
    return tuple(value)


def _as_remotes(key: str, value: object) -> Mapping[str, RemoteAE]:
    if not isinstance(value, Mapping):
        raise _wrong_type(key, "a table of [remotes.<AE title>] tables", value)
    for title, remote in value.items():
        if not isinstance(remote, RemoteAE):
            raise _wrong_type(f"{key}.{title}", "a RemoteAE", remote)
        if remote.ae_title != title:
            raise KeyProblem(f"{key}.{title}", f"holds AE title '{remote.ae_title}'")
    return MappingProxyType(dict(value))


_COERCE: Final[Mapping[str, Callable[[str, object], object]]] = MappingProxyType(
    {
        "str": _as_str,
        "int": _as_int,
        "float": _as_float,
        "bool": _as_bool,
        "Path": _as_path,
        "tuple[str, ...]": _as_uids,
        "Mapping[str, RemoteAE]": _as_remotes,
        "AuditSettings": lambda key, value: audit_from_table(value),
        "Mapping[str, UserEntry]": lambda key, value: users_from_tables(value),
        "JWTSettings | Mapping[str, object]": lambda key, value: jwt_from_table(value),
        "TLSConfig": as_tls,
    }
)

# --- The dataclasses -------------------------------------------------------------


def _key(
    default: _T,
    help: str,
    check: Callable[[str, _T], _T] | None = None,
    *,
    shown: str = "",
    repr: bool = True,
) -> _T:
    """A configuration key: its default, one line of help, its value check.

    ``shown`` replaces the default in the documentation when it is too long to print.
    """
    meta = {"help": help, "check": check, "shown": shown}
    return field(default=default, repr=repr, metadata=meta)


def _normalise(obj: object, name: str, kind: str, key: str, check: Any) -> None:
    value = _COERCE[kind](key, getattr(obj, name))
    if check is not None:
        value = check(key, value)
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True)
class RemoteAE:
    """A peer we know: a C-MOVE destination, a commitment requester, a calling AE's rules.

    ``require_user_identity`` None: the top-level key decides (see stellarpacs.access).
    """

    ae_title: str
    host: str
    port: int
    services: tuple[str, ...] = SERVICES
    check_host: bool = False
    require_user_identity: bool | None = None
    #: TLS (PS3.15 B.13) to this remote; the files default to [tls]'s (config_tls).
    tls: bool = False
    tls_ca_file: Path | None = None
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None

    def __post_init__(self) -> None:
        key = f"remotes.{self.ae_title}"
        _normalise(self, "ae_title", "str", key, check_ae_title)
        _normalise(self, "host", "str", f"{key}.host", check_host)
        _normalise(self, "port", "int", f"{key}.port", in_range(1, 65535))
        object.__setattr__(self, "services", check_services(f"{key}.services", self.services))
        _normalise(self, "check_host", "bool", f"{key}.check_host", None)
        if self.require_user_identity is not None:
            _normalise(self, "require_user_identity", "bool", f"{key}.require_user_identity", None)
        checked = check_remote_tls(
            f"remotes.{self.ae_title}", {n: getattr(self, n) for n in REMOTE_TLS_KEYS}
        )
        for name, value in checked.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server and the client tools are told; checked on construction."""

    ae_title: str = _key(
        "STELLARPACS",
        "Our AE title: 1 to 16 ASCII characters, no backslash or control character "
        "(PS3.5 6.2); surrounding spaces are dropped.",
        check_ae_title,
    )
    host: str = _key(
        "0.0.0.0",
        "Address `serve` listens on. The default listens on every IPv4 interface, since "
        "modalities must reach a PACS; 127.0.0.1 keeps it local, :: listens on IPv6.",
        check_host,
    )
    port: int = _key(
        11112,
        "TCP port `serve` listens on (11112 is the IANA-registered DICOM port); "
        "0 picks a free port, which tests use.",
        in_range(0, 65535),
    )
    storage: Path = _key(  # noqa: RUF009 (_key returns a Field; a Path is immutable)
        Path("stellarpacs-data"),
        "Directory of the file store and its index, relative to the working directory "
        "unless absolute.",
    )
    max_associations: int = _key(
        10,
        "Simultaneous associations; one more is rejected as transient, local limit "
        "exceeded (PS3.8 9.3.4).",
        in_range(1, 1_000_000),
    )
    max_pdu_length: int = _key(
        16384,
        f"Largest PDU we accept, announced in the Maximum Length sub-item (PS3.8 D.1): "
        f"0 for no limit, else at least {MIN_PDU_LENGTH}.",
        check_pdu_length,
    )
    log_level: str = _key(
        "INFO", f"Logging threshold: one of {', '.join(LOG_LEVELS)}.", check_log_level
    )
    accept_any_called_ae: bool = _key(
        False,
        "Accept associations whatever their Called AE Title; when false, one that is not "
        "ours is rejected with reason 7, called AE title not recognized (PS3.8 9.3.4).",
    )
    artim_timeout: float = _key(
        30.0,
        "ARTIM timer (PS3.8 9.1.5): seconds a new connection may take to send its "
        "A-ASSOCIATE-RQ, and a released or aborted one to close.",
        positive_seconds,
    )
    idle_timeout: float = _key(
        600.0,
        "Seconds an established association may go without a PDU before we abort it; "
        "0 means no limit.",
        non_negative_seconds,
    )
    # Hostile input (PS3.8 9.1.5, PS3.4 B.2.3): see the conformance statement.
    pdu_timeout: float = _key(
        60.0,
        "Seconds from the first byte of a PDU to its last; a slower one is aborted "
        "(A-ABORT source 2 reason 0), so a peer cannot trickle a PDU; 0 means no limit.",
        non_negative_seconds,
    )
    max_pending_connections: int = _key(
        64,
        "Connections accepted and not yet associated; one more closes the oldest of them, "
        "so silent sockets cannot keep a real peer out.",
        in_range(1, 1_000_000),
    )
    duplicate_policy: str = _key(
        "keep",
        "A known SOP Instance UID arriving with other content: keep (the first, warning "
        "B006), reject (failure 0111) or replace (the stored instance); identical content "
        "is Success. Each is logged and listed by `storage verify`.",
        one_of("keep", "reject", "replace"),
    )
    dimse_timeout: float = _key(
        60.0,
        "Seconds the client side waits for a DIMSE response; 0 means no limit.",
        non_negative_seconds,
    )
    connect_timeout: float = _key(
        10.0,
        "Seconds to wait for a TCP connection to a remote AE; 0 means no limit.",
        non_negative_seconds,
    )
    transfer_syntax_preference: tuple[str, ...] = _key(
        uids.STORAGE_TRANSFER_SYNTAXES,
        "Transfer syntaxes we accept, most preferred first: for each presentation context "
        "(PS3.8 7.1.1.13) we accept the first of this list that the peer proposes. The "
        "default puts lossless compression first (a peer that offers it keeps it), then "
        "uncompressed, then lossy encodings, so no peer is pushed into a lossy one.",
        check_transfer_syntaxes,
        shown=f"uids.STORAGE_TRANSFER_SYNTAXES ({len(uids.STORAGE_TRANSFER_SYNTAXES)} UIDs)",
    )
    storage_sop_classes: tuple[str, ...] = _key(
        uids.STORAGE_SOP_CLASSES,
        "SOP classes accepted for C-STORE. Any valid UID may be listed, such as a private "
        "class or one newer than our tables.",
        check_sop_classes,
        shown=f"uids.STORAGE_SOP_CLASSES ({len(uids.STORAGE_SOP_CLASSES)} UIDs)",
        repr=False,  # 195 UIDs would drown a logged Config
    )
    fsync: bool = _key(
        True,
        "Flush each received file and its directory to disk before answering C-STORE with "
        "success; turning it off may lose acknowledged instances in a crash.",
    )
    case_insensitive_person_names: bool = _key(
        True,
        "Match PN attributes such as Patient's Name case-insensitively in C-FIND, which "
        "PS3.4 C.2.2.2.1 allows.",
    )
    # -- limits on what a peer may make us hold (hostile input) --
    max_inflated_header: int = _key(
        64 * 1024 * 1024,
        "Bytes of a Deflated Explicit VR Little Endian data set (PS3.5 A.5) we inflate to "
        "read its header for the index, up to its Pixel Data; a C-STORE needing more is "
        "refused with A702 (out of resources) and not stored.",
        in_range(64 * 1024, 1 << 40),
    )
    max_identifier_size: int = _key(
        1024 * 1024,
        "Largest C-FIND, C-MOVE or C-GET identifier; a larger one is drained unread and "
        "refused with A700 (C-FIND) or A701 (C-MOVE, C-GET).",
        in_range(1024, 1 << 30),
    )
    max_nservice_dataset_size: int = _key(
        2 * 1024 * 1024,
        "Largest data set of an N-ACTION, N-CREATE, N-SET or N-EVENT-REPORT (about 20,000 "
        "storage commitment references); a larger one is drained unread and refused with "
        "0213, resource limitation.",
        in_range(1024, 1 << 30),
    )
    # --- access control and user identity (PS3.7 D.3.3.7); decisions in stellarpacs.access
    accept_unknown_calling_ae: bool = _key(True, ACCESS_HELP["accept_unknown_calling_ae"])
    require_user_identity: bool = _key(False, ACCESS_HELP["require_user_identity"])
    users: Mapping[str, UserEntry] = table_field(ACCESS_HELP["users"])
    #: A JWTSettings, or an empty mapping: no JWT user identity.
    jwt: JWTSettings | Mapping[str, object] = table_field(ACCESS_HELP["jwt"])  # noqa: RUF009
    audit: AuditSettings = field(
        default_factory=AuditSettings,
        metadata={"help": "The audit trail: [audit] table.", "check": None, "shown": "none"},
    )
    tls: TLSConfig = field(
        default_factory=TLSConfig,
        metadata={
            "help": "TLS (PS3.15 B.12, B.13): the [tls] table, its tls.* keys below.",
            "check": None,
            "shown": TLS_DEFAULT_SHOWN,
        },
    )
    remotes: Mapping[str, RemoteAE] = field(
        default_factory=lambda: MappingProxyType({}),
        hash=False,
        metadata={
            "help": "Peers we connect to (C-MOVE destinations, storage commitment replies), "
            "one [remotes.<AE title>] table each with host and port; optional: the services "
            "it may use (of echo, store, find, move, get, commit, mpps; default all), "
            "check_host (its associations must come from host), require_user_identity, "
            "and `tls = true` to connect with TLS (PS3.15 B.13).",
            "check": None,
            "shown": "none",
        },
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            _normalise(self, f.name, str(f.type), f.name, f.metadata["check"])


_KEYS: Final = tuple(f.name for f in fields(Config))
_REMOTE_KEYS: Final = (
    "host",
    "port",
    "services",
    "check_host",
    "require_user_identity",
    *REMOTE_TLS_KEYS,
)
_REMOTE_REQUIRED: Final = ("host", "port")
_NO_OVERRIDES: Final[Mapping[str, object]] = MappingProxyType({})


# --- Loading ------------------------------------------------------------------------


def _unknown(key: str, known: tuple[str, ...], where: str) -> ConfigError:
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], known, n=3)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"{where}unknown key '{key}'{hint}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _remote(title: str, table: object, where: str) -> RemoteAE:
    key = f"remotes.{title}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}{_wrong_type(key, 'a table with host and port', table)}")
    for name in table:
        if name not in _REMOTE_KEYS:
            raise _unknown(f"{key}.{name}", _REMOTE_KEYS, where)
    for name in _REMOTE_REQUIRED:
        if name not in table:
            raise ConfigError(f"{where}'{key}' is missing '{name}'")
    return RemoteAE(title, **table)


def _remotes(value: object, where: str) -> object:
    if not isinstance(value, dict):
        return value  # Config reports the wrong type
    remotes: dict[str, RemoteAE] = {}
    for title, table in value.items():
        remote = _remote(title, table, where)  # the title comes back without its padding
        if remote.ae_title in remotes:
            raise ConfigError(f"{where}'remotes.{title}' repeats AE title '{remote.ae_title}'")
        remotes[remote.ae_title] = remote
    return remotes


def _from_file(data: Mapping[str, Any], where: str) -> dict[str, object]:
    for key in data:
        if key not in _KEYS:
            raise _unknown(key, _KEYS, where)
    values = dict(data)
    if "remotes" in values:
        values["remotes"] = _remotes(values["remotes"], where)
    if "tls" in values:
        values["tls"] = tls_from_table(values["tls"], where)
    return values


def load_config(path: Path | None, overrides: Mapping[str, object] = _NO_OVERRIDES) -> Config:
    """Read ``path`` (TOML; None for defaults only), apply ``overrides``, check everything.

    Overrides come from CLI flags and beat the file; a None override is no flag
    and is ignored.  Any problem raises one :class:`ConfigError` naming the key.
    """
    where = f"{path}: " if path is not None else ""
    try:
        values = _from_file(_read_toml(path), where) if path is not None else {}
    except KeyProblem as exc:  # raised while building a remote
        raise ConfigError(f"{where}{exc}") from None
    given = {key: value for key, value in overrides.items() if value is not None}
    for key in given:
        if key not in _KEYS:
            raise _unknown(key, _KEYS, "override: ")
    try:
        return Config(**(values | given))  # type: ignore[arg-type]
    except KeyProblem as exc:
        if exc.key.split(".", 1)[0] in given or path is None:
            raise ConfigError(str(exc)) from None
        raise ConfigError(f"{where}{exc}") from None
