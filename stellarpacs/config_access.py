"""The access-control part of the configuration: ``[users.NAME]``, ``[jwt]``, service names.

Kept apart from :mod:`stellarpacs.config` so that the rule data (which AE may
use which service, who the users are, which tokens are trusted) sits where
the server (``aio``), the services and the CLI can all read it, while the
decisions made from it live in :mod:`stellarpacs.access`.

Secrets: a passcode never reaches this module, only its Argon2id hash
(``hash-passcode`` makes it), and even the hash and the JWT key are kept out
of every ``repr`` so a logged :class:`~stellarpacs.config.Config` shows neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from stellarpacs.config_checks import KeyProblem

__all__ = [
    "ACCESS_EXAMPLES",
    "ACCESS_HELP",
    "JWT_ALGORITHMS",
    "JWT_DEFAULT_ALGORITHMS",
    "SERVICES",
    "JWTSettings",
    "UserEntry",
    "check_services",
    "jwt_from_table",
    "table_field",
    "users_from_tables",
]

#: The service names of ``[remotes.X] services``, in the order the documentation lists them.
SERVICES: Final = ("echo", "store", "find", "move", "get", "commit", "mpps")

JWT_DEFAULT_ALGORITHMS: Final = ("RS256", "ES256")

#: Asymmetric signatures only: an HMAC algorithm would let a token signed with the
#: public key itself pass (the classic JWT algorithm confusion), and "none" signs nothing.
JWT_ALGORITHMS: Final = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip


#: Help text of the top-level keys, kept here with the rest of the access rules.
ACCESS_HELP: Final = MappingProxyType(
    {
        "accept_unknown_calling_ae": "Accept a calling AE title that has no [remotes] table; "
        "when false it is rejected with reason 3, calling AE title not recognized "
        "(PS3.8 9.3.4).",
        "require_user_identity": "Reject an association that brings no verified user "
        "identity (PS3.7 D.3.3.7) with 1/1/1; a [remotes] table's own key overrides this "
        "one for that AE.",
        "users": "[users.<name>] tables, each with the passcode_hash that `hash-passcode` "
        "prints: users who may identify with a user name (type 1) or a user name and "
        "passcode (type 2).",
        "jwt": "The [jwt] table: trust JSON Web Tokens (identity type 5) signed by the PEM "
        "public key in the file public_key, with this issuer and audience; algorithms "
        'default to ["RS256", "ES256"].',
    }
)

#: Commented examples for the default configuration file.
ACCESS_EXAMPLES: Final = MappingProxyType(
    {
        "users": ("# [users.alice]", '# passcode_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."'),
        "jwt": (
            "# [jwt]",
            '# public_key = "/etc/stellarpacs/idp.pem"',
            '# issuer = "https://idp.example"',
            '# audience = "STELLARPACS"',
        ),
    }
)


def table_field(help: str) -> Any:
    """A Config field holding TOML tables: empty by default, kept out of ``repr`` (secrets)."""
    return field(
        default_factory=lambda: MappingProxyType({}),
        hash=False,
        repr=False,
        metadata={"help": help, "check": None, "shown": "{}"},
    )


def check_services(key: str, value: object) -> tuple[str, ...]:
    """``services``: an array of names from :data:`SERVICES`, each at most once."""
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise KeyProblem(key, f"must be an array of service names ({', '.join(SERVICES)})")
    for name in value:
        if name not in SERVICES:
            raise KeyProblem(key, f"has an unknown service {name!r}; known: {', '.join(SERVICES)}")
    if len(set(value)) != len(value):
        raise KeyProblem(key, "lists a service twice")
    return tuple(value)


def _check_argon2_hash(key: str, value: object) -> str:
    from argon2 import Type, extract_parameters
    from argon2.exceptions import InvalidHashError

    if not isinstance(value, str):
        raise KeyProblem(key, "must be a string made by 'python -m stellarpacs hash-passcode'")
    try:
        parameters = extract_parameters(value)
    except (InvalidHashError, ValueError):
        raise KeyProblem(key, "is not an Argon2 hash; make one with 'hash-passcode'") from None
    if parameters.type is not Type.ID:
        raise KeyProblem(key, "must be an Argon2id hash; make one with 'hash-passcode'")
    return value


@dataclass(frozen=True, slots=True)
class UserEntry:
    """One ``[users.NAME]`` table: a user who may identify with a passcode (PS3.7 D.3.3.7)."""

    name: str
    passcode_hash: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.name or not self.name.isprintable():
            raise KeyProblem(f"users.{self.name}", "must be a printable, non-empty user name")
        _check_argon2_hash(f"users.{self.name}.passcode_hash", self.passcode_hash)


def users_from_tables(value: object) -> Mapping[str, UserEntry]:
    """``[users.NAME]`` tables -> :class:`UserEntry` by name; only ``passcode_hash`` is known."""
    if isinstance(value, Mapping) and all(isinstance(v, UserEntry) for v in value.values()):
        return MappingProxyType(dict(value))  # built in code already
    if not isinstance(value, Mapping):
        raise KeyProblem("users", "must be a table of [users.<name>] tables")
    users = {}
    for name, table in value.items():
        if not isinstance(table, Mapping):
            raise KeyProblem(f"users.{name}", "must be a table with passcode_hash")
        unknown = sorted(set(table) - {"passcode_hash"})
        if unknown:
            raise KeyProblem(f"users.{name}.{unknown[0]}", "is not a key of a user")
        if "passcode_hash" not in table:
            raise KeyProblem(f"users.{name}", "is missing 'passcode_hash' (see hash-passcode)")
        users[name] = UserEntry(name, table["passcode_hash"])
    return MappingProxyType(users)


@dataclass(frozen=True, slots=True)
class JWTSettings:
    """The ``[jwt]`` table: which JSON Web Tokens (user identity type 5) are trusted.

    ``public_key_pem`` is the file's content, read once at load time so that a
    missing or unreadable key is a configuration error, not a failed login.
    """

    public_key: Path
    issuer: str
    audience: str
    algorithms: tuple[str, ...] = JWT_DEFAULT_ALGORITHMS
    public_key_pem: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("issuer", "audience"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise KeyProblem(f"jwt.{name}", "must be a non-empty string")
        for alg in self.algorithms:
            if alg not in JWT_ALGORITHMS:
                raise KeyProblem("jwt.algorithms", f"has {alg!r}; allowed: {JWT_ALGORITHMS}")
        if not self.algorithms:
            raise KeyProblem("jwt.algorithms", "must list at least one algorithm")
        if not self.public_key_pem:
            object.__setattr__(self, "public_key_pem", _read_public_key(self.public_key))


def _read_public_key(path: Path) -> bytes:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyProblem("jwt.public_key", f"cannot be read: {exc.strerror or exc}") from None
    try:
        load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise KeyProblem("jwt.public_key", f"{path} holds no PEM public key") from None
    return pem


def jwt_from_table(value: object) -> JWTSettings | Mapping[str, object]:
    """The ``[jwt]`` table -> :class:`JWTSettings`; empty: JWT identities are not supported."""
    if isinstance(value, JWTSettings):
        return value
    if isinstance(value, Mapping) and not value:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise KeyProblem("jwt", "must be a table with public_key, issuer and audience")
    known = ("public_key", "issuer", "audience", "algorithms")
    for name in value:
        if name not in known:
            raise KeyProblem(f"jwt.{name}", f"is not a key of [jwt]; known: {', '.join(known)}")
    for name in known[:3]:
        if name not in value:
            raise KeyProblem("jwt", f"is missing '{name}'")
    if not isinstance(value["public_key"], str) or not value["public_key"]:
        raise KeyProblem("jwt.public_key", "must be a path string")
    algorithms = value.get("algorithms", list(JWT_DEFAULT_ALGORITHMS))
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise KeyProblem("jwt.algorithms", "must be an array of strings")
    return JWTSettings(
        Path(value["public_key"]).expanduser(),
        value["issuer"],
        value["audience"],
        tuple(algorithms),
    )
