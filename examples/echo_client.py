"""Verification SCU with the public client API: connect, C-ECHO, release (PS3.4 A, PS3.7 9.1.5).

    python examples/echo_client.py 127.0.0.1 11112 --aec STELLARPACS

Exits 0 when the peer answered Success, 1 otherwise (a rejection, an abort,
no answer, or a failure status), with one line saying why.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from stellarpacs import AssociationRejected, StellarPACSError, connect


async def echo(host: str, port: int, called_ae: str, calling_ae: str, timeout: float) -> int:
    """One association, one C-ECHO; the ``async with`` block releases it (A-RELEASE)."""
    association = await connect(
        host,
        port,
        called_ae=called_ae,
        calling_ae=calling_ae,
        connect_timeout=timeout,
        dimse_timeout=timeout,
    )
    async with association:
        status = await association.echo()
    print(f"C-ECHO {calling_ae} -> {called_ae} at {host}:{port}: status 0x{status:04X}")
    print("association released")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description="C-ECHO a DICOM peer")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--aec", default="STELLARPACS", help="called AE title (the peer's)")
    parser.add_argument("--aet", default="ECHOSCU", help="calling AE title (ours)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per step")
    args = parser.parse_args()
    try:
        status = asyncio.run(echo(args.host, args.port, args.aec, args.aet, args.timeout))
    except AssociationRejected as error:
        # result/source/reason of the A-ASSOCIATE-RJ (PS3.8 Table 9-21)
        print(f"rejected: result {error.result}, source {error.source}, reason {error.reason}")
        return 1
    except (StellarPACSError, OSError, TimeoutError) as error:
        print(f"failed: {error or type(error).__name__}")
        return 1
    return 0 if status == 0x0000 else 1


if __name__ == "__main__":
    sys.exit(main())
