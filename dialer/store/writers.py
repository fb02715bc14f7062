"""Which store module alone writes each table.

A table is written (INSERT, UPDATE, DELETE) only by the statements of its
owner module; services call the owner's functions inside the transaction
they own.  The test suite holds every write it sees to this map
(``tests/support/writers.py``), so a write from anywhere else fails a test.
"""

from __future__ import annotations

TABLE_WRITERS: dict[str, str] = {
    "call_attempts": "dialer.store.calls",
    "hangup_requests": "dialer.store.calls",
    "supervision_requests": "dialer.store.calls",
    "power_sessions": "dialer.store.power_sessions",
    "dispositions": "dialer.store.outcomes",
    "follow_up_tasks": "dialer.store.outcomes",
    "calling_list_entries": "dialer.store.lists",
    "contacts": "dialer.store.contacts",
    "contact_phones": "dialer.store.contacts",
    "contact_notes": "dialer.store.contacts",
    "campaigns": "dialer.store.campaigns",
    "attendances": "dialer.store.campaigns",
    "users": "dialer.store.people",
    "teams": "dialer.store.people",
    "team_members": "dialer.store.people",
    "web_sessions": "dialer.store.sign_ins",
    "login_failures": "dialer.store.sign_ins",
    "known_devices": "dialer.store.sign_ins",
    "audit_log": "dialer.store.audit",
    "worker_heartbeats": "dialer.store.heartbeats",
    "import_jobs": "dialer.store.imports",
    "import_job_rows": "dialer.store.imports",
    "notifications": "dialer.store.notifications",
    "notification_preferences": "dialer.store.notifications",
    "campaign_counters": "dialer.store.counters",
    "campaign_counter_deltas": "dialer.store.counters",
}
