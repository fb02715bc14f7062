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
        "phone": {
            "intro": _("Your browser phone is off."),
            "starting": _("Turning the browser phone on…"),
            "registering": _("Connecting to the phone system…"),
            "ready": _("Browser phone ready: your calls ring here."),
            "reconnecting": _("Connection to the phone system lost; reconnecting…"),
            "failed": _("The phone system refused this browser phone (%(cause)s)."),
            "denied": _("The microphone is blocked: nobody would hear you."),
            "no_microphone": _("No microphone found. Plug in a headset, then reload the page."),
            "unsupported": _(
                "This browser cannot make calls. Use a recent Chrome, Firefox or Edge."
            ),
            "ringing": _("A call is ringing."),
            "elsewhere": _("Your browser phone is in another tab of this app."),
            "talking": _("On a call."),
            "testing": _("Test call: speak, you should hear yourself."),
            "muted": _("Muted: the contact cannot hear you."),
            "not_ready": _(
                "Your browser phone is not connected yet: turn it on at the top of the "
                "page, then click Call again."
            ),
            "busy": _("You are already on a call."),
            "mute": _("Mute"),
            "unmute": _("Unmute"),
            "leave_warning": _("Leaving this page ends your call."),
        },
        "hang_up": _("Hang up"),
        "supervise_ringing": {
            "listen": _("Your phone is ringing: answer it to listen to the call."),
            "whisper": _("Your phone is ringing: answer it to whisper to the volunteer."),
            "barge": _("Your phone is ringing: answer it to join the call."),
        },
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
        "step_failed": _("did not happen"),
        "step_not_reached": _("not reached"),
        "survey_builder": {
            "question_n": _("Question %(n)s"),
            "question_n_label": _("Question %(n)s: %(label)s"),
            "not_after": _("%(question)s (not after this one: choose again)"),
            "end": _("The end of the survey"),
            "choose": _("Choose…"),
            "yes": _("Yes"),
            "no": _("No"),
            "untitled": _("(no text yet)"),
            "move_up": _("Move question %(n)s up"),
            "move_down": _("Move question %(n)s down"),
            "remove": _("Remove question %(n)s"),
            "choice_up": _("Move choice %(n)s up"),
            "choice_down": _("Move choice %(n)s down"),
            "remove_choice": _("Remove choice %(n)s"),
            "remove_rule": _("Remove skip rule %(n)s"),
            "moved": _("Question moved to position %(n)s."),
            "added": _("Question %(n)s added."),
            "removed": _("Question removed."),
            "json_invalid": _("This is not valid JSON: %(reason)s"),
            "json_not_survey": _("This JSON is not a survey: it needs a list of questions."),
            "imported": _("The JSON was loaded into the builder. Save to keep it."),
            "broken": _("The builder cannot show this survey: fix its JSON below."),
        },
    }
