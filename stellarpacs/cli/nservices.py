"""The command line of the DIMSE-N services: client commands, to test other archives.

* ``commit HOST PORT PATH... --listen-port N``: ask for storage commitment of
  the files' instances and print the result (exit 0 only for event type 1);
* ``mpps HOST PORT --patient-id ID --study UID [--final COMPLETED]``: N-CREATE
  an MPPS IN PROGRESS, then optionally N-SET it to its final status.

What this archive keeps of them is listed by ``storage mpps`` and ``storage
commitments`` (:mod:`stellarpacs.cli.storage`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset

from stellarpacs.aio.client import commit
from stellarpacs.aio.scu.contexts import ProposedContext
from stellarpacs.aio.scu.store import scan_paths
from stellarpacs.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Subparsers,
    add_peer_flags,
    connect_peer,
    run,
    tls_context,
)
from stellarpacs.commitment import CommitmentReport, FailureReason, SOPReference
from stellarpacs.dimse.status import describe
from stellarpacs.uids import MPPS

__all__ = ["mpps_attributes", "print_report", "register"]


# --- commit -------------------------------------------------------------------------------


def _reason(code: int) -> str:
    try:
        return FailureReason(code).name.lower().replace("_", " ")
    except ValueError:
        return describe(code)


def print_report(report: CommitmentReport) -> None:
    print(
        f"transaction {report.transaction_uid}: event type {report.event_type_id}, "
        f"{len(report.committed)} committed, {len(report.failed)} failed"
    )
    for failure in report.failed:
        print(
            f"FAILED {failure.reference.sop_instance_uid}: 0x{failure.reason:04X} "
            f"{_reason(failure.reason)}"
        )


def _references(args: argparse.Namespace) -> list[SOPReference]:
    items, skipped = scan_paths([Path(p) for p in args.paths])
    for path, why in skipped:
        print(f"skipped {path}: {why}", file=sys.stderr)
    refs = [SOPReference(i.sop_class_uid, i.sop_instance_uid) for i in items]
    for text in args.ref:
        sop_class, _, instance = text.partition("/")
        refs.append(SOPReference(sop_class, instance))
    return refs


async def _commit(args: argparse.Namespace) -> int:
    refs = await asyncio.to_thread(_references, args)
    if not refs:
        print("nothing to commit: no DICOM PS3.10 file and no --ref", file=sys.stderr)
        return EXIT_FAILED
    report = await commit(
        args.host,
        args.port,
        refs,
        called_ae=args.aec,
        calling_ae=args.aet,
        listen_port=args.listen_port,
        listen_host=args.listen_host,
        timeout=args.timeout,
        connect_timeout=args.timeout,
        dimse_timeout=args.timeout,
        tls=tls_context(args),
    )
    print_report(report)
    return EXIT_OK if report.event_type_id == 1 else EXIT_FAILED


def cmd_commit(args: argparse.Namespace) -> int:
    return run(_commit(args))


# --- mpps ---------------------------------------------------------------------------------


def mpps_attributes(
    patient_id: str, study_uid: str, modality: str, *, now: datetime | None = None
) -> Dataset:
    """A minimal N-CREATE attribute list, IN PROGRESS (PS3.4 Table F.7.2-1, type 1 keys)."""
    when = now or datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    step = Dataset()
    step.StudyInstanceUID = study_uid
    step.AccessionNumber = ""
    ds.ScheduledStepAttributesSequence = [step]
    ds.PatientName = ""
    ds.PatientID = patient_id
    ds.PerformedProcedureStepID = when.strftime("%H%M%S%f")[:16]
    ds.PerformedStationAETitle = "STELLARPACS"
    ds.PerformedProcedureStepStartDate = when.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = when.strftime("%H%M%S")
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.Modality = modality
    ds.PerformedSeriesSequence = []
    return ds


def _final_modifications(status: str, series: Sequence[str]) -> Dataset:
    when = datetime.now()
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = when.strftime("%Y%m%d")
    ds.PerformedProcedureStepEndTime = when.strftime("%H%M%S")
    items = []
    for uid in series:
        item = Dataset()
        item.SeriesInstanceUID = uid
        item.ReferencedImageSequence = []
        items.append(item)
    ds.PerformedSeriesSequence = items
    return ds


async def _mpps(args: argparse.Namespace) -> int:
    client = await connect_peer(args, [ProposedContext(MPPS)])
    async with client:
        attributes = mpps_attributes(args.patient_id, args.study, args.modality)
        created = await client.n_create(MPPS, attributes, sop_instance_uid=args.uid)
        print(f"N-CREATE {created.sop_instance_uid}: {describe(created.status)}")
        if not created.ok or args.final is None or created.sop_instance_uid is None:
            return EXIT_OK if created.ok else EXIT_FAILED
        modifications = _final_modifications(args.final, args.series)
        updated = await client.n_set(MPPS, created.sop_instance_uid, modifications)
        print(f"N-SET {created.sop_instance_uid} {args.final}: {describe(updated.status)}")
        return EXIT_OK if updated.ok else EXIT_FAILED


def cmd_mpps(args: argparse.Namespace) -> int:
    return run(_mpps(args))


def register(commands: Subparsers) -> None:
    """Add ``commit`` and ``mpps`` to the command line."""
    parser = commands.add_parser("commit", help="request storage commitment (N-ACTION)")
    add_peer_flags(parser, timeout=60.0)
    parser.add_argument("paths", nargs="*", help="files or folders whose instances to commit")
    parser.add_argument(
        "--ref",
        action="append",
        default=[],
        metavar="CLASS/INSTANCE",
        help="a SOP class and instance UID to commit, besides the files",
    )
    parser.add_argument(
        "--listen-port",
        type=int,
        dest="listen_port",
        help="port of our listener for the report on a new association "
        "(the peer must know --aet there); without it only the same "
        "association is watched",
    )
    parser.add_argument("--listen-host", default="0.0.0.0", dest="listen_host")  # fmt: skip
    parser.set_defaults(func=cmd_commit)
    mpps = commands.add_parser("mpps", help="send an MPPS N-CREATE (and N-SET)")
    add_peer_flags(mpps, timeout=60.0)
    mpps.add_argument("--patient-id", required=True, dest="patient_id")
    mpps.add_argument("--study", required=True, help="Study Instance UID")
    mpps.add_argument("--modality", default="OT")
    mpps.add_argument("--uid", help="the MPPS SOP Instance UID (default: the peer assigns one)")
    mpps.add_argument(
        "--final", choices=["COMPLETED", "DISCONTINUED"], help="then N-SET this final status"
    )
    mpps.add_argument("--series", action="append", default=[], metavar="UID",
                      help="a performed series (with --final)")  # fmt: skip
    mpps.set_defaults(func=cmd_mpps)
