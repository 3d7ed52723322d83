"""``python -m stellarpacs hash-passcode [--user NAME]``: a passcode hash for ``[users.NAME]``.

The passcode is read from standard input (a prompt without echo on a
terminal, else the first line of a pipe), never from the command line,
where other users would see it in the process list and the shell history.
What it prints is the TOML to paste into the configuration: a salted
Argon2id hash (PS3.7 D.3.3.7 user identity type 2 is checked against it).
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys

from stellarpacs.access import hash_passcode
from stellarpacs.cli.common import EXIT_OK, EXIT_USAGE, Subparsers

__all__ = ["register"]


def _read_passcode() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Passcode: ")
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


def cmd_hash_passcode(args: argparse.Namespace) -> int:
    passcode = _read_passcode()
    if not passcode:
        print("stellarpacs hash-passcode: no passcode on standard input", file=sys.stderr)
        return EXIT_USAGE
    line = f"passcode_hash = {json.dumps(hash_passcode(passcode.encode('utf-8')))}"
    if args.user:
        bare = re.fullmatch(r"[A-Za-z0-9_-]+", args.user)
        print(f"[users.{args.user if bare else json.dumps(args.user)}]")
    print(line)
    return EXIT_OK


def register(commands: Subparsers) -> None:
    """Add ``hash-passcode`` to the command line."""
    parser = commands.add_parser(
        "hash-passcode",
        help="hash a passcode read from standard input for a [users.NAME] table",
    )
    parser.add_argument("--user", help="also print the [users.NAME] line for this user")
    parser.set_defaults(func=cmd_hash_passcode)
