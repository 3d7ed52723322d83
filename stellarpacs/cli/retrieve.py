"""``python -m stellarpacs move|get HOST PORT -k KEY=VALUE ...``: C-MOVE and C-GET SCU.

``move`` asks the peer to send the matching instances to another AE (``--dest``,
which the peer must know); ``get`` brings them back on the same association
and writes each as a PS3.10 file into ``--output``. One line per response shows
the sub-operation counts (PS3.4 C.4.2.1.4), then a summary; the exit status is
0 only when the final status is Success (0000).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from pydicom.dataset import Dataset

from stellarpacs.aio.scu.contexts import ProposedContext, get_contexts
from stellarpacs.aio.scu.retrieve import FolderStoreHandler, RetrieveResponse, RetrieveStream
from stellarpacs.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    add_peer_flags,
    connect_peer,
    run,
)
from stellarpacs.cli.query import build_identifier
from stellarpacs.dimse.status import ServiceClass, StatusCategory, describe
from stellarpacs.uids import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    PATIENT_ROOT_QR_GET,
    PATIENT_ROOT_QR_MOVE,
    PATIENT_STUDY_ONLY_QR_GET,
    PATIENT_STUDY_ONLY_QR_MOVE,
    STUDY_ROOT_QR_GET,
    STUDY_ROOT_QR_MOVE,
    TABLE2_STORAGE,
)

__all__ = ["register"]

#: --model -> (MOVE model, GET model) (PS3.4 C.6).
RETRIEVE_MODEL_CHOICES: Final[dict[str, tuple[str, str]]] = {
    "patient": (PATIENT_ROOT_QR_MOVE, PATIENT_ROOT_QR_GET),
    "study": (STUDY_ROOT_QR_MOVE, STUDY_ROOT_QR_GET),
    "psonly": (PATIENT_STUDY_ONLY_QR_MOVE, PATIENT_STUDY_ONLY_QR_GET),
}


def _progress(response: RetrieveResponse) -> str:
    counts = (
        f"{response.remaining if response.remaining is not None else '-'} remaining, "
        f"{response.completed or 0} completed, {response.failed or 0} failed, "
        f"{response.warning or 0} warning"
    )
    return f"0x{response.status:04X} {counts}"


async def _follow(stream: RetrieveStream, service: ServiceClass, what: str) -> int:
    """Print each response, then a summary; the exit status."""
    async with stream:
        async for response in stream:
            if response.pending:
                print(f"pending: {_progress(response)}", flush=True)
    final = stream.final
    if final is None:
        print(f"{what}: no final response", file=sys.stderr)
        return EXIT_FAILED
    print(f"{what}: {describe(final.status, service)}")
    print(
        f"{final.completed or 0} completed, {final.failed or 0} failed, "
        f"{final.warning or 0} warning"
        + (f", {final.remaining} not attempted" if final.remaining else "")
    )
    if final.error_comment:
        print(f"comment: {final.error_comment}")
    for uid in final.failed_sop_instance_uids:
        print(f"FAILED {uid}")
    return EXIT_OK if final.category is StatusCategory.SUCCESS else EXIT_FAILED


def _identifier(args: argparse.Namespace) -> Dataset:
    """The identifier of ``-k`` keys (ConfigError names a key that cannot be understood)."""
    return build_identifier(args.keys, args.level.upper(), defaults=False)


async def _move(args: argparse.Namespace) -> int:
    identifier = _identifier(args)
    model = RETRIEVE_MODEL_CHOICES[args.model][0]
    client = await connect_peer(args, [ProposedContext(model)])
    async with client:
        stream = client.move(model, identifier, args.dest)
        return await _follow(stream, ServiceClass.MOVE, f"C-MOVE to {args.dest}")


async def _get(args: argparse.Namespace) -> int:
    identifier = _identifier(args)
    model = RETRIEVE_MODEL_CHOICES[args.model][1]
    sop_classes = [*(c.uid for c in TABLE2_STORAGE), *args.sop_classes]
    syntaxes = args.syntaxes or [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]
    try:
        contexts = get_contexts(sop_classes, syntaxes, models=(model,))
    except ValueError as error:
        print(f"stellarpacs get: {error}", file=sys.stderr)
        return EXIT_USAGE
    handler = FolderStoreHandler(Path(args.output))
    client = await connect_peer(args, contexts)
    async with client:
        status = await _follow(client.get(model, identifier, handler), ServiceClass.GET, "C-GET")
    print(f"{len(handler.received)} instances written to {args.output}")
    for uid, why in handler.failed:
        print(f"NOT WRITTEN {uid}: {why}")
    return status if not handler.failed else EXIT_FAILED


def cmd_move(args: argparse.Namespace) -> int:
    return run(_move(args))


def cmd_get(args: argparse.Namespace) -> int:
    return run(_get(args))


def _add_common(parser: argparse.ArgumentParser) -> None:
    add_peer_flags(parser, timeout=60.0)
    parser.add_argument(
        "-k",
        "--key",
        dest="keys",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="identifier key, e.g. StudyInstanceUID=1.2.3 or 0020,000D=1.2.3 (repeatable)",
    )
    parser.add_argument(
        "--model", choices=sorted(RETRIEVE_MODEL_CHOICES), default="study", help="Q/R model"
    )
    parser.add_argument(
        "--level", default="STUDY", help="Query/Retrieve Level: PATIENT, STUDY, SERIES or IMAGE"
    )


def register(commands: Subparsers) -> None:
    """Add ``move`` and ``get`` to the command line."""
    move = commands.add_parser("move", help="ask a peer to send instances to an AE (C-MOVE)")
    _add_common(move)
    move.add_argument("--dest", required=True, help="Move Destination AE title")
    move.set_defaults(func=cmd_move)
    get = commands.add_parser("get", help="retrieve instances into a folder (C-GET)")
    _add_common(get)
    get.add_argument("--output", required=True, help="folder for the received files")
    get.add_argument(
        "--sop-class",
        dest="sop_classes",
        action="append",
        default=[],
        metavar="UID",
        help="storage SOP class to accept besides the 1.3 statement's Table 2 (repeatable)",
    )
    get.add_argument(
        "--ts",
        dest="syntaxes",
        action="append",
        default=[],
        metavar="UID",
        help="transfer syntax to accept (repeatable; default Explicit and Implicit VR LE)",
    )
    get.set_defaults(func=cmd_get)
