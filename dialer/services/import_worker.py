"""One background CSV import, in a process of its own: ``python -m dialer.services.import_worker``.

The web process starts it for each upload (see
:class:`dialer.services.importer.ImportService`) and writes one JSON object
to its standard input: the database URL, the job, the file and the import's
options.  It records its progress and its end in ``import_jobs`` itself.
It runs at a lower CPU priority than the web process and the AMI worker,
which must keep answering while it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from dialer.domain import i18n
from dialer.services.importer import run_job
from dialer.store.engine import create_engine, session_factory

# Nice increment: the scheduler favours the processes serving people.
NICENESS = 10


async def _run(request: dict[str, Any]) -> None:
    # The web process stops an import with SIGTERM.  Dying there and then
    # would leave the statement in flight running on in PostgreSQL, holding
    # its locks and writing rows after the job is recorded as stopped: the
    # import is cancelled instead, and ends its statement first.
    running = asyncio.current_task()
    assert running is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, running.cancel)
    engine = create_engine(request["database_url"], pool_size=2, max_overflow=0)
    try:
        await run_job(
            session_factory(engine),
            int(request["job_id"]),
            Path(request["upload"]),
            **request["options"],
        )
    except asyncio.CancelledError:
        logging.getLogger(__name__).info("import job %s stopped", request["job_id"])
    finally:
        await engine.dispose()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    request = json.loads(sys.stdin.buffer.read())
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    i18n.activate(str(request.get("language") or "en"))
    asyncio.run(_run(request))
    return 0


if __name__ == "__main__":
    sys.exit(main())
