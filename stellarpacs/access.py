"""Who may connect and do what: the access decisions, computed from the configuration.

Sans-I/O like the negotiation it feeds: :func:`decide` takes the request, the
peer's address, the addresses of the calling AE's configured host (resolved
by the caller) and the verdict on the user identity, and returns the
:class:`~stellarpacs.ul.negotiation.Admission` that :func:`negotiate` applies.
Verifying an identity (:func:`verify_identity`) is CPU work (Argon2id, a JWT
signature) with no I/O, which the server runs in a worker thread.

The rules, in order (the first that applies):

1. A calling AE title with no ``[remotes]`` table when
   ``accept_unknown_calling_ae`` is false, or one with ``check_host`` whose
   association comes from another address: A-ASSOCIATE-RJ 1/1/3, calling AE
   title not recognized (PS3.8 Table 9-21).
2. A user identity that was presented and failed (unknown user, wrong
   passcode, a token that does not verify): RJ 1/1/1.  PS3.7 D.3.3.7 names
   no reason for it, so "no reason given", from the service user (the
   decision is the application's) and permanent (the same credentials get
   the same answer); 1/1/3 would point at the AE configuration instead.
3. No verified identity where one is required (``require_user_identity``,
   the remote's value first): RJ 1/1/1.  An identity of a type we do not
   verify (Kerberos, SAML, or JWT without ``[jwt]``) counts as none: PS3.7
   D.3.3.7 lets an acceptor ignore what it does not support, which we do
   unless an identity is required.

A JWT's ``sub`` names the user; it need not be a ``[users]`` entry, since the
token's issuer, not this configuration, vouches for it (a ``[users]`` entry
needs a passcode hash, which a token user does not have).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from stellarpacs import uids
from stellarpacs.config import Config, RemoteAE
from stellarpacs.config_access import JWTSettings
from stellarpacs.dimse.commands import CEchoRQ, CFindRQ, CGetRQ, CMoveRQ, CStoreRQ, Message
from stellarpacs.logtext import printable
from stellarpacs.ul.negotiation import Admission, RejectReason
from stellarpacs.ul.pdus import AAssociateRQ, UserIdentityAC, UserIdentityRQ, UserIdentityType

if TYPE_CHECKING:
    from argon2 import PasswordHasher

__all__ = [
    "Decision",
    "IdentityVerdict",
    "User",
    "decide",
    "hash_passcode",
    "remote_of",
    "request_service",
    "same_host",
    "service_names",
    "verify_identity",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Argon2id at the OWASP password storage minimum (m=19 MiB, t=2, p=1): about 20 ms and
#: 19 MiB per check, so a burst of logins cannot take the memory RFC 9106's 2 GiB would.
_ARGON2_TIME_COST: Final = 2
_ARGON2_MEMORY_KIB: Final = 19456


def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher, Type

    return PasswordHasher(
        time_cost=_ARGON2_TIME_COST, memory_cost=_ARGON2_MEMORY_KIB, parallelism=1, type=Type.ID
    )


_BY_MESSAGE: Final[Mapping[type[Message], str]] = MappingProxyType(
    {CEchoRQ: "echo", CStoreRQ: "store", CFindRQ: "find", CMoveRQ: "move", CGetRQ: "get"}
)


@dataclass(frozen=True, slots=True)
class User:
    """The user an association negotiated (PS3.7 D.3.3.7): name and identity type."""

    name: str
    identity_type: UserIdentityType


@dataclass(frozen=True, slots=True)
class IdentityVerdict:
    """What :func:`verify_identity` found: a user, a failure (with why), or nothing usable."""

    user: User | None = None
    failure: str | None = None
    positive_response: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The admission for negotiation, the user, and why (for the log and the audit trail)."""

    admission: Admission
    user: User | None = None
    reason: str = ""


def hash_passcode(passcode: bytes) -> str:
    """An Argon2id hash of ``passcode`` for a ``[users.NAME] passcode_hash`` key (salted)."""
    return _hasher().hash(passcode)


_DUMMY_HASH: list[str] = []


def _passcode_matches(stored: str | None, passcode: bytes) -> bool:
    """Constant work whether the user exists or not, so timing tells no user names."""
    from argon2.exceptions import InvalidHashError, VerificationError

    unknown = stored is None
    if stored is None:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(hash_passcode(b"not a passcode of anyone"))
        stored = _DUMMY_HASH[0]
    try:
        _hasher().verify(stored, passcode)
    except (VerificationError, InvalidHashError):
        return False
    return not unknown


def _verify_jwt(config: Config, token: bytes) -> tuple[str | None, str]:
    """``(sub, "")`` for a token that verifies, else ``(None, why)``."""
    import jwt

    settings = config.jwt
    assert isinstance(settings, JWTSettings)
    try:
        claims = jwt.decode(
            token.decode("ascii"),
            settings.public_key_pem,
            algorithms=list(settings.algorithms),
            issuer=settings.issuer,
            audience=settings.audience,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except (jwt.InvalidTokenError, UnicodeDecodeError, ValueError) as error:
        return None, f"JWT refused: {type(error).__name__}"
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        return None, "JWT refused: no subject"
    return subject, ""


def verify_identity(config: Config, item: UserIdentityRQ) -> IdentityVerdict:
    """Check one User Identity sub-item (PS3.7 D.3.3.7.1) against ``config``.

    Types 1 and 2 name a ``[users]`` entry (type 2 with its passcode); type 5
    is a JWT checked against ``[jwt]``.  Anything else, or a type with
    nothing configured to check it, is unsupported: an empty verdict.  The
    failure text never holds the passcode or the token.
    """
    kind = item.identity_type
    positive = item.positive_response_requested
    if kind == UserIdentityType.JWT and isinstance(config.jwt, JWTSettings):
        subject, why = _verify_jwt(config, item.primary_field)
        if subject is None:
            return IdentityVerdict(failure=why)
        return IdentityVerdict(User(subject, UserIdentityType.JWT), positive_response=positive)
    if kind not in (UserIdentityType.USERNAME, UserIdentityType.USERNAME_AND_PASSCODE):
        return IdentityVerdict()
    if not config.users:
        return IdentityVerdict()
    name = item.primary_field.decode("utf-8", "replace")
    entry = config.users.get(name)
    if kind == UserIdentityType.USERNAME_AND_PASSCODE:
        ok = _passcode_matches(entry.passcode_hash if entry else None, item.secondary_field)
        if not ok:
            return IdentityVerdict(failure=f"user {printable(name)}: wrong user or passcode")
    elif entry is None:
        return IdentityVerdict(failure=f"user {printable(name)}: unknown user")
    return IdentityVerdict(User(name, UserIdentityType(kind)), positive_response=positive)


def remote_of(config: Config, rq: AAssociateRQ) -> RemoteAE | None:
    """The ``[remotes]`` table of the calling AE title, if any."""
    return config.remotes.get(rq.calling_ae_title)


def same_host(peer: str, addresses: Iterable[str]) -> bool:
    """Is the peer address one of ``addresses`` (IPv4-mapped IPv6 counts as IPv4)?"""

    def normal(text: str) -> IPAddress | None:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address

    mine = normal(peer)
    return mine is not None and any(normal(a) == mine for a in addresses)


def _reject(reason: RejectReason, why: str) -> Decision:
    return Decision(Admission(rejection=reason), reason=why)


def decide(
    config: Config,
    rq: AAssociateRQ,
    peer: str,
    host_addresses: Iterable[str] = (),
    verdict: IdentityVerdict | None = None,
) -> Decision:
    """The access rules (see the module docstring) for one A-ASSOCIATE-RQ.

    ``peer`` is the address the association comes from; ``host_addresses``
    are those of the calling AE's configured host (needed with ``check_host``).
    """
    title = printable(rq.calling_ae_title)
    remote = remote_of(config, rq)
    if remote is None and not config.accept_unknown_calling_ae:
        return _reject(RejectReason.CALLING_AE_NOT_RECOGNIZED, f"calling AE {title} unknown")
    if remote is not None and remote.check_host and not same_host(peer, host_addresses):
        why = f"calling AE {title} from {printable(peer)}, not from {printable(remote.host)}"
        return _reject(RejectReason.CALLING_AE_NOT_RECOGNIZED, why)
    if verdict is not None and verdict.failure is not None:
        return _reject(RejectReason.NO_REASON_GIVEN, verdict.failure)
    required = config.require_user_identity
    if remote is not None and remote.require_user_identity is not None:
        required = remote.require_user_identity
    user = verdict.user if verdict is not None else None
    if required and user is None:
        return _reject(RejectReason.NO_REASON_GIVEN, f"calling AE {title}: no user identity")
    # PS3.7 D.3.3.7.2: the server response is empty for types 1 and 2; we have no
    # token or ticket to return for type 5 either.
    response = UserIdentityAC(b"") if verdict is not None and verdict.positive_response else None
    services = frozenset(remote.services) if remote is not None else None
    return Decision(Admission(services=services, user_identity=response), user=user)


def service_names(abstract_syntaxes: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``(service per syntax, service of the requestor's SCP role per syntax)``.

    Every served syntax that is not Verification, a Q/R model, Storage
    Commitment or MPPS is a storage SOP class: ``store`` as SCU, ``get`` as
    SCP (C-GET sub-operations come back on it, PS3.4 C.4.3.3).
    """
    known = {uids.VERIFICATION: "echo", uids.STORAGE_COMMITMENT_PUSH: "commit", uids.MPPS: "mpps"}
    for name, models in (
        ("find", uids.QR_FIND_MODELS),
        ("move", uids.QR_MOVE_MODELS),
        ("get", uids.QR_GET_MODELS),
    ):
        known.update(dict.fromkeys(models, name))
    names: dict[str, str] = {}
    scp_roles: dict[str, str] = {}
    for syntax in abstract_syntaxes:
        names[syntax] = known.get(syntax, "store")
        if syntax not in known:
            scp_roles[syntax] = "get"
    return names, scp_roles


def request_service(command: Message, abstract_syntax: str, names: Mapping[str, str]) -> str:
    """The service a request uses: by its class for C-services, else by its SOP class.

    An N-service request names its SOP class (PS3.7 10.3), which wins over the
    context it came on, so an N-ACTION for Storage Commitment sent on the
    Verification context is still ``commit``.
    """
    by_class = _BY_MESSAGE.get(type(command))
    if by_class is not None:
        return by_class
    sop_class = getattr(command, "requested_sop_class_uid", None) or getattr(
        command, "affected_sop_class_uid", None
    )
    return names.get(sop_class or "", "") or names.get(abstract_syntax, "")
