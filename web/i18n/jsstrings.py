"""The translated strings the browser scripts show, handed to them as JSON.

The scripts hold no user-facing text of their own: every page embeds this
dictionary (in the viewer's language) and the scripts look strings up in it.
"""

from __future__ import annotations

from dialer.domain.vocabulary import CallOutcome, CallState, DispositionOutcome
from web.i18n import labels
from web.i18n.translate import _


def strings() -> dict[str, object]:
    return {
        "states": {state.value: labels.call_state(state) for state in CallState},
        "call_outcomes": {outcome.value: labels.call_outcome(outcome) for outcome in CallOutcome},
        "outcomes": {
            outcome.value: labels.disposition_outcome(outcome) for outcome in DispositionOutcome
        },
        "volunteer_status": {
            status: labels.volunteer_status(status)
            for status in ("idle", "ringing", "on_call", "wrap_up", "offline")
        },
        "hang_up": _("Hang up"),
        "hanging_up": _("Hanging up…"),
        "calling": _("Calling…"),
        "saving": _("Saving…"),
        "saved": _("Saved."),
        "note_saved": _("Note saved."),
        "offline_kept": _(
            "Could not reach the server; your entries are kept on this device. Retry."
        ),
        "retrying": _("The server is busy; retrying…"),
        "fix_fields": _("Some answers need fixing."),
        "required": _("Required."),
        "connection_lost": _("Live updates interrupted; reconnecting…"),
        "connected": _("Live"),
        "no_calls": _("No live calls."),
        "ended_because": _("Call ended: %(reason)s"),
        "restored": _("Your unsaved entries were restored."),
        "confirm_hangup": _("Hang up this call?"),
        "online": _("Signed in"),
        "offline": _("Offline"),
        "talking_for": _("Talking for"),
        "error": _("Something went wrong on our side."),
    }
