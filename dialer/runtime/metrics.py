"""Wires one process's :class:`~dialer.live.metrics.Metrics` to the parts it runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec

from dialer.live.metrics import AmiLink, Metrics

if TYPE_CHECKING:
    from dialer.runtime.bootstrap import Runtime

P = ParamSpec("P")


def install(runtime: Runtime) -> Metrics:
    """Metrics for ``runtime``, attached to its hooks (call once per runtime).

    Without a worker only what the process has is exported (the web layer
    adds its SSE clients and HTTP requests).  With one, ended calls are
    counted by :meth:`Metrics.run`, which the app serving /metrics runs
    (``web.routes.metrics.setup``).  An existing ``on_persisted`` or
    ``on_originate_answered`` hook is kept and called first.
    """
    metrics = Metrics()
    metrics.mqtt = lambda: runtime.mqtt  # set once the runtime starts publishing
    worker = runtime.worker
    if worker is None:
        return metrics
    # AmiPbx keeps its AmiClient as ``client``; another PBX port has no AMI stats.
    found = getattr(worker.pbx, "client", None)
    ami = found if isinstance(found, AmiLink) else None
    metrics.attach_worker(worker, runtime.broadcaster, ami)
    worker.on_persisted = _chain(worker.on_persisted, metrics.observe_persisted)
    if ami is not None:
        ami.on_originate_answered = _chain(ami.on_originate_answered, metrics.observe_originate)
    return metrics


def _chain(previous: Callable[P, None] | None, hook: Callable[P, None]) -> Callable[P, None]:
    """``hook``, after ``previous`` when a hook was already there."""
    if previous is None:
        return hook

    def both(*args: P.args, **kwargs: P.kwargs) -> None:
        previous(*args, **kwargs)
        hook(*args, **kwargs)

    return both
