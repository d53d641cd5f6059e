"""The bench's embedded daemon: `jobrunner.Runner` inside an application's process, set up as
the README's Python API shows and nothing else (no logging configuration), until SIGTERM.

    python -m jobrunner._bench_embedded DSN QUEUE_SPEC NODE THREADS|- [APP_MODULE...]
"""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys

from jobrunner import _bench_workers
from jobrunner.client import connect
from jobrunner.core.queue_config import parse_queues
from jobrunner.daemon.runner import Runner


async def serve(dsn: str, queues: str, node: str, threads: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with (
        connect(dsn) as client,
        Runner(client, queues=parse_queues(queues), node=node, threads=threads) as runner,
    ):
        await stop.wait()
        await runner.stop(grace=15)


def main(argv: list[str]) -> int:
    dsn, queues, node = argv[:3]
    threads = int(argv[3]) if len(argv) > 3 and argv[3] != "-" else None
    assert _bench_workers.QUEUE  # the workers register on import, as an application's would
    for module in argv[4:]:
        importlib.import_module(module)
    asyncio.run(serve(dsn, queues, node, threads))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
