"""PS3.10 file writing: the meta, the temporary file, the spares, the durable move."""

from __future__ import annotations

import asyncio
import errno
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.filereader import read_file_meta_info

from stellarpacs.fileio import TempFile
from stellarpacs.part10 import Part10Error
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.files import durable
from stellarpacs.storage.records import StoreResult
from tests.storage.dicomdata import (
    CT_IMAGE,
    EXPLICIT_LE,
    encode,
    expected_meta,
    file_meta,
    make_dataset,
    meta_fields,
    store,
    write_file,
)

WAIT = 10.0  # bound of every wait for another thread


# -- File Meta Information -----------------------------------------------------------------------


def test_meta_is_read_back_by_pydicom(tmp_path: Path) -> None:
    path = write_file(tmp_path / "f.dcm", file_meta(), b"")
    assert meta_fields(read_file_meta_info(path)) == expected_meta("1.2.3.4", "MODALITY1")


def test_meta_layout_preamble_prefix_group_length() -> None:
    header = file_meta()
    assert header[:128] == bytes(128)
    assert header[128:132] == b"DICM"
    tag, vr, length = struct.unpack("<I2sH", header[132:140])
    assert (tag, vr, length) == (0x00000002, b"UL", 4)
    (group_length,) = struct.unpack("<I", header[140:144])
    assert group_length == len(header) - 144
    assert len(header) % 2 == 0


def test_odd_values_are_padded_uid_with_nul_text_with_space() -> None:
    header = file_meta(sop_instance_uid="1.2.3", source_ae="ABC")
    assert b"1.2.3\x00" in header
    assert b"ABC " in header


def test_no_source_ae_element_when_the_calling_ae_is_empty(tmp_path: Path) -> None:
    path = write_file(tmp_path / "f.dcm", file_meta(source_ae=""), b"")
    assert "SourceApplicationEntityTitle" not in read_file_meta_info(path)


async def test_a_uid_too_long_for_the_meta_is_unreadable(archive: Archive) -> None:
    with pytest.raises(Part10Error):
        file_meta(sop_instance_uid="1" * 70_000)
    outcome = await store(archive, encode(make_dataset()), sop_uid="1" * 70_000)
    assert outcome.result == StoreResult.UNREADABLE


# -- the temporary file --------------------------------------------------------------------------


def test_clean_tmp_removes_leftovers(tmp_path: Path) -> None:
    for name in ("rx-1.part", "rx-2.part", "stray"):
        (tmp_path / name).write_bytes(b"half")
    assert durable.clean_tmp(tmp_path) == 3
    assert list(tmp_path.iterdir()) == []


def test_temp_file_counts_sizes_and_abandon_removes_it(tmp_path: Path) -> None:
    temp = TempFile.create(tmp_path, b"HEAD")
    temp.write(b"data")
    assert (temp.size, temp.data_size) == (8, 4)
    temp.abandon()
    assert not temp.path.exists()


# -- spares --------------------------------------------------------------------------------------


def open_in(directory: Path) -> int:
    """How many of this process's descriptors are open on a file in ``directory`` (Linux)."""
    prefix = f"{directory}{os.sep}"
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used, closed meanwhile
            continue
        count += target.startswith(prefix)
    return count


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    spare_dir, tmp_dir = tmp_path / "spare", tmp_path / "tmp"
    spare_dir.mkdir()
    tmp_dir.mkdir()
    return spare_dir, tmp_dir


def test_spares_take_fill_low_and_drain(folders: tuple[Path, Path]) -> None:
    spare_dir, _ = folders
    spares = durable.Spares(spare_dir, keep=4)
    assert spares.low and spares.take() is None
    spares.fill()
    assert len(list(spare_dir.iterdir())) == 4 and open_in(spare_dir) == 4
    assert not spares.low
    first = spares.take()
    assert first is not None and not spares.low  # 3 ready: more than half
    second = spares.take()
    assert second is not None and spares.low  # 2 ready: half, time to refill
    taken = [first, second]
    for path, fd in taken:
        assert path.parent == spare_dir and path.stat().st_size == 0
        assert os.fstat(fd).st_ino == path.stat().st_ino  # the descriptor is that file's
    assert len({path for path, _ in taken}) == 2
    spares.fill()
    assert len(list(spare_dir.iterdir())) == 6 and not spares.low
    spares.drain()
    assert sorted(spare_dir.iterdir()) == sorted(path for path, _ in taken)
    assert open_in(spare_dir) == 2  # only the two taken are still open
    assert spares.take() is None and spares.low
    for _, fd in taken:
        os.close(fd)


def test_adopt_moves_a_spare_into_tmp_keeping_its_inode(folders: tuple[Path, Path]) -> None:
    spare_dir, tmp_dir = folders
    spares = durable.Spares(spare_dir, keep=1)
    spares.fill()
    spare = spares.take()
    assert spare is not None
    inode = spare[0].stat().st_ino
    temp = TempFile.adopt(spare, tmp_dir, b"HEAD")
    assert temp.path == tmp_dir / spare[0].name
    assert temp.path.stat().st_ino == inode
    assert list(spare_dir.iterdir()) == []
    temp.write(b"data")
    temp.finish(fsync=True)
    assert temp.path.read_bytes() == b"HEADdata"
    assert open_in(tmp_dir) == 0


def test_adopt_of_a_vanished_spare_raises_and_leaks_nothing(folders: tuple[Path, Path]) -> None:
    spare_dir, tmp_dir = folders
    spares = durable.Spares(spare_dir, keep=1)
    spares.fill()
    spare = spares.take()
    assert spare is not None
    spare[0].unlink()
    with pytest.raises(FileNotFoundError):
        TempFile.adopt(spare, tmp_dir, b"HEAD")
    assert open_in(spare_dir) == 0
    assert list(tmp_dir.iterdir()) == []


async def spares_ready(archive: Archive) -> None:
    """Wait (bounded) for the refill the archive started in a worker thread."""
    if archive._filling is not None:
        await asyncio.wait_for(asyncio.shield(archive._filling), WAIT)


async def test_open_cleans_spare_and_close_removes_its_spares(root: Path) -> None:
    spare_dir = root / "spare"
    spare_dir.mkdir(parents=True)
    stale = {"rx-stale.part", "junk"}
    for name in stale:
        (spare_dir / name).write_bytes(b"left by a crash")
    async with Archive(root) as archive:
        await spares_ready(archive)
        names = {p.name for p in spare_dir.iterdir()}
        assert names and not names & stale
        assert len(names) == archive._spares.keep
        outcome = await store(archive, encode(make_dataset()), sop_uid="1.1")
        assert outcome.result == StoreResult.STORED
        await spares_ready(archive)
    assert list(spare_dir.iterdir()) == []
    assert open_in(spare_dir) == 0


async def test_begin_takes_a_ready_spare(archive: Archive, root: Path) -> None:
    await spares_ready(archive)
    inodes = {p.stat().st_ino for p in (root / "spare").iterdir()}
    incoming = archive.begin(
        sop_class_uid=CT_IMAGE,
        sop_instance_uid="1.1",
        transfer_syntax_uid=EXPLICIT_LE,
        calling_ae="X",
    )
    assert incoming.temp is not None and incoming.temp.path.parent == root / "tmp"
    assert incoming.temp.path.stat().st_ino in inodes
    incoming.write(encode(make_dataset()))
    outcome = await incoming.commit()
    assert outcome.result == StoreResult.STORED and outcome.record is not None
    assert (root / outcome.record.path).stat().st_ino in inodes


def no_spares(*args: object) -> None:
    """A fill that makes nothing."""


def full_disk(*args: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("fill", [no_spares, full_disk], ids=["nothing-made", "fill-fails"])
async def test_begin_works_when_the_pool_is_empty(
    root: Path, monkeypatch: pytest.MonkeyPatch, fill: Callable[..., None]
) -> None:
    monkeypatch.setattr(durable.Spares, "fill", fill)
    async with Archive(root) as archive:
        for uid in ("1.1", "1.2"):
            await spares_ready(archive)
            assert archive._spares.take() is None
            outcome = await store(archive, encode(make_dataset(uid)), sop_uid=uid)
            assert outcome.result == StoreResult.STORED and outcome.record is not None
            assert (root / outcome.record.path).is_file()
        assert list((root / "tmp").iterdir()) == []
        assert list((root / "spare").iterdir()) == []


async def test_a_spare_that_vanished_is_replaced_by_a_new_file(
    archive: Archive, root: Path
) -> None:
    await spares_ready(archive)
    for spare in (root / "spare").iterdir():
        spare.unlink()
    outcome = await store(archive, encode(make_dataset()), sop_uid="1.1")
    assert outcome.result == StoreResult.STORED and outcome.record is not None
    assert (root / outcome.record.path).is_file()
    assert list((root / "tmp").iterdir()) == []


# -- group commit of directory entries -----------------------------------------------------------


class Clock:
    """A shared counter that orders events of several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = 0

    def tick(self) -> int:
        with self._lock:
            self._now += 1
            return self._now


class WatchedLock:
    """A lock that tells a condition whenever it is released, so a test can wait for a state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.changed = threading.Condition()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()
        with self.changed:
            self.changed.notify_all()


class Renamer:
    """Callers that each rename a file into ``directory``, then wait for ``sync_entries``."""

    def __init__(self, dirs: durable.DirSync, directory: Path, clock: Clock) -> None:
        self.dirs, self.directory, self.clock = dirs, directory, clock
        self.renamed: dict[str, int] = {}
        self.returned: dict[str, int] = {}

    def __call__(self, name: str) -> None:
        src = self.directory.parent / f"{name}.part"
        src.write_bytes(name.encode())
        os.rename(src, self.directory / name)
        self.renamed[name] = self.clock.tick()
        self.dirs.sync_entries(self.directory)
        self.returned[name] = self.clock.tick()

    def assert_each_waited_for_a_later_fsync(self, fsyncs: list[tuple[int, int]]) -> None:
        """Each caller returned after an fsync that began after its rename had been made."""
        assert set(self.returned) == set(self.renamed)
        for name, renamed in self.renamed.items():
            covering = [e for s, e in fsyncs if s > renamed and e < self.returned[name]]
            assert covering, f"{name} returned before its rename was fsynced"


@pytest.fixture
def series(tmp_path: Path) -> Path:
    directory = tmp_path / "series"
    directory.mkdir()
    return directory


def spy_fsyncs(
    monkeypatch: pytest.MonkeyPatch, clock: Clock, hold_first: threading.Event | None = None
) -> tuple[list[tuple[int, int]], threading.Event]:
    """Record (start, end) of every directory fsync; optionally hold the first until set."""
    fsyncs: list[tuple[int, int]] = []
    started = threading.Event()
    real = durable.fsync_dir

    def fsync_dir(path: Path) -> None:
        start = clock.tick()
        if hold_first is not None and not started.is_set():
            started.set()
            assert hold_first.wait(WAIT)
        started.set()
        real(path)
        fsyncs.append((start, clock.tick()))

    monkeypatch.setattr(durable, "fsync_dir", fsync_dir)
    return fsyncs, started


def start(target: Callable[[str], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, args=(name,), daemon=True)
    thread.start()
    return thread


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()


def test_concurrent_calls_for_one_directory_share_one_fsync(
    series: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, release = Clock(), threading.Event()
    fsyncs, first_started = spy_fsyncs(monkeypatch, clock, hold_first=release)
    dirs = durable.DirSync(series.parent, fsync=True)
    watched = WatchedLock()
    monkeypatch.setattr(dirs, "_mutex", watched)
    renamer = Renamer(dirs, series, clock)
    threads = [start(renamer, "first")]
    try:
        assert first_started.wait(WAIT)  # the first caller's fsync began and is held
        threads += [start(renamer, f"late{i}") for i in range(5)]
        with watched.changed:  # every late caller has taken its ticket
            assert watched.changed.wait_for(lambda: dirs._flushes[series].requested == 6, WAIT)
    finally:
        release.set()
        join(threads)
    # the held fsync began before the late renames, so it cannot cover them; one more
    # fsync, shared by all five, must
    assert len(fsyncs) == 2
    renamer.assert_each_waited_for_a_later_fsync(fsyncs)


def test_every_caller_waits_for_an_fsync_that_began_after_its_rename(
    series: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    fsyncs, _ = spy_fsyncs(monkeypatch, clock)
    renamer = Renamer(durable.DirSync(series.parent, fsync=True), series, clock)
    barrier = threading.Barrier(4, timeout=WAIT)

    def worker(name: str) -> None:
        barrier.wait()
        for i in range(25):
            renamer(f"{name}-{i}")

    join([start(worker, f"w{n}") for n in range(4)])
    assert len(renamer.returned) == 100
    renamer.assert_each_waited_for_a_later_fsync(fsyncs)
    assert 1 <= len(fsyncs) <= 100


def test_a_lone_call_fsyncs_and_none_is_made_without_fsync(
    series: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    fsyncs, _ = spy_fsyncs(monkeypatch, clock)
    renamer = Renamer(durable.DirSync(series.parent, fsync=True), series, clock)
    renamer("a")
    renamer("b")
    assert len(fsyncs) == 2
    renamer.assert_each_waited_for_a_later_fsync(fsyncs)
    Renamer(durable.DirSync(series.parent, fsync=False), series, clock)("c")
    assert len(fsyncs) == 2


# -- the durable move ----------------------------------------------------------------------------


def test_install_creates_durable_directories_and_replaces(tmp_path: Path) -> None:
    dirs = durable.DirSync(tmp_path, fsync=True)
    src = tmp_path / "a"
    src.write_bytes(b"new")
    dest = tmp_path / "s" / "t" / "u.dcm"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"old orphan")
    durable.install(src, dest, dirs)
    assert dest.read_bytes() == b"new"
    assert not src.exists()


def eio(*args: object) -> None:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def spy_moves(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record, for each ``os.replace``, whether the file stood at its destination right after."""
    moved: list[bool] = []
    real = os.replace

    def replace(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
        real(src, dest)
        moved.append(Path(dest).is_file())

    monkeypatch.setattr(os, "replace", replace)
    return moved


def test_install_that_cannot_be_made_durable_removes_the_moved_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = durable.DirSync(tmp_path, fsync=True)
    dest = tmp_path / "s" / "t" / "u.dcm"
    dirs.ensure(dest.parent)  # with the real fsync: only the entry's own fsync fails below
    src = tmp_path / "rx.part"
    src.write_bytes(b"data")
    moved = spy_moves(monkeypatch)
    monkeypatch.setattr(durable, "fsync_dir", eio)
    with pytest.raises(OSError) as info:
        durable.install(src, dest, dirs)
    assert info.value.errno == errno.EIO
    assert moved == [True]
    assert not src.exists()
    assert list(dest.parent.iterdir()) == []


async def test_a_directory_fsync_failure_is_not_stored_and_leaves_nothing(
    archive: Archive, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await store(archive, encode(make_dataset("1.1")), sop_uid="1.1")
    assert first.result == StoreResult.STORED and first.record is not None  # folders durable
    moved = spy_moves(monkeypatch)
    data = encode(make_dataset("2.2"))
    with monkeypatch.context() as patch:
        patch.setattr(durable, "fsync_dir", eio)
        outcome = await store(archive, data, sop_uid="2.2")
    assert outcome.result == StoreResult.NOT_STORED
    assert outcome.record is None
    assert outcome.error_comment == "cannot store: Input/output error"
    assert moved == [True]  # the file was in the tree, and was taken out again
    tree = [p for p in (root / "studies").rglob("*") if p.is_file()]
    assert tree == [root / first.record.path]
    assert list((root / "tmp").iterdir()) == []
    assert not await archive.index.has_instance("2.2")
    again = await store(archive, data, sop_uid="2.2")
    assert again.result == StoreResult.STORED and not again.duplicate
