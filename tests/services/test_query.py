"""FindService against a recording association: statuses, identifiers, cancel (PS3.4 C.4.1).

Instances are stored through the Archive (fsync off) in a temporary folder;
each C-FIND-RQ is handed to the service as the server would, and the test
reads back what the service sent.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

from stellarpacs.config import Config
from stellarpacs.dimse.commands import CFindRQ, CFindRSP, Message
from stellarpacs.dimse.events import Incoming
from stellarpacs.services.query import FIND_FAILURE, FindService, response_charset
from stellarpacs.services.storage import STORE_STATUS
from stellarpacs.storage.api import Match, QueryProblem
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.files.header import row_from_dataset
from stellarpacs.storage.index.catalog import SQLiteCatalog
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    PATIENT_ROOT_QR_FIND,
    PATIENT_STUDY_ONLY_QR_FIND,
    QR_FIND_MODELS,
    STUDY_ROOT_QR_FIND,
)
from stellarpacs.ul.negotiation import PresentationContext
from tests.aio.fakes import RecordingAssociation
from tests.storage.dicomdata import encode, make_dataset, store

IMPLICIT, EXPLICIT = IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN


class Recorder(RecordingAssociation):
    """Stands for an association: keeps what is sent; can cancel after some responses."""

    def __init__(self, cancel_after: int | None = None) -> None:
        super().__init__("SCU")
        self.cancel_after = cancel_after

    async def send(self, context_id: int, message: Message, dataset: bytes | None = None) -> None:
        await super().send(context_id, message, dataset)
        if self.cancel_after is not None and len(self.sent) == self.cancel_after:
            assert isinstance(message, CFindRSP)
            self.cancelled.add(message.message_id_being_responded_to)

    @property
    def responses(self) -> list[CFindRSP]:
        return [cast(CFindRSP, m) for _, m, _ in self.sent]

    def identifiers(self, ts: str = IMPLICIT) -> list[Dataset]:
        implicit = ts == IMPLICIT
        return [read_dataset(io.BytesIO(d), implicit, True) for _, _, d in self.sent if d]


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[Archive]:
    async with Archive(tmp_path / "archive", fsync=False) as opened:
        for i, name in enumerate(["Doe^John", "Müller^Jürgen", "Ōtani^Shōhei", "50%_off^Sale"]):
            study = f"1.2.8.{i}"
            ds = make_dataset(
                f"1.2.9.{i}",
                study=study,
                series=f"{study}.1",
                patient_id=f"P{i}",
                patient_name=name,
            )
            ds.SpecificCharacterSet = "ISO_IR 192"
            outcome = await store(archive=opened, data=encode(ds), sop_uid=f"1.2.9.{i}")
            assert STORE_STATUS[outcome.result] == 0
        yield opened


@pytest.fixture
async def service(archive: Archive) -> AsyncIterator[FindService]:
    found = FindService(archive, Config(ae_title="FINDSCP", storage=archive.layout.root))
    yield found
    await found.close()


def identifier(ts: str = IMPLICIT, **keys: Any) -> bytes:
    ds = Dataset()
    for key, value in keys.items():
        setattr(ds, key, value)
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = ts == IMPLICIT, True
    write_dataset(fp, ds)
    return fp.getvalue()


async def find(
    service: FindService,
    data: bytes | None,
    *,
    model: str = STUDY_ROOT_QR_FIND,
    ts: str = IMPLICIT,
    command_model: str | None = None,
    recorder: Recorder | None = None,
    message_id: int = 7,
) -> Recorder:
    recorder = recorder or Recorder()
    context = PresentationContext(3, model, ts)
    rq = CFindRQ(message_id=message_id, affected_sop_class_uid=command_model or model)
    await service.handle(recorder, Incoming(context, rq, data))
    return recorder


def statuses(recorder: Recorder) -> list[int]:
    return [r.status for r in recorder.responses]


def test_serves_the_three_find_models_implicit_first() -> None:
    assert set(FindService.abstract_syntaxes) == set(QR_FIND_MODELS)
    assert all(ts[0] == IMPLICIT for ts in FindService.abstract_syntaxes.values())


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT])
async def test_pending_per_match_then_success(service: FindService, ts: str) -> None:
    data = identifier(ts, QueryRetrieveLevel="STUDY", PatientName="", StudyInstanceUID="")
    recorder = await find(service, data, ts=ts)
    assert statuses(recorder) == [0xFF00] * 4 + [0x0000]
    assert all(r.message_id_being_responded_to == 7 for r in recorder.responses)
    assert all(r.affected_sop_class_uid == STUDY_ROOT_QR_FIND for r in recorder.responses)
    assert recorder.sent[-1][2] is None  # no identifier with the final response
    found = recorder.identifiers(ts)
    assert {str(m.StudyInstanceUID) for m in found} == {f"1.2.8.{i}" for i in range(4)}
    assert all(m.QueryRetrieveLevel == "STUDY" and m.RetrieveAETitle == "FINDSCP" for m in found)
    assert {str(m.PatientName) for m in found} >= {"Müller^Jürgen", "Ōtani^Shōhei"}


async def test_no_match_is_a_lone_success(service: FindService) -> None:
    data = identifier(QueryRetrieveLevel="STUDY", PatientID="nobody", StudyInstanceUID="")
    assert statuses(await find(service, data)) == [0x0000]


async def test_latin1_request_gets_latin1_answers(service: FindService) -> None:
    data = identifier(
        SpecificCharacterSet="ISO_IR 100", QueryRetrieveLevel="STUDY", PatientName="MÜLLER*"
    )
    assert "Ü".encode("latin-1") in data
    recorder = await find(service, data)
    (answer,) = recorder.identifiers()
    assert answer.SpecificCharacterSet == "ISO_IR 100"
    assert str(answer.PatientName) == "Müller^Jürgen"
    assert "ü".encode("latin-1") in (recorder.sent[0][2] or b"")


async def test_latin1_request_gets_utf8_for_what_latin1_cannot_carry(service: FindService) -> None:
    data = identifier(
        SpecificCharacterSet="ISO_IR 100", QueryRetrieveLevel="STUDY", PatientName="?tani*"
    )
    (answer,) = (await find(service, data)).identifiers()
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert str(answer.PatientName) == "Ōtani^Shōhei"


def test_response_charset_choice() -> None:
    match = Match([(0x00100010, "PN", "Doe^John")])
    assert response_charset(match, ()) is None
    assert response_charset(match, ("ISO_IR 100",)) == "ISO_IR 100"
    match = Match([(0x00100010, "PN", "Müller")])
    assert response_charset(match, ()) == "ISO_IR 192"
    assert response_charset(match, ("ISO_IR 100",)) == "ISO_IR 100"
    assert response_charset(match, ("ISO_IR 192",)) == "ISO_IR 192"
    assert response_charset(Match([(0x00100010, "PN", "Ōtani")]), ("ISO_IR 100",)) == "ISO_IR 192"


async def test_unsupported_key_answers_ff01(service: FindService) -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = "1.2.8.0"
    ds.add_new(0x00280010, "US", 512)  # Rows as a matching key: not supported
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = True, True
    write_dataset(fp, ds)
    recorder = await find(service, fp.getvalue())
    assert statuses(recorder) == [0xFF01, 0x0000]


@pytest.mark.parametrize(
    ("model", "keys", "status", "offending"),
    [
        (STUDY_ROOT_QR_FIND, {"PatientName": "*"}, 0xA900, 0x00080052),
        (STUDY_ROOT_QR_FIND, {"QueryRetrieveLevel": "PATIENT"}, 0xA900, 0x00080052),
        (STUDY_ROOT_QR_FIND, {"QueryRetrieveLevel": "STUDY", "Modality": "CT"}, 0xA900, 0x00080060),
        (PATIENT_ROOT_QR_FIND, {"QueryRetrieveLevel": "STUDY"}, 0xA900, 0x00100020),
        (
            STUDY_ROOT_QR_FIND,
            {"QueryRetrieveLevel": "STUDY", "StudyDate": "2024-1"},
            0xC001,
            0x00080020,
        ),
    ],
)
async def test_wrong_requests_fail_with_the_standard_status(
    service: FindService, model: str, keys: dict[str, str], status: int, offending: int
) -> None:
    recorder = await find(service, identifier(**keys), model=model)
    (final,) = recorder.responses
    assert final.status == status
    assert final.offending_element == (offending,)
    assert final.error_comment and len(final.error_comment) <= 64
    # the next request on the same service is answered normally
    ok = identifier(QueryRetrieveLevel="STUDY", PatientID="P0")
    assert statuses(await find(service, ok)) == [0xFF00, 0x0000]


async def test_unparsable_identifier_is_c001(service: FindService) -> None:
    recorder = await find(service, b"\x08\x00\x52\x00\x40\x00\x00\x00STUDY")
    assert statuses(recorder) == [0xC001]
    assert statuses(await find(service, None)) == [0xA900]


def test_every_identifier_problem_has_its_find_status() -> None:
    assert set(FIND_FAILURE) == set(QueryProblem)
    assert set(FIND_FAILURE.values()) == {0xA900, 0xC001}


# The identifiers of tests/storage/test_query.py::NOT_FITTING, with the status C-FIND answers.
@pytest.mark.parametrize(
    ("model", "level", "keys", "status"),
    [
        (STUDY_ROOT_QR_FIND, None, {"PatientName": ""}, 0xA900),
        (STUDY_ROOT_QR_FIND, "PATIENT", {"PatientName": ""}, 0xA900),
        (STUDY_ROOT_QR_FIND, "WHATEVER", {}, 0xA900),
        (
            PATIENT_STUDY_ONLY_QR_FIND,
            "SERIES",
            {"PatientID": "P1", "StudyInstanceUID": "9.1"},
            0xA900,
        ),
        (PATIENT_ROOT_QR_FIND, "STUDY", {"StudyInstanceUID": ""}, 0xA900),
        (PATIENT_ROOT_QR_FIND, "STUDY", {"PatientID": "P*"}, 0xA900),
        (STUDY_ROOT_QR_FIND, "SERIES", {"StudyInstanceUID": "9.1\\9.2"}, 0xA900),
        (STUDY_ROOT_QR_FIND, "STUDY", {"Modality": "CT"}, 0xA900),
        (STUDY_ROOT_QR_FIND, "STUDY", {"SOPInstanceUID": ""}, 0xA900),
        (PATIENT_ROOT_QR_FIND, "PATIENT", {"StudyDate": ""}, 0xA900),
        (STUDY_ROOT_QR_FIND, "STUDY", {"StudyDate": "2024-01-01"}, 0xC001),
        (STUDY_ROOT_QR_FIND, "STUDY", {"SpecificCharacterSet": "ISO_IR 999"}, 0xC001),
    ],
)
async def test_requests_that_do_not_fit_the_model_answer_their_status(
    service: FindService, model: str, level: str | None, keys: dict[str, str], status: int
) -> None:
    level_key = {} if level is None else {"QueryRetrieveLevel": level}
    recorder = await find(service, identifier(**level_key, **keys), model=model)
    (final,) = recorder.responses
    assert final.status == status
    assert final.offending_element or status == 0xA900


async def test_garbage_identifier_is_a900_or_c001(service: FindService) -> None:
    recorder = await find(service, b"\x08\x00\x52\x00\xff\xff\x00\x00STUDY")
    assert statuses(recorder) in ([0xA900], [0xC001])


async def test_command_sop_class_must_be_the_contexts(service: FindService) -> None:
    data = identifier(QueryRetrieveLevel="STUDY")
    recorder = await find(service, data, command_model="1.2.3.4.5")
    assert statuses(recorder) == [0x0122]


@pytest.mark.parametrize("content", [None, b"this is not an SQLite database" * 100])
async def test_index_failure_is_out_of_resources(
    tmp_path: Path, archive: Archive, content: bytes | None
) -> None:
    path = tmp_path / "broken.sqlite3"
    if content is not None:
        path.write_bytes(content)
    broken = FindService(archive, Config(), catalog=SQLiteCatalog(path))
    recorder = await find(broken, identifier(QueryRetrieveLevel="STUDY"))
    await broken.close()
    assert statuses(recorder) == [0xA700]


async def many_studies(archive: Archive, count: int) -> None:
    rows = []
    for i in range(count):
        ds = make_dataset(f"2.9.{i}", study=f"2.8.{i}", series=f"2.8.{i}.1", patient_id="BULK")
        row = row_from_dataset(
            ds,
            sop_instance_uid=f"2.9.{i}",
            sop_class_uid=ds.SOPClassUID,
            transfer_syntax_uid=IMPLICIT,
            size=1,
            received_at="now",
            calling_ae="T",
        )
        rows.append(row)
    await archive.index.add(rows)


async def test_cancel_stops_with_fe00(service: FindService, archive: Archive) -> None:
    await many_studies(archive, 300)
    data = identifier(QueryRetrieveLevel="STUDY", PatientID="BULK", StudyInstanceUID="")
    recorder = await find(service, data, recorder=Recorder(cancel_after=5))
    assert statuses(recorder) == [0xFF00] * 5 + [0xFE00]
    assert recorder.cancelled == set()  # the Message ID is free again


async def test_cancel_before_the_first_match(service: FindService, archive: Archive) -> None:
    await many_studies(archive, 10)
    recorder = Recorder()
    recorder.cancelled.add(7)
    data = identifier(QueryRetrieveLevel="STUDY", PatientID="BULK")
    assert statuses(await find(service, data, recorder=recorder)) == [0xFE00]


async def test_cancel_of_another_message_is_ignored(service: FindService) -> None:
    recorder = Recorder()
    recorder.cancelled.add(99)
    data = identifier(QueryRetrieveLevel="STUDY", PatientID="P1")
    assert statuses(await find(service, data, recorder=recorder)) == [0xFF00, 0x0000]
