from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from pydicom import dcmread

from stellarpacs.errors import LocalProtocolError
from stellarpacs.fileio import TempFile
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.files.layout import instance_relpath
from stellarpacs.storage.records import StoredEvent, StoreResult
from tests.storage.dicomdata import (
    CT_IMAGE,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    JPEG_BASELINE,
    encode,
    expected_meta,
    implicit_element,
    make_dataset,
    meta_fields,
    store,
)


def tree_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "studies").rglob("*") if p.is_file())


def tmp_files(root: Path) -> list[Path]:
    return list((root / "tmp").iterdir())


def meta_length(path: Path) -> int:
    """Bytes before the data set: preamble, DICM, group length element + the group."""
    head = path.read_bytes()[:144]
    return 144 + int.from_bytes(head[140:144], "little")


# -- the file written ----------------------------------------------------------------------------


@pytest.mark.parametrize("ts", [IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE, JPEG_BASELINE])
async def test_data_set_bytes_are_kept_exactly(archive: Archive, root: Path, ts: str) -> None:
    pixels = random.Random(ts).randbytes(100_000)
    data = encode(make_dataset(pixel=pixels), ts)
    outcome = await store(archive, data, sop_uid="1.2.3.4.5", ts=ts, fragment=16_371)
    assert outcome.result == StoreResult.STORED and outcome.record is not None
    path = root / outcome.record.path
    raw = path.read_bytes()
    assert raw[meta_length(path) :] == data
    assert outcome.record.size == len(raw)
    ds = dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ts
    assert ds.PixelData == pixels
    assert tmp_files(root) == []


async def test_stored_files_are_readable_like_other_files(archive: Archive, root: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    outcome = await store(archive, encode(make_dataset()), sop_uid="1.2.3.4.5")
    assert outcome.record is not None
    assert stat.S_IMODE((root / outcome.record.path).stat().st_mode) == 0o666 & ~umask


async def test_file_meta_says_who_sent_what(archive: Archive, root: Path) -> None:
    outcome = await store(archive, encode(make_dataset()), sop_uid="1.2.3.4.5", calling_ae="CT01")
    assert outcome.record is not None
    fm = dcmread(root / outcome.record.path).file_meta
    assert meta_fields(fm) == expected_meta("1.2.3.4.5", "CT01")


async def test_record_and_index_row(archive: Archive) -> None:
    outcome = await store(archive, encode(make_dataset()), sop_uid="1.2.3.4.5", calling_ae="CT01")
    record = outcome.record
    assert record is not None
    assert record.path == "studies/1.2.3.100/1.2.3.100.1/1.2.3.4.5.dcm"
    assert (record.patient_id, record.study_instance_uid) == ("P001", "1.2.3.100")
    assert (record.series_instance_uid, record.calling_ae) == ("1.2.3.100.1", "CT01")
    assert record.received_at.endswith("+00:00")
    assert await archive.index.get_instance("1.2.3.4.5") == record


async def test_missing_patient_study_series_are_allowed(archive: Archive) -> None:
    data = encode(make_dataset(study=None, series=None, patient_id=None))
    outcome = await store(archive, data, sop_uid="1.2.3.4.5")
    assert outcome.result == StoreResult.STORED and outcome.record is not None
    assert (outcome.record.patient_id, outcome.record.study_instance_uid) == ("", "")


async def test_durable_before_answered_and_blocking_work_off_the_loop(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encode(make_dataset(pixel=bytes(200_000)))
    await store(archive, encode(make_dataset("1.1")), sop_uid="1.1")  # series directory exists
    events: list[tuple[object, ...]] = []
    loop_thread = threading.current_thread()
    real_fsync, real_replace, real_add = os.fsync, os.replace, archive.index.add

    def spy_fsync(fd: int) -> None:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        events.append(
            ("fsync", "dir" if is_dir else "file", threading.current_thread() is loop_thread)
        )
        real_fsync(fd)

    def spy_replace(src: Path, dest: Path) -> None:
        events.append(("replace", threading.current_thread() is loop_thread))
        real_replace(src, dest)

    async def spy_add(rows: list[object]) -> list[bool]:
        added = await real_add(rows)  # type: ignore[arg-type]
        events.append(("index commit",))
        return added

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    monkeypatch.setattr(archive.index, "add", spy_add)
    incoming = archive.begin(
        sop_class_uid=CT_IMAGE,
        sop_instance_uid="2.2",
        transfer_syntax_uid=EXPLICIT_LE,
        calling_ae="X",
    )
    for start in range(0, len(data), 16_384):
        incoming.write(data[start : start + 16_384])
    assert events == []  # no fsync per fragment
    outcome = await incoming.commit()
    events.append(("answered", outcome.result))
    assert events == [
        ("fsync", "file", False),
        ("replace", False),
        ("fsync", "dir", False),
        ("index commit",),
        ("answered", StoreResult.STORED),
    ]


# -- duplicates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("study", ["1.2.3.100", "9.9.9"], ids=["same-path", "other-path"])
async def test_a_duplicate_keeps_the_first(archive: Archive, root: Path, study: str) -> None:
    first_data = encode(make_dataset(patient_name="First^One"))
    first = await store(archive, first_data, sop_uid="1.2.3.4.5")
    second_data = encode(make_dataset(study=study, patient_name="Second^Two"))
    second = await store(archive, second_data, sop_uid="1.2.3.4.5")
    assert second.result == StoreResult.STORED and second.duplicate
    assert second.record == first.record and first.record is not None
    assert archive.duplicates == 1
    (only,) = tree_files(root)
    assert only.read_bytes()[meta_length(only) :] == first_data
    assert tmp_files(root) == []


async def test_concurrent_copies_of_one_instance_store_it_once(
    archive: Archive, root: Path
) -> None:
    datas = [encode(make_dataset(patient_name=f"P^{i}")) for i in range(4)]
    outcomes = await asyncio.gather(*(store(archive, d, sop_uid="7.7") for d in datas))
    assert [o.result for o in outcomes] == [StoreResult.STORED] * 4
    assert sum(not o.duplicate for o in outcomes) == 1
    assert archive.duplicates == 3
    (only,) = tree_files(root)
    winner = next(d for d, o in zip(datas, outcomes, strict=True) if not o.duplicate)
    assert only.read_bytes()[meta_length(only) :] == winner


# -- hostile UIDs --------------------------------------------------------------------------------

HOSTILE = [
    "",
    "..",
    ".",
    "../../etc",
    "/abs/path",
    "1.2/../../../x",
    "a" * 200,
    "1" * 65,
    "1.2\x00.3",
    "ü.1",
    "C:\\evil",
    "1..2",
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on invalid UI values
@pytest.mark.parametrize("uid", HOSTILE)
async def test_hostile_uids_stay_under_the_root(archive: Archive, root: Path, uid: str) -> None:
    raw = uid.encode("utf-8")
    data = b"".join(
        implicit_element(tag, value)
        for tag, value in (
            (0x00080018, raw),
            (0x00100020, raw),
            (0x0020000D, raw),
            (0x0020000E, raw),
        )
    )
    outcome = await store(archive, data, sop_uid=uid, ts=IMPLICIT_LE)
    assert outcome.result == StoreResult.STORED and outcome.record is not None
    path = (root / outcome.record.path).resolve()
    assert path.is_relative_to((root / "studies").resolve())
    assert path.is_file()
    assert await archive.index.has_instance(uid)


@pytest.mark.filterwarnings("ignore::UserWarning")
async def test_hostile_uids_never_share_a_file(archive: Archive, root: Path) -> None:
    data = encode(make_dataset(study="../x", series="../x"))
    for uid in HOSTILE:
        outcome = await store(archive, data, sop_uid=uid)
        assert outcome.result == StoreResult.STORED and not outcome.duplicate
    assert len(tree_files(root)) == len(HOSTILE)


# -- failures ------------------------------------------------------------------------------------


def enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


async def assert_intact(archive: Archive, root: Path, kept: bytes) -> None:
    (only,) = tree_files(root)
    assert only.read_bytes()[meta_length(only) :] == kept
    assert (await archive.index.stats())["instances"] == 1
    assert tmp_files(root) == []


@pytest.mark.parametrize(
    ("target", "name"),
    [
        (os, "fsync"),
        (os, "replace"),
        (TempFile, "write"),
        (os, "open"),
    ],
    ids=["fsync", "rename", "write", "open"],
)
async def test_io_errors_are_not_stored_and_lose_nothing(
    archive: Archive, root: Path, monkeypatch: pytest.MonkeyPatch, target: object, name: str
) -> None:
    kept = encode(make_dataset(sop_uid="1.1"))
    assert (await store(archive, kept, sop_uid="1.1")).result == StoreResult.STORED
    data = encode(make_dataset(sop_uid="2.2"))
    with monkeypatch.context() as patch:
        patch.setattr(target, name, enospc)
        outcome = await store(archive, data, sop_uid="2.2")
    assert outcome.result == StoreResult.NOT_STORED
    assert outcome.record is None
    assert outcome.error_comment and "space" in outcome.error_comment
    assert len(outcome.error_comment) <= 64
    await assert_intact(archive, root, kept)
    again = await store(archive, data, sop_uid="2.2")
    assert again.result == StoreResult.STORED and not again.duplicate


async def test_an_index_failure_is_not_stored_and_removes_the_placed_file(
    archive: Archive, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = encode(make_dataset(sop_uid="1.1"))
    await store(archive, kept, sop_uid="1.1")

    async def full(rows: object) -> list[bool]:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(archive.index, "add", full)
        outcome = await store(archive, encode(make_dataset(sop_uid="2.2")), sop_uid="2.2")
    assert outcome.result == StoreResult.NOT_STORED
    assert outcome.error_comment == "cannot store: database or disk is full"
    await assert_intact(archive, root, kept)
    assert (await store(archive, kept, sop_uid="2.2")).result == StoreResult.STORED


@pytest.mark.parametrize(
    "data",
    [b"", implicit_element(0x00080018, b"1.2") + b"\x10\x00\x10\x00\xe8\x03\x00\x00abc"],
    ids=["empty", "truncated"],
)
async def test_an_unparseable_data_set_is_unreadable(
    archive: Archive, root: Path, data: bytes
) -> None:
    outcome = await store(archive, data, sop_uid="1.2", ts=IMPLICIT_LE)
    assert outcome.result == StoreResult.UNREADABLE
    assert outcome.record is None and outcome.error_comment
    assert tree_files(root) == [] and tmp_files(root) == []
    assert not await archive.index.has_instance("1.2")
    ok = await store(archive, encode(make_dataset()), sop_uid="1.2")
    assert ok.result == StoreResult.STORED


# -- crash safety --------------------------------------------------------------------------------


async def test_open_removes_what_a_crash_left_in_tmp(root: Path) -> None:
    data = encode(make_dataset())
    async with Archive(root) as archive:
        await store(archive, data, sop_uid="1.1")
        unfinished = archive.begin(
            sop_class_uid=CT_IMAGE,
            sop_instance_uid="2.2",
            transfer_syntax_uid=EXPLICIT_LE,
            calling_ae="X",
        )
        unfinished.write(data[:100])
    (root / "tmp" / "rx-stale.part").write_bytes(b"half a file")
    assert len(tmp_files(root)) == 2
    async with Archive(root) as archive:
        assert tmp_files(root) == []
        assert await archive.index.has_instance("1.1")
        assert not await archive.index.has_instance("2.2")
        assert len(tree_files(root)) == 1


async def test_an_orphan_at_the_target_path_is_replaced(archive: Archive, root: Path) -> None:
    orphan = root / instance_relpath("1.2.3.100", "1.2.3.100.1", "1.2.3.4.5")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left by a crash between rename and index commit")
    data = encode(make_dataset())
    outcome = await store(archive, data, sop_uid="1.2.3.4.5")
    assert outcome.result == StoreResult.STORED and not outcome.duplicate
    assert orphan.read_bytes()[meta_length(orphan) :] == data


async def test_discard_removes_the_temporary_file(archive: Archive, root: Path) -> None:
    incoming = archive.begin(
        sop_class_uid=CT_IMAGE,
        sop_instance_uid="1.1",
        transfer_syntax_uid=EXPLICIT_LE,
        calling_ae="X",
    )
    incoming.write(b"\x08\x00")
    assert len(tmp_files(root)) == 1
    await incoming.discard()
    assert tmp_files(root) == [] and tree_files(root) == []
    with pytest.raises(LocalProtocolError):
        await incoming.commit()


async def test_commit_twice_is_api_misuse(archive: Archive) -> None:
    incoming = archive.begin(
        sop_class_uid=CT_IMAGE,
        sop_instance_uid="1.1",
        transfer_syntax_uid=EXPLICIT_LE,
        calling_ae="X",
    )
    incoming.write(encode(make_dataset()))
    await incoming.commit()
    with pytest.raises(LocalProtocolError):
        await incoming.commit()
    with pytest.raises(LocalProtocolError):
        incoming.write(b"more")


async def test_begin_needs_an_open_archive(root: Path) -> None:
    with pytest.raises(LocalProtocolError):
        Archive(root).begin(
            sop_class_uid=CT_IMAGE,
            sop_instance_uid="1",
            transfer_syntax_uid=EXPLICIT_LE,
            calling_ae="X",
        )


async def test_a_cancelled_caller_does_not_leave_the_store_half_done(
    archive: Archive, root: Path
) -> None:
    data = encode(make_dataset())
    task = asyncio.create_task(store(archive, data, sop_uid="1.2.3.4.5"))
    for _ in range(3):  # let it get into commit()
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await archive.drain()
    assert tmp_files(root) == []
    assert len(tree_files(root)) == int(await archive.index.has_instance("1.2.3.4.5"))


# -- group commit --------------------------------------------------------------------------------


async def test_concurrent_commits_share_transactions(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 10
    submitted = 0
    all_queued = asyncio.Event()
    batches: list[int] = []
    real_submit, real_add = archive._writer.submit, archive.index.add

    async def counting_submit(row: object) -> bool:
        nonlocal submitted
        submitted += 1
        if submitted == n:
            all_queued.set()
        return await real_submit(row)  # type: ignore[arg-type]

    async def held_add(rows: list[object]) -> list[bool]:
        batches.append(len(rows))
        if len(batches) == 1:  # hold the first transaction until every row waits
            await asyncio.wait_for(all_queued.wait(), timeout=30)
        return await real_add(rows)  # type: ignore[arg-type]

    monkeypatch.setattr(archive._writer, "submit", counting_submit)
    monkeypatch.setattr(archive.index, "add", held_add)
    before = archive.index.transactions
    data = encode(make_dataset())
    outcomes = await asyncio.gather(*(store(archive, data, sop_uid=f"5.{i}") for i in range(n)))
    assert all(o.result == StoreResult.STORED and not o.duplicate for o in outcomes)
    # the first transaction is held until every row waits, so at most two carry all n
    assert sum(batches) == n and len(batches) <= 2
    assert archive.index.transactions - before == len(batches) < n
    assert (await archive.index.stats())["instances"] == n


# -- hooks ---------------------------------------------------------------------------------------


async def test_hooks_see_each_stored_instance(archive: Archive, root: Path) -> None:
    events: list[StoredEvent] = []

    async def hook(event: StoredEvent) -> None:
        assert event.path.is_file()
        assert await archive.index.has_instance(event.record.sop_instance_uid)
        events.append(event)

    archive.add_hook(hook)
    data = encode(make_dataset())
    outcome = await store(archive, data, sop_uid="1.1", calling_ae="CT9")
    await store(archive, data, sop_uid="1.1")  # a duplicate is not stored again
    await archive.drain()
    assert [e.record for e in events] == [outcome.record]
    assert events[0].path == root / "studies/1.2.3.100/1.2.3.100.1/1.1.dcm"
    assert events[0].record.calling_ae == "CT9"


async def test_a_failing_hook_is_logged_and_changes_nothing(
    archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    called: list[str] = []

    async def broken(event: StoredEvent) -> None:
        raise RuntimeError("hook exploded")

    async def fine(event: StoredEvent) -> None:
        called.append(event.record.sop_instance_uid)

    archive.add_hook(broken)
    archive.add_hook(fine)
    with caplog.at_level(logging.ERROR):
        outcome = await store(archive, encode(make_dataset()), sop_uid="1.1")
        await archive.drain()
    assert outcome.result == StoreResult.STORED
    assert called == ["1.1"]
    assert "hook exploded" in caplog.text
