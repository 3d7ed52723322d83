"""What the data set says against its command, and a known UID with other content (defect 10).

A data set whose SOP Class UID (0008,0016) is not its command's is answered
A900 and one whose SOP Instance UID (0008,0018) is not is answered C000;
nothing is stored for either.  A known SOP Instance UID arriving with other
content follows ``duplicate_policy``: keep (B006, the first stays), reject
(0111), replace (Success, the new one stands in the old one's place and its
index row is updated); each such arrival is logged, escaped, and recorded
durably, so that ``storage verify`` lists it.  An identical copy stays
Success, with nothing recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.cli import main as cli_main
from stellarpacs.storage import tools
from stellarpacs.storage.archive import Archive
from stellarpacs.uids import EXPLICIT_VR_LITTLE_ENDIAN
from tests.integration.peers import HOST, SERVER_AE, containing, dcmtk, run_process, wait_for_log
from tests.integration.storage_fixtures import (
    c_store,
    encode_dataset,
    files_under,
    open_store_association,
    serving,
    synthetic_dataset,
    write_part10,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
CONTEXTS = (ProposedContext(CT, (EXPLICIT_VR_LITTLE_ENDIAN,)),)
SUCCESS, MISMATCH, CANNOT_UNDERSTAND = 0x0000, 0xA900, 0xC000
KEPT, DUPLICATE = 0xB006, 0x0111
#: A calling AE with a control character: what reaches the log must be escaped.
HOSTILE_AE = "EVIL\x1bSCU"


async def _nothing_stored(archive: Archive, root: Path) -> None:
    assert (await archive.index.stats())["instances"] == 0
    assert files_under(root / "studies", ".dcm") == []
    assert files_under(root / "tmp") == []


@pytest.mark.parametrize(
    ("what", "status"), [("SOPClassUID", MISMATCH), ("SOPInstanceUID", CANNOT_UNDERSTAND)]
)
async def test_a_data_set_naming_other_uids_than_its_command_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, what: str, status: int
) -> None:
    root = tmp_path / "storage"
    ds = synthetic_dataset(CT, 1)
    uid = str(ds.SOPInstanceUID)
    setattr(ds, what, MR if what == "SOPClassUID" else uid + ".9")
    async with serving(root) as (server, archive):
        client = await open_store_association(server.port, CONTEXTS)
        async with client:
            rsp = await c_store(client, encode_dataset(ds), sop_class_uid=CT, sop_instance_uid=uid)
            assert rsp.status == status
            assert rsp.error_comment is not None and "differs from the command" in rsp.error_comment
            ds.SOPClassUID, ds.SOPInstanceUID = CT, uid  # the association goes on
            rsp = await c_store(client, encode_dataset(ds), sop_class_uid=CT, sop_instance_uid=uid)
            assert rsp.status == SUCCESS
        await archive.index.delete_study(str(ds.StudyInstanceUID))
        for path in files_under(root / "studies", ".dcm"):
            path.unlink()
        await _nothing_stored(archive, root)  # the refused one left nothing of its own
    assert any(f"refused with 0x{status:04X}" in r.getMessage() for r in caplog.records)


def _verify_output(root: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["storage", "verify", "--storage", str(root)]) == 0
    return out.getvalue()


@pytest.mark.parametrize(
    ("policy", "status", "kept", "action"),
    [
        ("keep", KEPT, "first", "kept the first"),
        ("reject", DUPLICATE, "first", "rejected"),
        ("replace", SUCCESS, "second", "replaced"),
    ],
)
async def test_a_known_uid_with_other_content_follows_the_policy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, policy: str, status: int, kept: str,
    action: str,
) -> None:  # fmt: skip
    root = tmp_path / "storage"
    ds = synthetic_dataset(CT, 1, patient_id="FIRST")
    uid = str(ds.SOPInstanceUID)
    first = encode_dataset(ds)
    ds.PatientID, ds.StudyInstanceUID = "SECOND", "1.2.3.4.999"  # another path too
    ds.SeriesInstanceUID = "1.2.3.4.999.1"
    second = encode_dataset(ds)
    async with serving(root, duplicate_policy=policy) as (server, archive):
        client = await open_store_association(server.port, CONTEXTS, calling_ae=HOSTILE_AE[:16])
        async with client:
            rsp = await c_store(client, first, sop_class_uid=CT, sop_instance_uid=uid)
            assert rsp.status == SUCCESS
            again = await c_store(client, first, sop_class_uid=CT, sop_instance_uid=uid)
            assert again.status == SUCCESS  # identical content: as before
            rsp = await c_store(client, second, sop_class_uid=CT, sop_instance_uid=uid)
            assert rsp.status == status
        record = await archive.index.get_instance(uid)
        assert record is not None
        assert record.patient_id == ("FIRST" if kept == "first" else "SECOND")
        stored = archive.layout.absolute(record.path).read_bytes()
        assert stored.endswith(first if kept == "first" else second)
        assert len(files_under(root / "studies", ".dcm")) == 1  # the other one is gone
        assert files_under(root / "tmp") == []
    report = await tools.verify(root)
    assert report.ok
    assert [(c.sop_instance_uid, c.action) for c in report.conflicts] == [(uid, action)]
    assert report.conflicts[0].calling_ae == HOSTILE_AE
    listed = await asyncio.to_thread(_verify_output, root)
    assert f"conflict: SOP instance {uid} from EVIL\\x1bSCU" in listed and action in listed
    logged = [r.getMessage() for r in caplog.records if "other content" in r.getMessage()]
    assert len(logged) == 1 and "EVIL\\x1bSCU" in logged[0] and "\x1b" not in logged[0]


async def _storescu(port: int, path: Path) -> str:
    result = await run_process(
        dcmtk("storescu"), "-v", "-aec", SERVER_AE, "-to", "10", "-ta", "10", "-td", "10",
        HOST, str(port), str(path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


async def test_storescu_sending_a_modified_instance_gets_the_policy_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "storage"
    ds = synthetic_dataset(CT, 2, patient_id="ORIGINAL")
    original = write_part10(ds, tmp_path / "original.dcm", ExplicitVRLittleEndian)
    ds.PatientName = "Modified^After^Sending"
    modified = write_part10(ds, tmp_path / "modified.dcm", ExplicitVRLittleEndian)
    async with serving(root) as (server, archive):  # duplicate_policy "keep"
        assert "Success" in await _storescu(server.port, original)
        assert "Success" in await _storescu(server.port, original)  # identical: as before
        answer = await _storescu(server.port, modified)
        assert "0xb006" in answer.lower() or "Warning" in answer, answer
        await wait_for_log(caplog, containing("arrived again", "other content", level=30))
        record = await archive.index.get_instance(str(ds.SOPInstanceUID))
        assert record is not None
        header = await archive.index.get_header_json(record.sop_instance_uid)
        assert header is not None and "Modified" not in str(header)
    report = await tools.verify(root)
    assert [c.action for c in report.conflicts] == ["kept the first"]
