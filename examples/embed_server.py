"""A StellarPACS server inside another asyncio program.

The server is one task among others: here it runs beside a task that prints
a status line, and a notification hook prints every instance once it is
durably stored (PS3.4 B.2.3: after the Success response is earned).

    python examples/embed_server.py --port 11112            # until Ctrl-C
    python examples/embed_server.py --port 0 --seconds 10   # a free port, 10 s

Instances go to ``--storage`` (a temporary folder, removed at exit, by default).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import tempfile
from pathlib import Path

from stellarpacs import Config, Server, StoredEvent, default_services


async def print_stored(event: StoredEvent) -> None:
    """A notification hook: it observes, it cannot change the C-STORE answer."""
    record = event.record
    print(f"stored {record.sop_instance_uid} from {record.calling_ae} ({record.size} bytes)")


async def print_status(server: Server, interval: float) -> None:
    """The "other work" of the host program."""
    while True:
        await asyncio.sleep(interval)
        print(f"status: {len(server.associations)} association(s) open", flush=True)


async def run(config: Config, seconds: float | None, interval: float) -> None:
    services = await default_services(config)  # opens the archive under config.storage
    assert services.archive is not None
    services.archive.add_hook(print_stored)
    server = Server(config, services.services)
    await server.start()  # binds now, so the port is known before serving
    print(f"listening on {config.host}:{server.port} as {config.ae_title}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if seconds is not None:
        loop.call_later(seconds, stop.set)

    tasks = [
        asyncio.create_task(server.serve_forever()),
        asyncio.create_task(print_status(server, interval)),
    ]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await server.close(timeout=5.0)  # open associations get 5 s to finish
    await services.close()  # waits for commits in flight and hooks, closes the index
    print("stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="embedded StellarPACS server")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    parser.add_argument("--seconds", type=float, help="stop by itself after this long")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between status")
    parser.add_argument("--storage", type=Path, help="storage folder (default: temporary)")
    args = parser.parse_args()
    # The server logs associations through the standard logging module (stderr here).
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="stellarpacs-") as scratch:
        config = Config(
            host="127.0.0.1",
            port=args.port,
            storage=args.storage or Path(scratch),
            fsync=args.storage is not None,  # a scratch folder needs no durability
        )
        asyncio.run(run(config, args.seconds, args.interval))


if __name__ == "__main__":
    main()
