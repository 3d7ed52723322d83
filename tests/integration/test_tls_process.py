"""TLS through ``python -m stellarpacs`` (uvloop), C-MOVE to a TLS remote, bad TLS configuration."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from stellarpacs.aio.client import commit, connect
from stellarpacs.aio.scu.nservices import CommitmentListener
from stellarpacs.commitment import SOPReference
from stellarpacs.config import RemoteAE
from stellarpacs.errors import AssociationAborted
from stellarpacs.uids import PATIENT_ROOT_QR_MOVE
from tests.integration.peers import HOST, SERVER_AE, WAIT, Completed, echoscu, run_process
from tests.integration.retrieve_fixtures import (
    archive,
    client_for,
    make_instances,
    received,
    storescp,
)
from tests.integration.storage_fixtures import free_port, server_process
from tests.integration.tls_fixtures import Certificates, certificates

__all__ = ["certificates"]  # the fixture, imported for pytest

pytestmark = pytest.mark.interop


def _toml(certs: Certificates, port: int, **extra: str) -> str:
    lines = [
        "[tls]",
        f"port = {port}",
        f'certificate = "{certs.server.cert}"',
        f'private_key = "{certs.server.key}"',
        f'ca_file = "{certs.ca}"',
        *(f"{key} = {value}" for key, value in extra.items()),
    ]
    return "\n".join(lines) + "\n"


async def test_served_by_the_cli_on_uvloop(tmp_path: Path, certificates: Certificates) -> None:
    """The command line runs uvloop: its TLS transports take the same path as asyncio's."""
    tls_port = free_port()
    config = tmp_path / "tls.toml"
    config.write_text(_toml(certificates, tls_port, verify_peer="true"))
    async with server_process(tmp_path / "data", tmp_path / "log", "--config", str(config)) as srv:
        c = certificates
        options = ("+tls", str(c.client.key), str(c.client.cert), "-pw", "+cf", str(c.ca))
        assert (await echoscu(tls_port, SERVER_AE, *options)).returncode == 0
        with pytest.raises(AssociationAborted):
            await connect(HOST, tls_port, called_ae=SERVER_AE, connect_timeout=WAIT)
        refused = await echoscu(tls_port, SERVER_AE, "+tla", "+cf", str(c.ca))
        assert refused.returncode != 0
        assert (await echoscu(tls_port, SERVER_AE, *options)).returncode == 0
        assert await srv.stop() == 0
    log = srv.log()
    assert "Traceback" not in log, log
    refusals = [line for line in log.splitlines() if "TLS handshake with" in line]
    assert len(refusals) == 2, log
    assert "not TLS" in refusals[0] and "no client certificate" in refusals[1], refusals


async def test_c_move_to_a_tls_remote_arrives_byte_exact(
    tmp_path: Path, certificates: Certificates
) -> None:
    """dcmtk's storescp +tls wants our certificate: the server's [tls] one serves as client's."""
    c = certificates
    instances = make_instances(tmp_path / "source")[:3]
    out = tmp_path / "received"
    options = ("+tls", str(c.server.key), str(c.server.cert), "-pw", "+cf", str(c.ca))
    async with storescp(out, "DEST", *options) as port:
        remote = RemoteAE("DEST", HOST, port, tls=True)
        tls_config = c.server_tls()
        async with archive(tmp_path / "a", instances, remotes={"DEST": remote}, tls=tls_config) as (
            server,
            _,
        ):
            client = await client_for(server.port)
            async with client:
                identifier = Dataset()
                identifier.QueryRetrieveLevel = "PATIENT"
                identifier.PatientID = instances[0].patient_id
                async with asyncio.timeout(WAIT * 3):
                    responses = [
                        r async for r in client.move(PATIENT_ROOT_QR_MOVE, identifier, "DEST")
                    ]
            assert responses[-1].status == 0x0000, responses[-1]
    wanted = [i for i in instances if i.patient_id == instances[0].patient_id]
    got = received(out)
    assert set(got) == {i.sop_instance_uid for i in wanted}
    for instance in wanted:
        assert got[instance.sop_instance_uid] == instance.dataset()


async def test_c_move_to_a_tls_remote_with_an_untrusted_certificate_fails_cleanly(
    tmp_path: Path, certificates: Certificates
) -> None:
    c = certificates
    instances = make_instances(tmp_path / "source")[:1]
    options = ("+tls", str(c.rogue.key), str(c.rogue.cert), "-pw", "+cf", str(c.ca))
    async with storescp(tmp_path / "received", "DEST", *options) as port:
        remote = RemoteAE("DEST", HOST, port, tls=True)
        async with archive(
            tmp_path / "a", instances, remotes={"DEST": remote}, tls=c.server_tls()
        ) as (server, _):
            client = await client_for(server.port)
            async with client:
                identifier = Dataset()
                identifier.QueryRetrieveLevel = "PATIENT"
                identifier.PatientID = instances[0].patient_id
                async with asyncio.timeout(WAIT * 3):
                    responses = [
                        r async for r in client.move(PATIENT_ROOT_QR_MOVE, identifier, "DEST")
                    ]
                assert responses[-1].status == 0xA702  # refused: out of resources
                assert await client.echo() == 0


async def test_commitment_report_goes_to_a_tls_remote(
    tmp_path: Path, certificates: Certificates
) -> None:
    """The N-EVENT-REPORT association is TLS, and shows our certificate to a verify_peer SCU."""
    tls_config = certificates.server_tls(verify_peer=True)
    listener = CommitmentListener("OURSCU", host=HOST, tls=tls_config)
    async with listener:
        remote = RemoteAE("OURSCU", HOST, listener.server.tls_port, tls=True)
        instances = make_instances(tmp_path / "source")[:1]
        async with archive(
            tmp_path / "a", instances, remotes={"OURSCU": remote}, tls=certificates.server_tls()
        ) as (server, _):
            reference = SOPReference(instances[0].sop_class_uid, instances[0].sop_instance_uid)
            report = await commit(
                HOST, server.port, [reference], called_ae=SERVER_AE, calling_ae="OURSCU",
                listener=listener, timeout=WAIT * 2,
            )  # fmt: skip
    assert report.event_type_id == 1 and report.committed == (reference,)


async def _serve(tmp_path: Path, toml: str) -> Completed:
    config = tmp_path / "stellarpacs.toml"
    config.write_text(toml)
    argv = [sys.executable, "-m", "stellarpacs", "serve", "--config", str(config)]
    return await run_process(*argv, "--storage", str(tmp_path / "data"))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"certificate": '"/nonexistent/server.pem"'}, "'tls.certificate' /nonexistent/server.pem"),
        ({"private_key": "STRAY"}, "'tls.private_key'"),
        ({"profile": '"tls1.0"'}, "'tls.profile' must be one of bcp195-nd, bcp195, basic"),
        ({"verify_peer": "true", "ca_file": None}, "'tls.ca_file' must be set"),
        ({"colour": '"blue"'}, "unknown key 'tls.colour'"),
    ],
    ids=["missing-certificate", "key-not-matching", "unknown-profile", "no-ca", "unknown-key"],
)
async def test_bad_tls_configuration_is_one_line_and_exit_2(
    tmp_path: Path, certificates: Certificates, change: dict[str, str | None], named: str
) -> None:
    c = certificates
    values: dict[str, str | None] = {
        "port": "0",
        "certificate": f'"{c.server.cert}"',
        "private_key": f'"{c.server.key}"',
        "ca_file": f'"{c.ca}"',
    }
    values |= {k: (f'"{c.stray_key}"' if v == "STRAY" else v) for k, v in change.items()}
    toml = "[tls]\n" + "".join(f"{k} = {v}\n" for k, v in values.items() if v is not None)
    result = await _serve(tmp_path, toml)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert named in line, line
    assert not (tmp_path / "data").exists()


async def test_tls_port_in_use_is_one_line(tmp_path: Path, certificates: Certificates) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        toml = _toml(certificates, port, only="true")
        result = await _serve(tmp_path, f'host = "{HOST}"\n' + toml)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(
        f"stellarpacs: configuration error: cannot listen on {HOST}:TLS {port}: "
    )


async def test_echo_command_with_a_missing_client_key_is_one_line(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "stellarpacs", "echo", HOST, "9", "--tls-cert", "/nonexistent"]
    result = await run_process(*argv)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line == "stellarpacs: configuration error: --tls-cert: /nonexistent does not exist"
