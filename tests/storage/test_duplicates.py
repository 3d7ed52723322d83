"""The archive's side of defect 10: SOP UID checks and the duplicate policy, without a network."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellarpacs.config import load_config
from stellarpacs.errors import ConfigError
from stellarpacs.storage import tools
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.records import StoreOutcome, StoreResult
from tests.storage.dicomdata import CT_IMAGE, EXPLICIT_LE, IMPLICIT_LE, encode, make_dataset

UID = "1.2.3.4.5"


async def checked_store(
    archive: Archive, data: bytes, *, sop_uid: str = UID, sop_class: str = CT_IMAGE,
    ts: str = EXPLICIT_LE,
) -> StoreOutcome:  # fmt: skip
    incoming = archive.begin(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_uid,
        transfer_syntax_uid=ts,
        calling_ae="SCU",
        check_uids=True,
    )
    incoming.write(data)
    return await incoming.commit()


def dcm_files(root: Path) -> list[Path]:
    return sorted((root / "studies").rglob("*.dcm"))


async def test_uids_are_checked_only_when_asked(archive: Archive) -> None:
    data = encode(make_dataset("9.9.9"))
    incoming = archive.begin(
        sop_class_uid=CT_IMAGE, sop_instance_uid="1.1", transfer_syntax_uid=EXPLICIT_LE,
        calling_ae="X",
    )  # fmt: skip
    incoming.write(data)
    assert (await incoming.commit()).result is StoreResult.STORED  # as before issue 12
    mismatch = await checked_store(archive, data, sop_uid="1.2")
    assert (mismatch.result, mismatch.mismatch) == (StoreResult.UNREADABLE, "instance")


async def test_a_class_mismatch_stores_nothing(archive: Archive, root: Path) -> None:
    outcome = await checked_store(archive, encode(make_dataset(UID)), sop_class="1.2.840.1")
    assert (outcome.result, outcome.mismatch) == (StoreResult.UNREADABLE, "class")
    assert outcome.error_comment == "SOP Class UID (0008,0016) differs from the command's"
    assert dcm_files(root) == [] and list((root / "tmp").iterdir()) == []
    assert await archive.index.get_instance(UID) is None


async def test_absent_uids_in_the_data_set_are_no_mismatch(archive: Archive) -> None:
    ds = make_dataset(UID)
    del ds.SOPClassUID, ds.SOPInstanceUID
    assert (await checked_store(archive, encode(ds))).result is StoreResult.STORED


async def test_the_same_instance_in_another_syntax_is_a_conflict(archive: Archive) -> None:
    ds = make_dataset(UID)
    await checked_store(archive, encode(ds))
    again = await checked_store(archive, encode(ds, IMPLICIT_LE), ts=IMPLICIT_LE)
    assert again.conflict and again.result is StoreResult.STORED


async def test_replace_at_the_same_path_and_the_record_survives_a_reindex(root: Path) -> None:
    async with Archive(root, duplicate_policy="replace") as archive:
        await checked_store(archive, encode(make_dataset(UID, patient_name="First^One")))
        second = encode(make_dataset(UID, patient_name="Second^Two"))
        outcome = await checked_store(archive, second)
        assert outcome.replaced and outcome.result is StoreResult.STORED
        (only,) = dcm_files(root)
        assert only.read_bytes().endswith(second)
        header = await archive.index.get_header_json(UID)
        assert header is not None and "Second" in str(header)
    await tools.reindex(root)
    report = await tools.verify(root)
    assert report.ok and [c.action for c in report.conflicts] == ["replaced"]


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate_policy"):
        Archive(Path("unused"), duplicate_policy="overwrite")


def test_the_configuration_names_the_bad_policy() -> None:
    with pytest.raises(ConfigError, match=r"duplicate_policy.*keep, reject, replace"):
        load_config(None, {"duplicate_policy": "overwrite"})
