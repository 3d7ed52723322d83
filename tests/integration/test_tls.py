"""TLS (PS3.15 B.12, B.13) with real peers: dcmtk, pynetdicom, our own client and CLI.

Every refused handshake (plain DICOM on the TLS port, TLS 1.1, a missing or
untrusted client certificate, silence) must leave one WARNING line with the
peer and the reason, no traceback, and a server that still answers.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from stellarpacs.aio.client import connect
from stellarpacs.aio.server import Server
from stellarpacs.errors import AssociationAborted
from stellarpacs.tls import PROFILES, client_context
from stellarpacs.uids import VERIFICATION
from tests.integration.conftest import StartServer
from tests.integration.peers import (
    HOST,
    SERVER_AE,
    TOOL_TIMEOUT,
    WAIT,
    dcmtk,
    dcmtk_env,
    echoscu,
    run_process,
)
from tests.integration.tls_fixtures import Certificates, certificates

__all__ = ["certificates"]  # the fixture, imported for pytest

pytestmark = pytest.mark.interop


# --- helpers ------------------------------------------------------------------------------


def _client(certs: Certificates, *, with_cert: bool = True) -> ssl.SSLContext:
    pair = certs.client if with_cert else None
    return client_context(
        ca_file=certs.ca,
        certificate=pair.cert if pair else None,
        private_key=pair.key if pair else None,
    )


async def _echo(port: int, tls: ssl.SSLContext | None) -> int:
    async with asyncio.timeout(WAIT):
        client = await connect(
            HOST, port, called_ae=SERVER_AE, contexts=[VERIFICATION], tls=tls,
            connect_timeout=WAIT, dimse_timeout=WAIT,
        )  # fmt: skip
        async with client:
            return await client.echo()


def _tls_options(certs: Certificates, *, anonymous: bool = False) -> list[str]:
    """dcmtk's TLS flags: our CA to verify the server, and our client pair unless anonymous."""
    pair = ["+tls", str(certs.client.key), str(certs.client.cert), "-pw"]
    return [*(["+tla"] if anonymous else pair), "+cf", str(certs.ca)]


async def _refusal_logged(caplog: pytest.LogCaptureFixture, reason: str) -> str:
    """Wait (bounded) for the one handshake WARNING; it names the peer and ``reason``."""
    async with asyncio.timeout(WAIT):
        while not (lines := _handshake_lines(caplog)):
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # a second line would come now
    lines = _handshake_lines(caplog)
    assert len(lines) == 1, lines
    assert f"TLS handshake with {HOST}:" in lines[0] and reason in lines[0], lines[0]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    return lines[0]


def _handshake_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "stellarpacs.server" and "TLS handshake" in r.getMessage()
    ]


async def _still_serving(server: Server, certs: Certificates) -> None:
    """No session is left of the refused connection, and both listeners answer."""
    async with asyncio.timeout(WAIT):
        while server._sessions:
            await asyncio.sleep(0.02)
    assert await _echo(server.tls_port, _client(certs)) == 0
    assert await _echo(server.port, None) == 0


# --- dcmtk --------------------------------------------------------------------------------


@pytest.mark.parametrize("verify_peer", [False, True], ids=["no-client-cert", "verify-peer"])
async def test_echoscu_with_a_client_certificate(
    start_server: StartServer, server_log: pytest.LogCaptureFixture,
    certificates: Certificates, verify_peer: bool,
) -> None:  # fmt: skip
    server = await start_server(tls=certificates.server_tls(verify_peer=verify_peer))
    result = await echoscu(server.tls_port, SERVER_AE, *_tls_options(certificates))
    assert result.returncode == 0, result.stderr
    assert not _handshake_lines(server_log)


@pytest.mark.parametrize("profile", list(PROFILES))
async def test_anonymous_echoscu_when_no_client_certificate_is_wanted(
    start_server: StartServer, certificates: Certificates, profile: str
) -> None:
    server = await start_server(tls=certificates.server_tls(profile=profile))
    result = await echoscu(server.tls_port, SERVER_AE, *_tls_options(certificates, anonymous=True))
    assert result.returncode == 0, result.stderr


async def test_anonymous_echoscu_is_refused_when_verify_peer(
    start_server: StartServer, server_log: pytest.LogCaptureFixture, certificates: Certificates
) -> None:
    server = await start_server(tls=certificates.server_tls(verify_peer=True))
    result = await echoscu(server.tls_port, SERVER_AE, *_tls_options(certificates, anonymous=True))
    assert result.returncode != 0
    await _refusal_logged(server_log, "no client certificate")
    await _still_serving(server, certificates)


@pytest.mark.parametrize("verify_peer", [False, True], ids=["no-client-cert", "verify-peer"])
async def test_storescu_stores_over_tls(
    start_server: StartServer, certificates: Certificates, tmp_path: Path, verify_peer: bool
) -> None:
    server = await start_server(tls=certificates.server_tls(verify_peer=verify_peer))
    source = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
    argv = [dcmtk("storescu"), "-aec", SERVER_AE, "-to", "10", "-ta", "10", "-td", "10"]
    argv += _tls_options(certificates)
    result = await run_process(*argv, HOST, str(server.tls_port), str(source), env=dcmtk_env())
    assert result.returncode == 0, result.stderr
    uid = dcmread(source).SOPInstanceUID
    stored = [p for p in server.config.storage.rglob("*.dcm") if dcmread(p).SOPInstanceUID == uid]
    assert len(stored) == 1


# --- pynetdicom ---------------------------------------------------------------------------


def _pynetdicom_echo(port: int, context: ssl.SSLContext) -> int | None:
    from pynetdicom import AE

    ae = AE(ae_title="PYNETDICOM")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = WAIT
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(HOST, port, ae_title=SERVER_AE, tls_args=(context, "localhost"))
    try:
        if not assoc.is_established:
            return None
        status: Any = assoc.send_c_echo()
        assoc.release()
        return int(status.Status)
    finally:
        if assoc.is_alive():
            assoc.abort()
        ae.shutdown()


async def test_pynetdicom_with_an_ssl_context(
    start_server: StartServer, certificates: Certificates
) -> None:
    server = await start_server(tls=certificates.server_tls(verify_peer=True))
    async with asyncio.timeout(TOOL_TIMEOUT):
        status = await asyncio.to_thread(_pynetdicom_echo, server.tls_port, _client(certificates))
    assert status == 0


# --- refused handshakes -------------------------------------------------------------------


async def test_plain_dicom_on_the_tls_port_is_refused(
    start_server: StartServer, server_log: pytest.LogCaptureFixture, certificates: Certificates
) -> None:
    server = await start_server(tls=certificates.server_tls())
    with pytest.raises(AssociationAborted):
        await _echo(server.tls_port, None)
    await _refusal_logged(server_log, "not TLS")
    await _still_serving(server, certificates)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_1_1_is_refused(
    start_server: StartServer, server_log: pytest.LogCaptureFixture, certificates: Certificates
) -> None:
    server = await start_server(tls=certificates.server_tls())
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(certificates.ca)
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 offers TLS 1.1 only at level 0
    # The server's alert (protocol version) or its close, whichever the client reads first.
    with pytest.raises((ssl.SSLError, ConnectionError)) as refused:
        await _echo(server.tls_port, old)
    if getattr(refused.value, "reason", None) == "NO_PROTOCOLS_AVAILABLE":  # pragma: no cover
        pytest.fail("the local OpenSSL refuses to offer TLS 1.1 at all", pytrace=False)
    await _refusal_logged(server_log, "older than 1.2")
    await _still_serving(server, certificates)


@pytest.mark.parametrize("who", ["rogue", "none"])
async def test_untrusted_or_missing_client_certificate_is_refused(
    start_server: StartServer, server_log: pytest.LogCaptureFixture,
    certificates: Certificates, who: str,
) -> None:  # fmt: skip
    server = await start_server(tls=certificates.server_tls(verify_peer=True))
    context = _client(certificates, with_cert=False)
    if who == "rogue":
        context.load_cert_chain(certificates.rogue.cert, certificates.rogue.key)
    # TLS 1.3 checks the client certificate after the client's handshake ends: the
    # refusal then arrives as an alert on the first read, seen as an abort or an SSLError.
    with pytest.raises((ssl.SSLError, AssociationAborted, ConnectionError)):
        await _echo(server.tls_port, context)
    await _refusal_logged(
        server_log, "certificate verify failed" if who == "rogue" else "no client certificate"
    )
    await _still_serving(server, certificates)


def _tls12_with(suite: str, certs: Certificates) -> ssl.SSLContext:
    context = _client(certs)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(suite)
    return context


async def test_the_non_downgrading_profile_refuses_suites_outside_bcp_195(
    start_server: StartServer, server_log: pytest.LogCaptureFixture, certificates: Certificates
) -> None:
    """TLS 1.2 with TLS_RSA_WITH_AES_128_CBC_SHA: refused by bcp195-nd, accepted by bcp195."""
    server = await start_server(tls=certificates.server_tls())
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await _echo(server.tls_port, _tls12_with("AES128-SHA", certificates))
    await _refusal_logged(server_log, "no shared cipher")
    assert (
        await _echo(server.tls_port, _tls12_with("ECDHE-RSA-AES128-GCM-SHA256", certificates)) == 0
    )
    fallback = await start_server(tls=certificates.server_tls(profile="bcp195"))
    assert await _echo(fallback.tls_port, _tls12_with("AES128-SHA", certificates)) == 0


async def test_silent_connection_is_dropped_after_artim(
    start_server: StartServer, server_log: pytest.LogCaptureFixture, certificates: Certificates
) -> None:
    server = await start_server(tls=certificates.server_tls())
    reader, writer = await asyncio.open_connection(HOST, server.tls_port)
    try:
        async with asyncio.timeout(server.config.artim_timeout + WAIT):
            assert await reader.read() == b""
    finally:
        writer.close()
    await _refusal_logged(server_log, "ARTIM")
    await _still_serving(server, certificates)


async def test_our_client_refuses_a_server_it_cannot_verify(
    start_server: StartServer, certificates: Certificates
) -> None:
    server = await start_server(tls=certificates.server_tls())
    with pytest.raises(ssl.SSLCertVerificationError):
        await _echo(server.tls_port, client_context(ca_file=certificates.rogue_ca))


# --- listeners ----------------------------------------------------------------------------


async def test_tls_only_has_no_plain_listener(
    start_server: StartServer, certificates: Certificates
) -> None:
    server = await start_server(port=0, tls=certificates.server_tls(only=True))
    assert await _echo(server.tls_port, _client(certificates)) == 0
    with pytest.raises(AssertionError, match="no plain listener"):
        _ = server.port
    listening = [s.getsockname()[1] for s in server._tls_server.sockets]  # type: ignore[union-attr]
    assert listening == [server.tls_port]
    assert server._server is None


async def test_without_a_certificate_there_is_no_tls_listener(server: Server) -> None:
    with pytest.raises(AssertionError, match="no TLS listener"):
        _ = server.tls_port
    assert await _echo(server.port, None) == 0


# --- our command line ---------------------------------------------------------------------


async def test_echo_command_over_tls(start_server: StartServer, certificates: Certificates) -> None:
    server = await start_server(tls=certificates.server_tls(verify_peer=True))
    c = certificates
    result = await run_process(
        sys.executable, "-m", "stellarpacs", "echo", HOST, str(server.tls_port),
        "--aec", SERVER_AE, "--tls-ca", str(c.ca),
        "--tls-cert", str(c.client.cert), "--tls-key", str(c.client.key),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "status 0x0000" in result.stdout


async def test_echo_command_without_a_trusted_ca_is_one_line(
    start_server: StartServer, certificates: Certificates
) -> None:
    server = await start_server(tls=certificates.server_tls())
    result = await run_process(
        sys.executable, "-m", "stellarpacs", "echo", HOST, str(server.tls_port),
        "--aec", SERVER_AE, "--tls-ca", str(certificates.rogue_ca),
    )  # fmt: skip
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("stellarpacs echo: TLS handshake failed: certificate verify failed: ")
