"""The audit trail of a real run (issue 12, item 4): one JSON line per event, in order.

``python -m stellarpacs serve`` runs as a process with ``[audit] file``;
dcmtk's tools associate, store, query, move (to a dcmtk storescp) and are
rejected; SIGTERM stops the server; then ``storage delete`` adds its line.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from stellarpacs import uids
from tests.integration.find_fixtures import findscu
from tests.integration.peers import HOST, SERVER_AE, echoscu
from tests.integration.retrieve_fixtures import movescu, storescp, storescu
from tests.integration.storage_fixtures import synthetic_dataset, write_part10
from tests.integration.test_cli import cli, serving

CT = "1.2.840.10008.5.1.4.1.1.2"


def read_trail(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="ascii").splitlines()
    return [json.loads(line) for line in lines]


def two_instances(folder: Path) -> tuple[str, list[Path], list[str]]:
    folder.mkdir()
    study = generate_uid()
    paths, sops = [], []
    for index in range(2):
        ds = synthetic_dataset(CT, index, patient_id="AUDIT1", study_uid=study)
        paths.append(write_part10(ds, folder / f"{index}.dcm", ExplicitVRLittleEndian))
        sops.append(str(ds.SOPInstanceUID))
    return study, paths, sops


def config_file(tmp_path: Path, audit: Path, dest_port: int) -> Path:
    config = tmp_path / "stellarpacs.toml"
    config.write_text(
        f'[audit]\nfile = "{audit}"\n\n[remotes.DEST]\nhost = "{HOST}"\nport = {dest_port}\n'
    )
    return config


def assert_times_in_order(trail: list[dict[str, Any]]) -> None:
    stamps = [datetime.fromisoformat(entry["time"]) for entry in trail]
    assert all(entry["time"].endswith("Z") for entry in trail)
    assert stamps == sorted(stamps)


EXPECTED = [
    "configuration-loaded",
    "application-started",
    "association-accepted",  # storescu
    "instance-stored",
    "instance-stored",
    "association-released",
    "association-accepted",  # findscu
    "query",
    "association-released",
    "association-accepted",  # movescu
    "retrieve",
    "association-released",
    "association-rejected",  # echoscu -aec WRONG
    "application-stopped",
    "study-deleted",  # storage delete, another process
]


@pytest.mark.interop
async def test_a_run_leaves_one_line_per_event_in_order(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    storage = tmp_path / "storage"
    study, paths, sops = two_instances(tmp_path / "in")
    async with storescp(tmp_path / "dest") as dest_port:
        config = config_file(tmp_path, audit, dest_port)
        args = ("serve", "--config", str(config), "--host", HOST, "--storage", str(storage))
        async with serving(*args) as server:
            assert (await storescu(server.port, SERVER_AE, paths)).returncode == 0
            so_far = [entry["event"] for entry in read_trail(audit)]
            assert so_far == EXPECTED[:6]  # in the file already: written as they happen
            keys = ["QueryRetrieveLevel=STUDY", "PatientID=AUDIT1", "StudyInstanceUID"]
            found = await findscu(server.port, "study", keys, tmp_path / "find")
            assert found.returncode == 0 and len(found.matches) == 1
            moved = await movescu(
                server.port, "study", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": study}
            )
            assert moved.returncode == 0, moved.stderr
            assert (await echoscu(server.port, "WRONG")).returncode != 0
            assert await server.stop() == 0
    deleted = await cli("storage", "delete", study, "--yes", "--config", str(config),
                        "--storage", str(storage))  # fmt: skip
    assert deleted.returncode == 0, deleted.stderr

    trail = read_trail(audit)
    assert [entry["event"] for entry in trail] == EXPECTED
    assert_times_in_order(trail)
    loaded, started, accepted = trail[0], trail[1], trail[2]
    assert loaded["file"] == str(config) and len(loaded["sha256"]) == 64
    assert set(loaded["overrides"]) == {"host", "storage", "port"}
    assert started["ae_title"] == SERVER_AE and started["port"] == server.port
    assert accepted["calling_ae"] == "STORESCU" and accepted["called_ae"] == SERVER_AE
    assert accepted["peer_host"] == HOST and CT in accepted["contexts"]
    assert accepted["user"] is None and accepted["outcome"] == "success"

    stored = trail[3:5]
    assert [s["sop_instance_uid"] for s in stored] == sops
    for entry in stored:
        assert entry["sop_class_uid"] == CT and entry["study_instance_uid"] == study
        assert entry["calling_ae"] == "STORESCU" and entry["status"] == 0
        assert entry["patient_id"] == "AUDIT1" and entry["outcome"] == "success"
    assert trail[5]["requests"] == 2 and trail[5]["outcome"] == "success"

    query = trail[7]
    assert query["sop_class_uid"] == uids.QR_FIND_MODELS[1]  # Study Root
    assert query["level"] == "STUDY" and query["matches"] == 1 and query["status"] == 0
    assert query["keys"]["PatientID"] == "AUDIT1" and query["keys"]["StudyInstanceUID"] == ""
    assert "identifier" not in query

    retrieve = trail[10]
    assert retrieve["operation"] == "C-MOVE" and retrieve["destination"] == "DEST"
    assert retrieve["keys"]["StudyInstanceUID"] == study and retrieve["studies"] == [study]
    assert (retrieve["completed"], retrieve["failed"], retrieve["warning"]) == (2, 0, 0)
    assert retrieve["calling_ae"] == "MOVESCU" and retrieve["outcome"] == "success"

    rejected = trail[12]
    assert rejected["called_ae"] == "WRONG" and rejected["calling_ae"] == "ECHOSCU"
    assert (rejected["result"], rejected["source"], rejected["reason"]) == (1, 1, 7)
    assert rejected["reason_text"] == "called AE title not recognized"
    assert rejected["outcome"] == "minor failure"

    assert trail[13]["reason"] == "signal"
    gone = trail[14]
    assert gone["study_instance_uid"] == study and gone["instances"] == 2
    assert gone["storage"] == str(storage) and gone["user"] and gone["outcome"] == "success"


async def test_a_delete_that_finds_nothing_is_audited_as_a_failure(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    storage = tmp_path / "storage"
    config = tmp_path / "c.toml"
    config.write_text(f'[audit]\nfile = "{audit}"\n')
    storage.mkdir()
    build = await cli("storage", "reindex", "--storage", str(storage), "--config", str(config))
    assert build.returncode == 0, build.stderr  # an empty index
    result = await cli("storage", "delete", "1.2.3", "--yes", "--config", str(config),
                       "--storage", str(storage))  # fmt: skip
    assert result.returncode == 1, result.stderr
    (entry,) = read_trail(audit)
    assert entry["event"] == "study-deleted" and entry["instances"] == 0
    assert entry["outcome"] == "minor failure"


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[audit]\nsyslog = "ftp://x"\n', "'audit.syslog' must be udp://host:port"),
        ('[audit]\nfile = "/nonexistent-folder/audit.jsonl"\n', "'audit.file' cannot be opened"),
        ('[audit]\ncolour = "blue"\n', "'audit.colour' is not a key of [audit]"),
        ("audit = 3\n", "'audit' must be a table"),
        (
            '[audit]\nsyslog = "tls://127.0.0.1"\nsyslog_ca_file = "/nonexistent/ca.pem"\n',
            "'audit.syslog_ca_file' is not a readable file",
        ),
    ],
    ids=["ftp-syslog", "unwritable-file", "unknown-key", "not-a-table", "missing-ca-file"],
)
async def test_a_bad_audit_configuration_is_one_line_and_exit_2(
    tmp_path: Path, toml: str, named: str
) -> None:
    config = tmp_path / "stellarpacs.toml"
    config.write_text(toml)
    result = await cli("serve", "--config", str(config), "--storage", str(tmp_path / "data"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert named in lines[0]
    assert not (tmp_path / "data").exists()
