"""C-MOVE and C-GET with real peers: dcmtk's movescu, getscu, storescp, storescu, dcmqrscp
and pynetdicom, against an in-process StellarPACS (and our CLI against dcmqrscp).

The instances are first stored into StellarPACS by our own Storage SCU; "as first
stored" below means the data set bytes of those source files. dcmtk's storescp
runs bit-preserving (+B), so it writes the data set bytes it received.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    STUDY_ROOT_QR_GET,
    STUDY_ROOT_QR_MOVE,
)
from tests.integration.peers import Completed, assert_still_serves, run_process
from tests.integration.retrieve_fixtures import (
    SERVER_AE,
    WAIT,
    Instance,
    archive,
    check_counts,
    clear,
    client_for,
    dcmqrscp,
    getscu,
    make_instances,
    movescu,
    pynetdicom_get,
    received,
    received_datasets,
    remotes,
    responses_in,
    same_instance,
    storescp,
    storescu,
)

pytestmark = pytest.mark.interop

Keys = dict[str, str]

#: Unique key of each level (PS3.4 C.6.1.1, C.6.2.1).
UNIQUE = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
#: The levels of each movescu model, top down.
LEVELS = {
    "patient": ("PATIENT", "STUDY", "SERIES", "IMAGE"),
    "study": ("STUDY", "SERIES", "IMAGE"),
    "psonly": ("PATIENT", "STUDY"),
}
#: (model, level, patient whose first instance the identifier names): every level of each.
MOVES = [
    ("patient", "PATIENT", "P1"),
    ("patient", "STUDY", "P3"),
    ("patient", "SERIES", "P1"),
    ("patient", "IMAGE", "P2"),
    ("study", "STUDY", "P1"),
    ("study", "SERIES", "P3"),
    ("study", "IMAGE", "P3"),
    ("psonly", "PATIENT", "P2"),
    ("psonly", "STUDY", "P3"),
]


def _value(instance: Instance, keyword: str) -> str:
    return {
        "PatientID": instance.patient_id,
        "StudyInstanceUID": instance.study_uid,
        "SeriesInstanceUID": instance.series_uid,
        "SOPInstanceUID": instance.sop_instance_uid,
    }[keyword]


def hierarchical(
    model: str, level: str, patient: str, instances: list[Instance]
) -> tuple[Keys, list[Instance]]:
    """The identifier of a hierarchical retrieve (unique keys to ``level``), and its matches."""
    first = next(i for i in instances if i.patient_id == patient)
    levels = LEVELS[model]
    names = [UNIQUE[lv] for lv in levels[: levels.index(level) + 1]]
    keys = {"QueryRetrieveLevel": level, **{n: _value(first, n) for n in names}}
    wanted = [i for i in instances if all(_value(i, n) == keys[n] for n in names)]
    return keys, wanted


def _study_keys(instance: Instance) -> Keys:
    return {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": instance.study_uid}


def _identifier(keys: Keys) -> Dataset:
    ds = Dataset()
    for key, value in keys.items():
        setattr(ds, key, value)
    return ds


def _assert_ok(result: Completed) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


async def test_movescu_moves_every_level_of_every_model_byte_exact(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "source")
    out = tmp_path / "received"
    async with (
        storescp(out, "DEST", "+xa") as destination,
        archive(tmp_path / "archive", instances, remotes=remotes(DEST=destination)) as (
            server,
            _,
        ),
    ):
        for model, level, patient in MOVES:
            keys, wanted = hierarchical(model, level, patient, instances)
            clear(out)
            result = await movescu(server.port, model, keys)
            _assert_ok(result)
            got = received(out)
            assert set(got) == {i.sop_instance_uid for i in wanted}, (model, level)
            for instance in wanted:
                assert got[instance.sop_instance_uid] == instance.dataset(), (model, level)
            responses = responses_in(result.stdout + result.stderr)
            check_counts(responses, len(wanted))
            assert responses[-1].status == 0x0000, (model, level, responses[-1])


async def test_uncompressed_destination_gets_decompressed_pixels(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "source")
    compressed = [i for i in instances if i.compressed]
    assert len(compressed) == 3
    out = tmp_path / "received"
    async with (
        storescp(out, "DEST") as destination,  # dcmtk's default: uncompressed syntaxes only
        archive(tmp_path / "archive", instances, remotes=remotes(DEST=destination)) as (
            server,
            _,
        ),
    ):
        _assert_ok(await movescu(server.port, "study", _study_keys(compressed[0])))
    files = {str(dcmread(p).SOPInstanceUID): p for p in out.iterdir() if p.is_file()}
    assert set(files) == {i.sop_instance_uid for i in compressed}
    for instance in compressed:
        arrived = dcmread(files[instance.sop_instance_uid])
        syntax = arrived.file_meta.TransferSyntaxUID
        assert syntax in (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN), syntax
        original = dcmread(instance.path)
        assert np.array_equal(arrived.pixel_array, original.pixel_array), instance.path.name


async def test_down_destination_a702_unknown_a801_and_server_keeps_serving(
    tmp_path: Path,
) -> None:
    instances = make_instances(tmp_path / "source")
    study = instances[0]
    wanted = [i for i in instances if i.study_uid == study.study_uid]
    from tests.integration.storage_fixtures import free_port

    closed = free_port()  # nothing listens there
    async with archive(tmp_path / "archive", instances, remotes=remotes(DOWN=closed)) as (
        server,
        _,
    ):
        down = await movescu(server.port, "study", _study_keys(study), "DOWN")
        assert responses_in(down.stdout + down.stderr)[-1].status == 0xA702, down.stdout
        unknown = await movescu(server.port, "study", _study_keys(study), "NOBODY")
        assert responses_in(unknown.stdout + unknown.stderr)[-1].status == 0xA801, unknown.stdout

        client = await client_for(server.port)
        async with client:
            stream = client.move(STUDY_ROOT_QR_MOVE, _identifier(_study_keys(study)), "DOWN")
            answers = [r async for r in stream]
        assert [a.status for a in answers] == [0xA702]
        assert answers[0].failed == len(wanted)
        assert set(answers[0].failed_sop_instance_uids) == {i.sop_instance_uid for i in wanted}
        await assert_still_serves(server.port)


async def test_getscu_and_pynetdicom_get_the_same_instances(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "source")
    studies = {i.study_uid for i in instances if i.patient_id in ("P1", "P3")}
    async with archive(tmp_path / "archive", instances) as (server, _):
        for study in sorted(studies):
            wanted = {i.sop_instance_uid: i for i in instances if i.study_uid == study}
            keys = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}
            folder = tmp_path / f"getscu-{len(wanted)}"
            result = await getscu(server.port, "study", keys, folder)
            _assert_ok(result)
            by_getscu = received_datasets(folder)
            classes = sorted({i.sop_class_uid for i in wanted.values()})
            status, by_pynetdicom = await pynetdicom_get(
                server.port, STUDY_ROOT_QR_GET, keys, classes
            )
            assert status == 0x0000
            assert set(by_getscu) == set(by_pynetdicom) == set(wanted)
            # Both peers accept only uncompressed syntaxes and choose their own: the
            # instances arrive re-encoded where needed, with the same content.
            for uid, instance in wanted.items():
                assert same_instance(by_getscu[uid], instance), instance.path.name
                assert same_instance(by_pynetdicom[uid], instance), instance.path.name


async def test_cancel_during_a_long_move_stops_the_suboperations(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "source", big_study=200)
    big = [i for i in instances if i.patient_id == "P4"]
    out = tmp_path / "received"
    async with (
        storescp(out, "DEST") as destination,
        archive(tmp_path / "archive", instances, remotes=remotes(DEST=destination)) as (
            server,
            _,
        ),
    ):
        client = await client_for(server.port)
        async with client:
            async with client.move(
                STUDY_ROOT_QR_MOVE, _identifier(_study_keys(big[0])), "DEST"
            ) as stream:
                async for response in stream:
                    assert response.pending
                    break
            final = stream.final
            assert final is not None and final.status == 0xFE00, final
            assert final.completed is not None and final.remaining is not None
            assert 1 <= final.completed < len(big), final
            assert final.completed + (final.failed or 0) + final.remaining == len(big)
            assert len(received(out)) == final.completed
            assert await client.echo() == 0  # the association is usable again

        clear(out)
        result = await movescu(server.port, "study", _study_keys(big[0]), "DEST", "--cancel", "1")
        responses = responses_in(result.stdout + result.stderr)
        assert responses[-1].status == 0xFE00, result.stdout[-2000:]
        assert (responses[-1].completed or 0) < len(big)
        await assert_still_serves(server.port)


# --- the command line -------------------------------------------------------------------


async def cli(*args: str) -> Completed:
    return await run_process(sys.executable, "-m", "stellarpacs", *args, timeout=WAIT * 2)


async def test_store_cli_sends_a_mixed_folder_to_storescp_and_to_stellarpacs(
    tmp_path: Path,
) -> None:
    instances = make_instances(tmp_path / "source")
    (tmp_path / "source" / "notes.txt").write_text("not DICOM")
    out = tmp_path / "received"
    async with storescp(out, "DEST", "+xa") as port:
        result = await cli(
            "store", "127.0.0.1", str(port), str(tmp_path / "source"), "--aec", "DEST"
        )
    assert f"{len(instances)} of {len(instances)} files stored" in result.stdout, result.stdout
    assert "notes.txt" in result.stderr  # listed as skipped, so the exit status is 1
    got = received(out)
    assert got == {i.sop_instance_uid: i.dataset() for i in instances}

    async with archive(tmp_path / "archive", []) as (server, store):
        result = await cli(
            "store", "127.0.0.1", str(server.port), str(tmp_path / "source"), "--aec", SERVER_AE
        )
        assert f"{len(instances)} of {len(instances)} files stored" in result.stdout
        for instance in instances:
            record = await store.index.get_instance(instance.sop_instance_uid)
            assert record is not None, instance.path.name


async def test_move_and_get_cli_against_stellarpacs(tmp_path: Path) -> None:
    instances = make_instances(tmp_path / "source")
    study = [i for i in instances if i.patient_id == "P1"]
    out = tmp_path / "received"
    async with (
        storescp(out, "DEST", "+xa") as destination,
        archive(tmp_path / "archive", instances, remotes=remotes(DEST=destination)) as (
            server,
            _,
        ),
    ):
        keys = ["-k", f"StudyInstanceUID={study[0].study_uid}"]
        common = ["127.0.0.1", str(server.port), "--aec", SERVER_AE, *keys]
        moved = await cli("move", *common, "--dest", "DEST")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert moved.stdout.startswith("pending: 0xFF00 4 remaining, 1 completed"), moved.stdout
        assert f"{len(study)} completed, 0 failed" in moved.stdout
        assert received(out) == {i.sop_instance_uid: i.dataset() for i in study}

        fetched = await cli("get", *common, "--output", str(tmp_path / "got"))
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        assert received(tmp_path / "got") == {i.sop_instance_uid: i.dataset() for i in study}

        refused = await cli("move", *common, "--dest", "NOBODY")
        assert refused.returncode == 1
        assert "0xA801" in refused.stdout


async def test_move_and_get_cli_against_dcmqrscp(tmp_path: Path) -> None:
    instances = [i for i in make_instances(tmp_path / "source") if not i.compressed]
    study = [i for i in instances if i.patient_id == "P1"]
    out = tmp_path / "received"
    async with (
        storescp(out, "DEST") as destination,
        dcmqrscp(tmp_path / "qr", {"DEST": destination}) as qr_port,
    ):
        _assert_ok(await storescu(qr_port, "QRSCP", [i.path for i in instances]))
        keys = ["-k", f"StudyInstanceUID={study[0].study_uid}"]
        common = ["127.0.0.1", str(qr_port), "--aec", "QRSCP", *keys]
        moved = await cli("move", *common, "--dest", "DEST")
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert f"{len(study)} completed, 0 failed" in moved.stdout
        assert set(received(out)) == {i.sop_instance_uid for i in study}

        fetched = await cli("get", *common, "--output", str(tmp_path / "got"))
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        assert set(received(tmp_path / "got")) == {i.sop_instance_uid for i in study}
