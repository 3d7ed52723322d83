"""``python -m stellarpacs storage ...``: the storage tools on the command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stellarpacs.cli import main
from stellarpacs.storage.archive import Archive
from stellarpacs.storage.records import InstanceRecord, StoreResult
from tests.storage.dicomdata import encode, make_dataset, store

_PLAN = (
    # study, series, sop, patient id, name, modality
    ("1.1", "1.1.1", "1.1.1.1", "P1", "Doe^Jane", "CT"),
    ("1.1", "1.1.1", "1.1.1.2", "P1", "Doe^Jane", "CT"),
    ("1.1", "1.1.2", "1.1.2.1", "P1", "Doe^Jane", "SR"),
    ("2.2", "2.2.1", "2.2.1.1", "P2", "Roe^Rick", "MR"),
)


async def _fill(root: Path) -> list[InstanceRecord]:
    records = []
    async with Archive(root, fsync=False) as archive:
        for study, series, sop, pid, name, modality in _PLAN:
            ds = make_dataset(
                sop,
                study=study,
                series=series,
                patient_id=pid,
                patient_name=name,
                modality=modality,
            )
            ds.StudyDescription = f"Study {study}"
            outcome = await store(archive, encode(ds), sop_uid=sop, calling_ae="CT01")
            assert outcome.result == StoreResult.STORED and outcome.record is not None
            records.append(outcome.record)
    return records


@pytest.fixture
async def filled(root: Path) -> list[InstanceRecord]:
    return await _fill(root)


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["storage", *(str(a) for a in args)])
    out, err = capsys.readouterr()
    return code, out, err


def create_empty_archive(root: Path) -> None:
    """Create an empty archive (layout and index)."""

    async def create() -> None:
        async with Archive(root, fsync=False):
            pass

    asyncio.run(create())


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- stats and list ----------------------------------------------------------------------------


def test_stats_prints_counts_per_level_and_bytes(
    capsys: pytest.CaptureFixture[str], root: Path, filled: list[InstanceRecord]
) -> None:
    code, out, _ = run(capsys, "stats", "--storage", root)
    assert code == 0
    fields = dict(line.split(None, 1) for line in out.strip().splitlines())
    total = sum(r.size for r in filled)
    assert fields["patients"] == "2" and fields["studies"] == "2"
    assert fields["series"] == "3" and fields["instances"] == "4"
    assert fields["bytes"].startswith(f"{total} (")
    code, out, _ = run(capsys, "stats", "--storage", root, "--json")
    assert json.loads(out) == {
        "patients": 2,
        "studies": 2,
        "series": 3,
        "instances": 4,
        "bytes": total,
    }


def test_list_shows_one_line_per_study(
    capsys: pytest.CaptureFixture[str], root: Path, filled: list[InstanceRecord]
) -> None:
    code, out, _ = run(capsys, "list", "--storage", root)
    assert code == 0
    header, first, second = out.strip().splitlines()
    assert header.split()[:2] == ["PATIENT", "ID"]
    assert first.split() == ["P1", "Doe^Jane", "20240131", "Study", "1.1", "1.1", "2", "3"]
    assert second.split() == ["P2", "Roe^Rick", "20240131", "Study", "2.2", "2.2", "1", "1"]


def test_list_json(
    capsys: pytest.CaptureFixture[str], root: Path, filled: list[InstanceRecord]
) -> None:
    code, out, _ = run(capsys, "list", "--json", "--storage", root)
    assert code == 0
    studies = json.loads(out)
    assert [s["study_instance_uid"] for s in studies] == ["1.1", "2.2"]
    first = studies[0]
    assert (first["patient_id"], first["patient_name"], first["study_date"]) == (
        "P1",
        "Doe^Jane",
        "20240131",
    )
    assert first["study_description"] == "Study 1.1"
    assert (first["series_count"], first["instance_count"]) == (2, 3)
    assert first["modalities"] == ["CT", "SR"]
    assert first["size"] == sum(r.size for r in filled[:3])


def test_list_of_an_empty_archive(capsys: pytest.CaptureFixture[str], root: Path) -> None:
    create_empty_archive(root)
    code, out, _ = run(capsys, "list", "--storage", root)
    assert (code, out) == (0, "no studies\n")
    code, out, _ = run(capsys, "list", "--storage", root, "--json")
    assert (code, json.loads(out)) == (0, [])


# -- verify ------------------------------------------------------------------------------------


def test_verify_a_clean_archive_exits_0(
    capsys: pytest.CaptureFixture[str], root: Path, filled: list[InstanceRecord]
) -> None:
    code, out, _ = run(capsys, "verify", "--storage", root)
    assert code == 0
    assert out == "checked 4 index rows and 4 files: 0 problems\n"


def test_verify_prints_each_problem_and_exits_1(
    capsys: pytest.CaptureFixture[str], root: Path, filled: list[InstanceRecord]
) -> None:
    (root / filled[0].path).unlink()
    stray = root / "studies" / "9.9" / "9.9.1" / "9.9.1.1.dcm"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"junk")
    code, out, _ = run(capsys, "verify", "--storage", root)
    assert code == 1
    lines = out.strip().splitlines()
    assert f"missing file: {filled[0].path} ({filled[0].sop_instance_uid})" in lines
    assert "file not in the index: studies/9.9/9.9.1/9.9.1.1.dcm" in lines
    assert lines[-1] == "checked 4 index rows and 4 files: 2 problems"


# -- reindex -----------------------------------------------------------------------------------


def _drop_index(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (root / f"index.sqlite3{suffix}").unlink(missing_ok=True)


def test_reindex_rebuilds_with_a_progress_bar(
    capsys: pytest.CaptureFixture[str], root: Path, filled: list[InstanceRecord]
) -> None:
    _drop_index(root)
    code, out, err = run(capsys, "reindex", "--storage", root)
    assert code == 0
    assert out == "indexed 4 instances (0 duplicates, 0 files skipped)\n"
    assert err.startswith("\rreindexing [")
    assert err.endswith("] 4/4\n")
    assert "#" * 30 in err.splitlines()[-1]
    assert err.count("\n") == 1  # drawn in place
    code, out, _ = run(capsys, "stats", "--storage", root, "--json")
    assert json.loads(out)["instances"] == 4
    assert run(capsys, "verify", "--storage", root)[0] == 0


def test_reindex_reports_skipped_files_and_exits_1(
    capsys: pytest.CaptureFixture[str], root: Path, filled: list[InstanceRecord]
) -> None:
    (root / "studies" / "junk.dcm").write_bytes(b"not dicom at all")
    code, out, _ = run(capsys, "reindex", "--storage", root)
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0].startswith("skipped studies/junk.dcm: ")
    assert lines[-1] == "indexed 4 instances (0 duplicates, 1 files skipped)"


def test_reindex_of_an_empty_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "reindex", "--storage", tmp_path)
    assert (code, err) == (0, "")
    assert out == "indexed 0 instances (0 duplicates, 0 files skipped)\n"
    assert (tmp_path / "index.sqlite3").is_file()


# -- delete ------------------------------------------------------------------------------------


def test_delete_refuses_without_yes(
    capsys: pytest.CaptureFixture[str], root: Path, filled: list[InstanceRecord]
) -> None:
    code, out, err = run(capsys, "delete", "1.1", "--storage", root)
    assert code == 2 and out == ""
    assert "without --yes" in one_line_error(err)
    assert all((root / r.path).is_file() for r in filled)


def test_delete_with_yes_removes_the_study(
    capsys: pytest.CaptureFixture[str], root: Path, filled: list[InstanceRecord]
) -> None:
    code, out, _ = run(capsys, "delete", "1.1", "--yes", "--storage", root)
    assert (code, out) == (0, "deleted study 1.1: 3 instances\n")
    assert not (root / "studies" / "1.1").exists()
    assert (root / filled[3].path).is_file()
    code, out, _ = run(capsys, "list", "--json", "--storage", root)
    assert [s["study_instance_uid"] for s in json.loads(out)] == ["2.2"]
    assert run(capsys, "verify", "--storage", root)[0] == 0


def test_delete_of_an_unknown_study_fails(
    capsys: pytest.CaptureFixture[str], root: Path, filled: list[InstanceRecord]
) -> None:
    code, _, err = run(capsys, "delete", "7.7", "--yes", "--storage", root)
    assert code == 1
    assert one_line_error(err) == "stellarpacs storage: no instance of study 7.7 in the index"


# -- where the storage is, and errors --------------------------------------------------------


def test_config_file_names_the_storage_and_the_flag_wins(
    capsys: pytest.CaptureFixture[str], root: Path, filled: list[InstanceRecord], tmp_path: Path
) -> None:
    config = tmp_path / "pacs.toml"
    config.write_text(f'storage = "{root}"\n')
    code, out, _ = run(capsys, "stats", "--json", "--config", config)
    assert code == 0 and json.loads(out)["instances"] == 4
    empty = tmp_path / "other"
    empty.mkdir()
    code, _, err = run(capsys, "stats", "--config", config, "--storage", empty)
    assert code == 1 and "no index at" in one_line_error(err)


def test_default_storage_is_relative_to_the_working_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    create_empty_archive(tmp_path / "stellarpacs-data")
    code, out, _ = run(capsys, "stats", "--json")
    assert code == 0 and json.loads(out)["instances"] == 0


@pytest.mark.parametrize("tool", ["stats", "list", "verify", "reindex", "delete"])
def test_a_missing_storage_folder_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, tool: str
) -> None:
    extra = ["1.2", "--yes"] if tool == "delete" else []
    code, _, err = run(capsys, tool, *extra, "--storage", tmp_path / "nowhere")
    assert code == 1
    expected = f"stellarpacs storage: storage directory not found: {tmp_path / 'nowhere'}"
    assert one_line_error(err) == expected
    assert not (tmp_path / "nowhere").exists()


def test_a_folder_without_index_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "verify", "--storage", tmp_path)
    assert code == 1
    assert "no index at" in one_line_error(err)
    assert not (tmp_path / "index.sqlite3").exists()  # a read-only tool creates nothing


def test_a_corrupt_index_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "index.sqlite3").write_bytes(b"this is not an SQLite database" * 100)
    code, _, err = run(capsys, "stats", "--storage", tmp_path)
    assert code == 1
    line = one_line_error(err)
    assert line.startswith(f"stellarpacs storage: index under {tmp_path}: ")


def test_a_bad_config_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("storage = 42\n")
    code, _, err = run(capsys, "stats", "--config", config)
    assert code == 2
    assert "configuration error" in one_line_error(err) and "storage" in err


def test_storage_without_a_tool_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["storage"])
    assert exit_info.value.code == 2
    assert "TOOL" in capsys.readouterr().err


def test_runs_as_python_dash_m(root: Path, filled: list[InstanceRecord]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stellarpacs", "storage", "stats", "--json", "--storage", root],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["instances"] == 4
