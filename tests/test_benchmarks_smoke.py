"""The benchmark scripts run end to end in their ``--quick`` form.

No timing is asserted here (speed goals are judged by the benchmarks' ratios,
run side by side, never by the test suite): only that each script exits 0,
prints a row for every server and reports no error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SERVERS = ("stellarpacs", "dcmtk", "pynetdicom", "orthanc")
RUN_TIMEOUT = 60.0


def _run(script: str, *flags: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", *flags],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ERROR" not in done.stdout, done.stdout
    return done.stdout


def _rows(output: str, server: str) -> list[str]:
    return [line for line in output.splitlines() if line.split()[:1] == [server]]


def _assert_every_server_has_a_row(output: str, tables: int) -> None:
    for server in SERVERS:
        rows = _rows(output, server)
        assert len(rows) == tables, (server, output)
        for row in rows:
            assert " ok " in row or "not installed" in row, row


def test_echo_cycles_quick_runs_every_server(tmp_path: Path) -> None:
    output = _run("echo_cycles.py", "--aio-client", "--results-dir", str(tmp_path))
    _assert_every_server_has_a_row(output, tables=1)
    assert "aim StellarPACS/dcmtk >= 0.3x" in output
    (saved,) = tmp_path.glob("echo_cycles-*.json")
    servers = json.loads(saved.read_text())["servers"]
    assert set(servers) == set(SERVERS)
    assert servers["stellarpacs"]["lean_median_cycles_per_s"] > 0
    assert servers["stellarpacs"]["aio_median_cycles_per_s"] > 0


def test_store_throughput_quick_runs_every_server_and_scenario(tmp_path: Path) -> None:
    flags = ("--results-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache"))
    output = _run("store_throughput.py", *flags)
    _assert_every_server_has_a_row(output, tables=3)
    assert "StellarPACS fsyncs each instance" in output
    (saved,) = tmp_path.glob("store_throughput-*.json")
    scenarios = json.loads(saved.read_text())["scenarios"]
    assert set(scenarios) == {"small", "parallel", "large"}
    for scenario in scenarios.values():
        assert scenario["servers"]["stellarpacs"]["instances_per_s"] > 0
        assert scenario["servers"]["stellarpacs"]["fsync"] is True


def test_find_latency_quick_runs_every_server_and_query(tmp_path: Path) -> None:
    flags = ("--results-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache"))
    output = _run("find_latency.py", *flags)
    _assert_every_server_has_a_row(output, tables=4)
    (saved,) = tmp_path.glob("find_latency-*.json")
    servers = json.loads(saved.read_text())["servers"]
    assert set(servers) == set(SERVERS)
    assert set(servers["stellarpacs"]) == {"patient-id", "name-prefix", "name-infix", "date-range"}
