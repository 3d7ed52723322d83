"""StorageService: each way a store ends is answered with its C-STORE status (PS3.4 B.2.3).

The archive says how a store ended (tests/storage); these tests check the
status and Error Comment the service puts on the wire for each ending.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from stellarpacs.aio.association import Association
from stellarpacs.config import Config
from stellarpacs.dimse.commands import CStoreRQ, CStoreRSP, Message
from stellarpacs.dimse.events import Incoming
from stellarpacs.fileio import TempFile
from stellarpacs.services.storage import STORE_STATUS, StorageService, StoreStatus
from stellarpacs.storage.api import StoreResult
from stellarpacs.storage.archive import Archive
from stellarpacs.ul.negotiation import PresentationContext
from tests.storage.dicomdata import CT_IMAGE, EXPLICIT_LE, IMPLICIT_LE, encode, make_dataset


class Recorder:
    """Stands for an Association: the calling AE, and what the service sends."""

    calling_ae_title = "STORESCU"

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, context_id: int, message: Message, dataset: bytes | None = None) -> None:
        self.sent.append(message)


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[Archive]:
    async with Archive(tmp_path / "archive", fsync=False) as opened:
        yield opened


@pytest.fixture
def service(archive: Archive) -> StorageService:
    return StorageService(archive, Config(storage=archive.layout.root))


async def c_store(
    service: StorageService, data: bytes, *, uid: str, ts: str = EXPLICIT_LE
) -> CStoreRSP:
    """One C-STORE as the server hands it over: command, fragments into the sink, handle."""
    recorder = Recorder()
    association = cast(Association, recorder)
    context = PresentationContext(1, CT_IMAGE, ts)
    request = CStoreRQ(message_id=3, affected_sop_class_uid=CT_IMAGE, affected_sop_instance_uid=uid)
    sink = service.sink(association, context, request)
    assert sink is not None
    for start in range(0, len(data), 4096):
        sink.write(data[start : start + 4096])
    await service.handle(association, Incoming(context, request, None, sink))
    (response,) = recorder.sent
    assert isinstance(response, CStoreRSP) and response.message_id_being_responded_to == 3
    return response


def test_every_end_of_a_store_has_its_status() -> None:
    assert set(STORE_STATUS) == set(StoreResult)
    statuses = {result: int(status) for result, status in STORE_STATUS.items()}
    assert statuses == {
        StoreResult.STORED: 0x0000,
        StoreResult.NOT_STORED: 0xA702,  # Refused: Out of Resources (PS3.4 Table B.2-1)
        StoreResult.UNREADABLE: 0xC000,  # Error: Cannot understand
    }
    assert set(STORE_STATUS.values()) == set(StoreStatus)


async def test_stored_and_duplicate_answer_0000(service: StorageService) -> None:
    data = encode(make_dataset("1.1"))
    first = await c_store(service, data, uid="1.1")
    again = await c_store(service, data, uid="1.1")
    assert (first.status, again.status) == (0x0000, 0x0000)
    assert first.error_comment is None and first.affected_sop_instance_uid == "1.1"


async def test_a_full_disk_answers_a702(
    service: StorageService, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TempFile.write

    def write(self: TempFile, data: bytes) -> None:
        if self.size:  # the meta header went in already: this is data set bytes
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(self, data)

    monkeypatch.setattr(TempFile, "write", write)
    response = await c_store(service, encode(make_dataset("2.2")), uid="2.2")
    assert response.status == 0xA702
    assert response.error_comment and "space" in response.error_comment
    assert len(response.error_comment) <= 64


async def test_an_index_failure_answers_a702(
    service: StorageService, archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def full(rows: object) -> list[bool]:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(archive.index, "add", full)
    response = await c_store(service, encode(make_dataset("2.2")), uid="2.2")
    assert response.status == 0xA702
    assert response.error_comment == "cannot store: database or disk is full"


@pytest.mark.parametrize(
    "data", [b"", b"\x08\x00\x18\x00\x10\x00\x00\x001.2"], ids=["empty", "cut"]
)
async def test_an_unparseable_data_set_answers_c000(service: StorageService, data: bytes) -> None:
    response = await c_store(service, data, uid="1.2", ts=IMPLICIT_LE)
    assert response.status == 0xC000
    assert response.error_comment


async def test_a_uid_too_long_for_the_file_meta_answers_c000(service: StorageService) -> None:
    response = await c_store(service, encode(make_dataset("3.3")), uid="1" * 70_000)
    assert response.status == 0xC000
