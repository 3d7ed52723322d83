"""Peers and credentials for the access-control tests: pynetdicom with user identity and a
chosen source address, dcmtk storescu with --user/--password/--jwt, JWT keys and tokens."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from stellarpacs.access import hash_passcode
from stellarpacs.uids import IMPLICIT_VR_LITTLE_ENDIAN, VERIFICATION
from tests.integration.peers import (
    HOST,
    SERVER_AE,
    TOOL_TIMEOUT,
    WAIT,
    Completed,
    dcmtk,
    dcmtk_env,
    run_process,
)

PASSCODE = "correct horse battery"
ISSUER = "https://idp.test"
AUDIENCE = "STELLARPACS"


@cache
def passcode_hash() -> str:
    """The hash of :data:`PASSCODE`, made once (Argon2id takes a few tens of ms)."""
    return hash_passcode(PASSCODE.encode())


@dataclass(frozen=True)
class JWTKeys:
    """An EC P-256 key pair: the public half in a PEM file, the private to sign tokens."""

    public_pem: Path
    private: ec.EllipticCurvePrivateKey

    def token(self, subject: str = "alice", **claims: Any) -> str:
        payload = {"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 300}
        return jwt.encode(payload | claims, self.private, algorithm="ES256")


def make_keys(folder: Path, name: str = "idp") -> JWTKeys:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = folder / f"{name}.pem"
    path.write_bytes(pem)
    return JWTKeys(path, private)


def jwt_config(keys: JWTKeys) -> dict[str, Any]:
    return {"public_key": str(keys.public_pem), "issuer": ISSUER, "audience": AUDIENCE}


async def storescu_identity(
    port: int, path: Path, *identity: str, aet: str = "STORESCU"
) -> Completed:
    """dcmtk storescu sending ``path`` with user identity flags (e.g. --user, --password, -rsp)."""
    argv = [dcmtk("storescu"), "-aet", aet, "-aec", SERVER_AE, "-to", "10", "-ta", "10"]
    argv += [*identity, HOST, str(port), str(path)]
    return await run_process(*argv, env=dcmtk_env(), timeout=WAIT * 2)


@dataclass
class Attempt:
    """What pynetdicom saw of one association attempt."""

    established: bool = False
    rejection: tuple[int, int, int] | None = None
    #: Presentation context results as the AC gave them: abstract syntax -> result.
    results: dict[str, int] = field(default_factory=dict)
    #: The server response of the User Identity sub-item of the AC; None if absent.
    identity_response: bytes | None = None
    echo_status: int | None = None


def _identity_item(kind: int, primary: bytes, secondary: bytes, positive: bool) -> Any:
    from pynetdicom.pdu_primitives import UserIdentityNegotiation

    item = UserIdentityNegotiation()
    item.user_identity_type = kind
    item.primary_field = primary
    if kind == 2:
        item.secondary_field = secondary
    item.positive_response_requested = positive
    return item


def _attempt(
    port: int,
    calling_ae: str,
    bind: tuple[str, int] | None,
    identity: tuple[int, bytes, bytes, bool] | None,
    contexts: tuple[str, ...],
) -> Attempt:
    from pynetdicom import AE, evt

    outcome = Attempt()

    def on_pdu_recv(event: Any) -> None:
        pdu = event.pdu
        name = type(pdu).__name__
        if name == "A_ASSOCIATE_RJ":
            outcome.rejection = (int(pdu.result), int(pdu.source), int(pdu.reason_diagnostic))
        elif name == "A_ASSOCIATE_AC":
            for item in pdu.user_information.user_data:
                if type(item).__name__ == "UserIdentitySubItemAC":
                    outcome.identity_response = bytes(item.server_response or b"")

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    for syntax in contexts:
        ae.add_requested_context(syntax, IMPLICIT_VR_LITTLE_ENDIAN)
    ext_neg = [_identity_item(*identity)] if identity is not None else None
    assoc = ae.associate(
        HOST, port, ae_title=SERVER_AE, ext_neg=ext_neg, bind_address=bind or ("", 0),
        evt_handlers=[(evt.EVT_PDU_RECV, on_pdu_recv)],
    )  # fmt: skip
    try:
        outcome.established = assoc.is_established
        if assoc.is_established:
            for cx in assoc.accepted_contexts + assoc.rejected_contexts:
                outcome.results[str(cx.abstract_syntax)] = (
                    -1 if cx.result is None else int(cx.result)
                )
            if VERIFICATION in outcome.results and outcome.results[VERIFICATION] == 0:
                status = assoc.send_c_echo()
                outcome.echo_status = int(status.Status) if "Status" in status else None
            assoc.release()
    finally:
        if assoc.is_alive():
            assoc.abort()
        ae.shutdown()
    return outcome


async def attempt(
    port: int,
    calling_ae: str = "PYNETDICOM",
    *,
    bind: tuple[str, int] | None = None,
    identity: tuple[int, bytes, bytes, bool] | None = None,
    contexts: tuple[str, ...] = (VERIFICATION,),
) -> Attempt:
    """One pynetdicom association attempt in a worker thread (the server keeps serving)."""
    async with asyncio.timeout(TOOL_TIMEOUT):
        return await asyncio.to_thread(_attempt, port, calling_ae, bind, identity, contexts)
