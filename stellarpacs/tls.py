"""TLS for DICOM associations: the secure transport connection profiles as ``ssl`` contexts.

PS3.15 Annex B defines the profiles; each name here maps to one context recipe:

``bcp195-nd`` (default)
    Non-downgrading BCP 195 TLS profile (PS3.15 B.13 with the non-downgrading
    rule): TLS 1.2 or 1.3 only, and on TLS 1.2 only the cipher suites that
    BCP 195 (RFC 9325 4.2) recommends: ECDHE key exchange with AES-GCM.
``bcp195``
    BCP 195 TLS profile (PS3.15 B.13): the recommended suites first, then the
    AES suites of the older profiles (TLS_RSA_WITH_AES_128/256_CBC_SHA, no
    forward secrecy) for peers that know nothing newer.
``basic``
    Basic TLS secure transport connection profile (PS3.15 B.12): OpenSSL's
    default suites at its security level 2.

Every profile refuses TLS 1.1 and older, although RFC 9325 would let the
``bcp195`` profile fall back: RFC 8996 deprecated them and no peer we meet
lacks TLS 1.2.  TLS 1.3 is preferred whenever both sides have it (OpenSSL
negotiates the highest common version); its suites are all AEAD and are left
as OpenSSL sets them.  Only the stdlib :mod:`ssl` is used.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Final

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "TLSFileError",
    "client_context",
    "describe_handshake_error",
    "server_context",
]

#: RFC 9325 4.2's recommended TLS 1.2 suites, in OpenSSL's names.
BCP195_SUITES: Final = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
)
#: The AES suites of the retired AES TLS profile (PS3.15 B.3), kept by ``bcp195`` as fallback.
_LEGACY_AES_SUITES: Final = "AES128-SHA:AES256-SHA"

#: Profile name -> OpenSSL cipher list for TLS 1.2 (None: OpenSSL's default).
PROFILES: Final[dict[str, str | None]] = {
    "bcp195-nd": BCP195_SUITES,
    "bcp195": f"{BCP195_SUITES}:{_LEGACY_AES_SUITES}",
    "basic": None,
}
DEFAULT_PROFILE: Final = "bcp195-nd"


class TLSFileError(ValueError):
    """A certificate, key or CA file that cannot be used; ``which`` says which one."""

    def __init__(self, which: str, message: str) -> None:
        super().__init__(message)
        self.which = which


def _base(protocol: ssl._SSLMethod, profile: str) -> ssl.SSLContext:
    """A context trusting nothing yet (``create_default_context`` would trust the system's
    CAs, which must not vouch for a client certificate)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown TLS profile {profile!r}")
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    suites = PROFILES[profile]
    context.set_ciphers(suites if suites is not None else "DEFAULT:@SECLEVEL=2")
    return context


def _readable(which: str, path: Path) -> None:
    if not path.is_file():
        reason = "is not a file" if path.exists() else "does not exist"
        raise TLSFileError(which, f"{path} {reason}")
    if not os.access(path, os.R_OK):
        raise TLSFileError(which, f"{path} is not readable")


def _load_chain(context: ssl.SSLContext, certificate: Path, private_key: Path) -> None:
    _readable("certificate", certificate)
    _readable("private_key", private_key)
    try:
        context.load_cert_chain(certificate, private_key, password=_no_password)
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise TLSFileError(
                "private_key", f"{private_key} does not match {certificate}"
            ) from None
        reason = "not a PEM certificate and key" if "PEM lib" in str(error) else _reason(error)
        raise TLSFileError(
            "certificate", f"cannot load {certificate} with {private_key}: {reason}"
        ) from None


def _no_password() -> bytes:
    """An encrypted private key cannot be used unattended: refuse rather than prompt."""
    raise ValueError("the private key is encrypted; give it unencrypted, readable by us only")


def _load_ca(context: ssl.SSLContext, ca_file: Path | None) -> None:
    if ca_file is None:
        context.load_default_certs()
        return
    _readable("ca_file", ca_file)
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as error:
        raise TLSFileError("ca_file", f"cannot load {ca_file}: {_reason(error)}") from None


def server_context(
    profile: str,
    certificate: Path,
    private_key: Path,
    ca_file: Path | None = None,
    verify_peer: bool = False,
) -> ssl.SSLContext:
    """The acceptor's context; with ``verify_peer`` a client certificate signed by
    ``ca_file`` is required (PS3.15 B.12/B.13 leave peer authentication to the site).

    Raises :class:`TLSFileError` for a file that cannot be used, ValueError for a profile.
    """
    context = _base(ssl.PROTOCOL_TLS_SERVER, profile)
    _load_chain(context, certificate, private_key)
    if ca_file is not None:
        _load_ca(context, ca_file)
    context.verify_mode = ssl.CERT_REQUIRED if verify_peer else ssl.CERT_NONE
    return context


def client_context(
    profile: str = DEFAULT_PROFILE,
    ca_file: Path | None = None,
    certificate: Path | None = None,
    private_key: Path | None = None,
) -> ssl.SSLContext:
    """The requestor's context: the server's certificate is always verified (against
    ``ca_file``, else the system's trust store) and its name checked against the host."""
    context = _base(ssl.PROTOCOL_TLS_CLIENT, profile)
    _load_ca(context, ca_file)
    if certificate is not None:
        _load_chain(context, certificate, private_key or certificate)
    return context


def _reason(error: ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    return str(error.reason or error.strerror or error).replace("_", " ").lower()


#: OpenSSL reasons a peer's handshake fails with, said in DICOM terms.
_HINTS: Final = {
    "wrong version number": "not TLS (a plain DICOM connection?)",
    "http request": "not TLS (an HTTP request)",
    "unsupported protocol": "the peer offered only a TLS version older than 1.2",
    "no shared cipher": "no cipher suite in common with the profile",
    "peer did not return a certificate": "no client certificate, and verify_peer wants one",
}


def describe_handshake_error(error: BaseException) -> str:
    """One short reason for a failed handshake, for the log."""
    if isinstance(error, ssl.SSLError):
        reason = _reason(error)
        hint = _HINTS.get(reason)
        return f"{reason}: {hint}" if hint else reason
    if isinstance(error, TimeoutError | ConnectionAbortedError) and "taking longer" in str(error):
        return "no handshake within the ARTIM timeout"
    if isinstance(error, ConnectionError | EOFError):
        return "the peer closed the connection during the handshake"
    return str(error) or type(error).__name__
