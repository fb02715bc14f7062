"""What every use case shares: its errors, and retrying a database blip."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

log = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], datetime]


class RetryableError(Exception):
    """The database could not be reached; the same request can be sent again."""


class NotAllowed(Exception):
    """The user may not see or change this (authorization, not a rule)."""


async def with_db_retry(
    operation: Callable[[], Awaitable[T]], *, attempts: int = 5, first_delay: float = 0.2
) -> T:
    """Run ``operation`` again when the database connection fails.

    Only connection-level errors are retried; the operation must be
    idempotent (outcome submissions are, through their submission id).
    """
    delay = first_delay
    for attempt in range(attempts):
        try:
            return await operation()
        except (OperationalError, InterfaceError, OSError) as error:
            # OSError: the driver fails to even connect while the server is down.
            last: Exception = error
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            last = error
        if attempt < attempts - 1:
            log.warning("database unavailable (%s); retrying in %.1fs", type(last).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)
    raise RetryableError("the database is unavailable; your submission was kept, retry") from last
