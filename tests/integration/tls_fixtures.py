"""Throwaway certificates for the TLS tests, made with ``cryptography``.

One CA signs a server certificate (for 127.0.0.1 and localhost, also used by
dcmtk's storescp) and a client certificate; a second, unknown CA signs a
"rogue" client certificate that a ``verify_peer`` server must refuse.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stellarpacs.config_tls import TLSConfig


@dataclass(frozen=True, slots=True)
class Pair:
    """A PEM certificate file and its unencrypted PEM key file."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class Certificates:
    ca: Path
    server: Pair
    client: Pair
    #: Signed by a CA nobody trusts.
    rogue: Pair
    rogue_ca: Path
    #: A key that belongs to no certificate here.
    stray_key: Path

    def server_tls(self, **overrides: object) -> TLSConfig:
        """``[tls]`` on a free port with the server pair and our CA."""
        values: dict[str, object] = {
            "port": 0,
            "certificate": self.server.cert,
            "private_key": self.server.key,
            "ca_file": self.ca,
        }
        return TLSConfig(**(values | overrides))  # type: ignore[arg-type]


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey] | None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:  # a CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            False,
        )
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _leaf(folder: Path, name: str, ca: tuple[x509.Name, rsa.RSAPrivateKey]) -> Pair:
    key = _key()
    cert = _certificate(name, key, ca)
    return Pair(_write_cert(folder / f"{name}.pem", cert), _write_key(folder / f"{name}.key", key))


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, rogue_key = _key(), _key()
    ca_cert = _certificate("StellarPACS test CA", ca_key, None)
    rogue_cert = _certificate("Rogue CA", rogue_key, None)
    ca = (ca_cert.subject, ca_key)
    return Certificates(
        ca=_write_cert(folder / "ca.pem", ca_cert),
        server=_leaf(folder, "server", ca),
        client=_leaf(folder, "client", ca),
        rogue=_leaf(folder, "rogue", (rogue_cert.subject, rogue_key)),
        rogue_ca=_write_cert(folder / "rogue-ca.pem", rogue_cert),
        stray_key=_write_key(folder / "stray.key", _key()),
    )


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """CA, server, client, rogue and stray key files, made once per test session."""
    return make_certificates(tmp_path_factory.mktemp("tls"))
