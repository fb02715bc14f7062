"""What the web layer needs from the rest of the product, and the typed keys
of what the app factory puts on the application.

The composition root (``dialer.runtime.bootstrap.web_deps``) builds one
:class:`WebDeps`; handlers read it with ``request.app[deps_key]``.  The web
layer knows these parts by their types only, never the whole runtime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from jinja2 import Environment

from dialer.live.broadcaster import Broadcaster
from dialer.live.metrics import Metrics
from dialer.services.accounts import AccountService
from dialer.services.call_history import CallHistory
from dialer.services.calling import CallService
from dialer.services.campaigns import CampaignService
from dialer.services.contacts import ContactService
from dialer.services.dashboard import DashboardService
from dialer.services.directory import Directory
from dialer.services.export import ExportService
from dialer.services.importer import ImportService
from dialer.services.lists import CallingLists
from dialer.services.notifications import NotificationService
from dialer.services.outcomes import OutcomeService
from dialer.services.power import PowerService
from dialer.services.tasks import TaskService
from dialer.services.teams import TeamService
from dialer.services.users import UserService
from web.config import WebConfig

if TYPE_CHECKING:
    from web.live.sse import LiveHub

HealthCheck = Callable[[], Awaitable[dict[str, dict[str, object]]]]


@dataclass(frozen=True, kw_only=True)
class WebDeps:
    """The services the handlers call; each owns its transactions."""

    # Starting and hanging up calls.
    service: CallService
    # Power sessions: start, pause, resume, last call, leave.
    power: PowerService
    outcomes: OutcomeService
    lists: CallingLists
    accounts: AccountService
    users: UserService
    # Team settings (manual-call hours) and the call screen's hours note.
    teams: TeamService
    campaigns: CampaignService
    contacts: ContactService
    calls: CallHistory
    dashboard: DashboardService
    imports: ImportService
    exports: ExportService
    # Names and the volunteer roster for the live hub.
    directory: Directory
    # The bell, the notifications page; the tasks page and its Done button.
    notifications: NotificationService
    tasks: TaskService
    broadcaster: Broadcaster
    metrics: Metrics
    health: HealthCheck
    # Where numbers typed without a country code are from (DIALER_DEFAULT_REGION).
    default_region: str
    # A worker on the same event loop: the live hub then paces its writes.
    shares_loop_with_worker: bool


deps_key = web.AppKey("deps", WebDeps)
config_key = web.AppKey("config", WebConfig)
templates_key = web.AppKey("templates", Environment)
hub_key: web.AppKey[LiveHub] = web.AppKey("hub")
# What every page's template sees (user, CSRF token, language...), set per request.
template_context_key = web.RequestKey("template_context", dict[str, Any])
