"""Who may connect and do what, with real peers: calling AE rules, check_host, services.

``accept_unknown_calling_ae = false`` and ``check_host`` answer with
A-ASSOCIATE-RJ 1/1/3 (PS3.8 Table 9-21); a service an AE may not use has its
presentation contexts refused with result 1 (PS3.8 9.3.3.2) and a request
that arrives anyway is answered 0124 (PS3.7 Annex C); a C-MOVE destination
not allowed ``store`` is refused with A801 (PS3.4 C.4.2.1.5).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import ImplicitVRLittleEndian as IMPLICIT

from stellarpacs.aio.client import connect
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.config import RemoteAE
from stellarpacs.dimse.commands import (
    CFindRQ,
    CFindRSP,
    CStoreRQ,
    CStoreRSP,
    NActionRQ,
    NActionRSP,
)
from stellarpacs.uids import (
    STORAGE_COMMITMENT_PUSH,
    STORAGE_COMMITMENT_PUSH_INSTANCE,
    STUDY_ROOT_QR_FIND,
    VERIFICATION,
)
from tests.integration.access_peers import attempt, storescu_identity
from tests.integration.conftest import StartServer
from tests.integration.peers import HOST, SERVER_AE, WAIT, containing, echoscu, wait_for_log
from tests.integration.retrieve_fixtures import movescu, received, storescp
from tests.integration.storage_fixtures import encode_dataset, synthetic_dataset, write_part10

CALLING_AE_NOT_RECOGNIZED = (1, 1, 3)
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
pytestmark = pytest.mark.interop


def _ct_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ds = synthetic_dataset(CT_IMAGE_STORAGE, 0)
    return write_part10(ds, folder / "ct.dcm", IMPLICIT)


async def test_unknown_calling_ae_is_rejected_when_closed(
    start_server: StartServer, server_log: pytest.LogCaptureFixture
) -> None:
    known = {"KNOWN": RemoteAE("KNOWN", HOST, 104)}
    server = await start_server(accept_unknown_calling_ae=False, remotes=known)
    refused = await echoscu(server.port, SERVER_AE, "-aet", "STRANGER")
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    await wait_for_log(server_log, containing("rejected", "reason 3", "STRANGER unknown"))
    outcome = await attempt(server.port, "STRANGER")
    assert outcome.rejection == CALLING_AE_NOT_RECOGNIZED and not outcome.established
    # Refused before any identity check: the AE rule comes first (1/1/3, not 1/1/1).
    with_identity = await attempt(server.port, "STRANGER", identity=(2, b"a", b"b", True))
    assert with_identity.rejection == CALLING_AE_NOT_RECOGNIZED
    assert (await echoscu(server.port, SERVER_AE, "-aet", "KNOWN")).returncode == 0


async def test_unknown_calling_ae_is_accepted_by_default(start_server: StartServer) -> None:
    server = await start_server(remotes={"KNOWN": RemoteAE("KNOWN", HOST, 104)})
    assert server.config.accept_unknown_calling_ae
    assert (await echoscu(server.port, SERVER_AE, "-aet", "STRANGER")).returncode == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_check_host_rejects_another_address(
    start_server: StartServer, server_log: pytest.LogCaptureFixture, host: str
) -> None:
    remote = RemoteAE("MODALITY", host, 104, check_host=True)
    server = await start_server(remotes={"MODALITY": remote})
    wrong = await attempt(server.port, "MODALITY", bind=("127.0.0.2", 0))
    assert wrong.rejection == CALLING_AE_NOT_RECOGNIZED and not wrong.established
    await wait_for_log(server_log, containing("rejected", "from 127.0.0.2, not from"))
    right = await attempt(server.port, "MODALITY", bind=("127.0.0.1", 0))
    assert right.established and right.echo_status == 0
    # Without check_host another address is fine: the rule is the remote's.
    other = await attempt(server.port, "OTHER", bind=("127.0.0.2", 0))
    assert other.established


async def test_store_from_an_ae_allowed_only_find_is_refused(
    start_server: StartServer, tmp_path: Path
) -> None:
    remote = RemoteAE("FINDER", HOST, 104, services=("find",))
    server = await start_server(remotes={"FINDER": remote})
    path = _ct_file(tmp_path / "in")
    result = await echoscu(server.port, SERVER_AE, "-aet", "FINDER")
    assert result.returncode != 0  # echo is not among its services either
    refused = await storescu_identity(server.port, path, aet="FINDER")
    assert refused.returncode != 0
    assert not list((server.config.storage).rglob("*.dcm"))
    outcome = await attempt(server.port, "FINDER", contexts=(CT_IMAGE_STORAGE, STUDY_ROOT_QR_FIND))
    assert outcome.results == {CT_IMAGE_STORAGE: 1, STUDY_ROOT_QR_FIND: 0}
    allowed = await storescu_identity(server.port, path, aet="STORER")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


async def test_a_request_that_arrives_anyway_is_answered_not_authorized(
    start_server: StartServer,
) -> None:
    """A get-only AE keeps its storage context for C-GET (SCP role) but may not C-STORE on it."""
    remote = RemoteAE("GETTER", HOST, 104, services=("get", "echo"))
    server = await start_server(remotes={"GETTER": remote})
    ct = ProposedContext(CT_IMAGE_STORAGE, (IMPLICIT,), scu_role=True, scp_role=True)
    client = await connect(
        HOST, server.port, called_ae=SERVER_AE, calling_ae="GETTER",
        contexts=[ct, VERIFICATION], dimse_timeout=WAIT,
    )  # fmt: skip
    async with client:
        context = client.association.context_for(CT_IMAGE_STORAGE)
        assert (context.scu_role, context.scp_role) == (False, True)
        ds = synthetic_dataset(CT_IMAGE_STORAGE, 1)
        store = CStoreRQ(
            message_id=1,
            affected_sop_class_uid=CT_IMAGE_STORAGE,
            affected_sop_instance_uid=ds.SOPInstanceUID,
        )
        answer = await client.request(context.context_id, store, encode_dataset(ds))
        assert isinstance(answer.command, CStoreRSP) and answer.command.status == 0x0124
        find = CFindRQ(message_id=2, affected_sop_class_uid=STUDY_ROOT_QR_FIND)
        echo_context = client.association.context_for(VERIFICATION).context_id
        answer = await client.request(echo_context, find, b"")
        assert isinstance(answer.command, CFindRSP) and answer.command.status == 0x0124
        action = NActionRQ(
            message_id=3, requested_sop_class_uid=STORAGE_COMMITMENT_PUSH,
            requested_sop_instance_uid=STORAGE_COMMITMENT_PUSH_INSTANCE, action_type_id=1,
        )  # fmt: skip
        answer = await client.request(echo_context, action)
        assert isinstance(answer.command, NActionRSP) and answer.command.status == 0x0124
        assert await client.echo() == 0  # the association goes on
    assert not list(server.config.storage.rglob("*.dcm"))


async def test_move_to_a_destination_not_allowed_store_is_refused(
    start_server: StartServer, tmp_path: Path, server_log: pytest.LogCaptureFixture
) -> None:
    async with storescp(tmp_path / "dest", "VIEWER") as port:
        remotes = {
            "VIEWER": RemoteAE("VIEWER", HOST, port, services=("echo", "find")),
            "ARCHIVE2": RemoteAE("ARCHIVE2", HOST, port),
        }
        server = await start_server(remotes=remotes)
        client = await connect(HOST, server.port, called_ae=SERVER_AE, contexts=[CT_IMAGE_STORAGE])
        ds = synthetic_dataset(CT_IMAGE_STORAGE, 2)
        async with client:
            result = await client.store(write_part10(ds, tmp_path / "x.dcm", IMPLICIT))
        assert [r.status for r in result] == [0]
        keys = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ds.StudyInstanceUID}
        refused = await movescu(server.port, "study", keys, "VIEWER")
        assert "0xa801" in (refused.stdout + refused.stderr).lower()
        await wait_for_log(server_log, containing("C-MOVE", "not allowed store", "VIEWER"))
        assert not received(tmp_path / "dest")
