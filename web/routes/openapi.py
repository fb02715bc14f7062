"""The OpenAPI 3.1 description of the JSON API, served at /api/openapi.json."""

from __future__ import annotations

from functools import cache
from typing import Any

from dialer.domain.compliance import RefusalCode
from dialer.domain.outcomes import OutcomeSubmission
from dialer.domain.vocabulary import (
    CallOutcome,
    CallState,
    DispositionOutcome,
    PhoneType,
    PowerSessionState,
)
from dialer.services.lists import EMPTY_REASONS
from dialer.services.outcomes import MAX_SKIP_NOTE, SKIP_REASONS

ERROR_CODES = sorted(
    {code.value for code in RefusalCode}
    | {
        "unauthenticated",
        "forbidden",
        "csrf",
        "not_found",
        "invalid",
        "retry",
        "too_large",
        "too_many_attempts",
        "bad_credentials",
        "bad_json",
        "bad_request",
        "unsupported_media_type",
        "method_not_allowed",
        "internal",
        "outcome_pending",
        "outcome_recorded",
        "no_power_session",
    }
)


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_CSRF = [{"$ref": "#/components/parameters/CsrfToken"}]
_COMMON_ERRORS = {
    "401": _error("Not signed in"),
    "403": _error("Not allowed, or CSRF token missing (code csrf)"),
}


@cache
def openapi_document() -> dict[str, Any]:
    submission_schema = OutcomeSubmission.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    definitions = submission_schema.pop("$defs", {})
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": ERROR_CODES},
                        "message": {
                            "type": "string",
                            "description": "For people, in the caller's language",
                        },
                        "fields": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "description": (
                                "Field-level errors keyed by dotted path, e.g. survey.vote"
                            ),
                        },
                        "retry_at": {"type": "string", "format": "date-time"},
                    },
                }
            },
        },
        "PowerSessionReply": {
            "type": "object",
            "properties": {
                "session": {
                    "type": ["object", "null"],
                    "properties": {
                        "session_id": {"type": "integer"},
                        "volunteer_id": {"type": "integer"},
                        "campaign_id": {"type": ["integer", "null"]},
                        "state": {
                            "type": "string",
                            "enum": [state.value for state in PowerSessionState],
                        },
                        "state_label": {"type": "string"},
                        "since": {"type": "string", "format": "date-time"},
                        "started_at": {"type": "string", "format": "date-time"},
                        "calls": {"type": "integer"},
                        "waited_seconds": {"type": "number"},
                        "paused": {"type": "boolean"},
                        "pause_reason": {"type": ["string", "null"]},
                        "last_call": {"type": "boolean"},
                        "waiting_note": {
                            "type": ["string", "null"],
                            "description": "Why nobody is dialed now, in English",
                        },
                        "waiting_reason": {
                            "type": ["string", "null"],
                            "description": (
                                "The same as a code: list:<empty_reason of /next> or "
                                "refusal:<refusal code>"
                            ),
                        },
                        "waiting_until": {
                            "type": ["string", "null"],
                            "format": "date-time",
                            "description": "When that reason says it ends, if it says",
                        },
                        "waiting_label": {
                            "type": ["string", "null"],
                            "description": "The same in your language",
                        },
                        "ended_at": {"type": ["string", "null"], "format": "date-time"},
                        "end_reason": {"type": ["string", "null"]},
                        "end_reason_label": {"type": "string"},
                        "call": {
                            "description": (
                                "The session's call on your screen: the one whose outcome is "
                                "owed, else the live one (url opens its outcome form)"
                            ),
                            "oneOf": [{"$ref": "#/components/schemas/Call"}, {"type": "null"}],
                        },
                        "next_call": {
                            "description": (
                                "The call dialed while call's outcome is still owed (a campaign "
                                "that dials the next contact as a call ends)"
                            ),
                            "oneOf": [{"$ref": "#/components/schemas/Call"}, {"type": "null"}],
                        },
                    },
                }
            },
        },
        "User": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "username": {"type": "string"},
                "display_name": {"type": "string"},
                "role": {"type": "string", "enum": ["volunteer", "organizer", "admin"]},
                "extension": {"type": ["string", "null"]},
                "language": {"type": ["string", "null"]},
            },
        },
        "Call": {
            "type": "object",
            "properties": {
                "call_id": {"type": "string"},
                "state": {"type": "string", "enum": [state.value for state in CallState]},
                "state_label": {"type": "string"},
                "outcome": {
                    "type": ["string", "null"],
                    "enum": [*(outcome.value for outcome in CallOutcome), None],
                },
                "outcome_label": {"type": "string"},
                "failure_reason": {"type": ["string", "null"]},
                "volunteer_id": {"type": "integer"},
                "contact_id": {"type": "integer"},
                "contact_name": {"type": "string"},
                "campaign_id": {"type": ["integer", "null"]},
                "number": {"type": "string"},
                "caller_id": {"type": ["string", "null"]},
                "requested_at": {"type": "string", "format": "date-time"},
                "volunteer_answered_at": {"type": ["string", "null"], "format": "date-time"},
                "contact_answered_at": {"type": ["string", "null"], "format": "date-time"},
                "ended_at": {"type": ["string", "null"], "format": "date-time"},
                "dial_status": {"type": ["string", "null"]},
                "needs_review": {"type": "boolean"},
            },
        },
        "CallRequest": {
            "type": "object",
            "required": ["contact_id"],
            "properties": {
                "contact_id": {"type": "integer"},
                "phone_id": {"type": "integer"},
                "campaign_id": {
                    "type": "integer",
                    "description": (
                        "Optional. Left out, a contact on campaign lists is still called "
                        "under a campaign's rules: the first of its active campaigns in your "
                        "view (your own list first) whose rules allow the call now, which the "
                        "call is then stored with. A contact whose campaigns are all paused or "
                        "closed is refused (campaign_not_active)."
                    ),
                },
                "caller_id": {"type": "string", "description": "One of the allowed caller IDs"},
            },
        },
        "OutcomeResult": {
            "type": "object",
            "properties": {
                "submission_id": {"type": "string"},
                "disposition_id": {"type": "integer"},
                "duplicate": {
                    "type": "boolean",
                    "description": "True when this submission_id was already stored",
                },
            },
        },
        "NextContact": {
            "type": "object",
            "properties": {
                "contact": {
                    "type": ["object", "null"],
                    "properties": {
                        "id": {"type": "integer"},
                        "name": {"type": "string"},
                        "language": {"type": ["string", "null"]},
                        "phones": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "integer"},
                                    "number": {"type": "string"},
                                    "display": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "is_callback": {"type": "boolean"},
                "outcome_pending": {
                    "type": ["object", "null"],
                    "description": "The answered call whose outcome is owed, if any",
                    "properties": {
                        "call_id": {"type": "string"},
                        "contact_id": {"type": "integer"},
                        "campaign_id": {"type": ["integer", "null"]},
                        "contact_name": {"type": "string"},
                        "url": {"type": "string"},
                    },
                },
                "empty_reason": {
                    "type": ["string", "null"],
                    "enum": [*EMPTY_REASONS, None],
                },
                "message": {"type": "string"},
                "available_at": {"type": ["string", "null"], "format": "date-time"},
            },
        },
        "OutcomeSubmission": submission_schema,
        **definitions,
    }
    schemas["OutcomeSubmission"].setdefault("properties", {})
    schemas["OutcomeSubmission"]["properties"]["outcome"] = {
        "type": "string",
        "enum": [outcome.value for outcome in DispositionOutcome],
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Phone bank API",
            "version": "1",
            "description": (
                "Click-to-call, live call state and outcomes. Sign in with POST /api/session; "
                "the session cookie authenticates later calls, and every state-changing call "
                "sends the returned csrf_token in the X-CSRF-Token header. Errors carry a "
                "stable code and a message in the caller's language (Accept-Language or the "
                "user's setting). Phone types: " + ", ".join(kind.value for kind in PhoneType) + "."
            ),
        },
        "components": {
            "schemas": schemas,
            "parameters": {
                "CsrfToken": {
                    "name": "X-CSRF-Token",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "pb_session"}
            },
        },
        "security": [{"session": []}],
        "paths": {
            "/api/session": {
                "post": {
                    "summary": "Sign in",
                    "security": [],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["username", "password"],
                                    "properties": {
                                        "username": {"type": "string"},
                                        "password": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "user": _ref("User"),
                                    "csrf_token": {"type": "string"},
                                },
                            },
                            "Signed in; the pb_session cookie is set",
                        ),
                        "401": _error("Wrong username or password (bad_credentials)"),
                        "429": _error("Too many failed sign-ins (too_many_attempts)"),
                    },
                },
                "delete": {
                    "summary": "Sign out",
                    "parameters": _CSRF,
                    "responses": {"200": _json({"type": "object"}), **_COMMON_ERRORS},
                },
            },
            "/api/me": {
                "get": {
                    "summary": "The signed-in user",
                    "description": (
                        "With outcome_pending: the answered call whose outcome is not "
                        "recorded or skipped yet ({call_id, contact_id, campaign_id, "
                        "contact_name, url}, the url reopening its form), or null."
                    ),
                    "responses": {"200": _json({"type": "object"}), **_COMMON_ERRORS},
                }
            },
            "/api/phone": {
                "get": {
                    "summary": "Your phone; for a browser phone, what it registers with",
                    "description": (
                        "{kind, choices}: what rings this session (desk, browser or "
                        "own_number) and what it may ring instead; for a browser phone also "
                        "websocket, uri, username, password, display_name, ice_servers and "
                        "echo_test: the SIP account of your own browser phone (WebRTC), for "
                        "your browser only."
                    ),
                    "responses": {
                        "200": _json({"type": "object"}),
                        "503": _error(
                            "phone_not_configured: the server has no DIALER_WEB_PHONE_WS_URL"
                        ),
                        **_COMMON_ERRORS,
                    },
                },
                "post": {
                    "summary": "Ring another of your phones this session",
                    "description": "{kind}: one of GET's choices (your usual phone, or your "
                    "approved own number).",
                    "parameters": _CSRF,
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"kind": {"type": "string"}},
                                }
                            }
                        }
                    },
                    "responses": {"200": _json({"type": "object"}), **_COMMON_ERRORS},
                },
            },
            "/api/preferences": {
                "post": {
                    "summary": "Session preferences (ask before dialing)",
                    "parameters": _CSRF,
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"confirm_before_dial": {"type": "boolean"}},
                                }
                            }
                        }
                    },
                    "responses": {"200": _json({"type": "object"}), **_COMMON_ERRORS},
                }
            },
            "/api/calls": {
                "post": {
                    "summary": "Start a call: rings your phone, then dials the contact",
                    "parameters": _CSRF,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("CallRequest")}},
                    },
                    "responses": {
                        "201": _json(_ref("Call"), "Requested"),
                        "404": _error("No such contact or number (not_found)"),
                        "409": _error(
                            "outcome_pending: the outcome of your last answered call is "
                            "neither recorded nor skipped (error.call_id, error.contact_id, "
                            "error.campaign_id, error.url name it). "
                            "Refused by a calling rule: do_not_call, outside_calling_hours, "
                            "volunteer_busy, max_attempts, retry_too_soon, campaign_not_active "
                            "(also without campaign_id, for a contact on campaign lists)... "
                            "(see the code)"
                        ),
                        "422": _error(
                            "A malformed contact_id, phone_id, campaign_id or caller_id "
                            "(code invalid, the field in error.fields)"
                        ),
                        "503": _error(
                            "The phone system is unavailable (pbx_unavailable), or retry"
                        ),
                        **_COMMON_ERRORS,
                    },
                }
            },
            "/api/calls/{call_id}": {
                "get": {
                    "summary": "A call's current state",
                    "parameters": [
                        {
                            "name": "call_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": _json(_ref("Call")),
                        "404": _error("No such call (or not yours)"),
                        **_COMMON_ERRORS,
                    },
                }
            },
            "/api/power": {
                "get": {
                    "summary": "Your power session: the live one, else your last (how it ended)",
                    "responses": {"200": _json(_ref("PowerSessionReply")), **_COMMON_ERRORS},
                },
                "post": {
                    "summary": "Start calling in power mode",
                    "description": (
                        "Your phone is called once and stays on the line; the contacts of "
                        "your list are then dialed for you one at a time, after each call's "
                        "outcome. The campaign must be in power mode. Every rule of a click "
                        "applies to each contact."
                    ),
                    "parameters": [*_CSRF],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["campaign_id"],
                                    "properties": {"campaign_id": {"type": "integer"}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "201": _json(_ref("PowerSessionReply"), "Your phone is being called"),
                        "409": _error(
                            "Refused: not_power_mode, in_power_session, volunteer_busy, "
                            "outcome_pending, no_extension, no_caller_id, campaign_not_active..."
                        ),
                        "503": _error("The phone system is unavailable (pbx_unavailable)"),
                        **_COMMON_ERRORS,
                    },
                },
            },
            **{
                f"/api/power/{action}": {
                    "post": {
                        "summary": summary,
                        "parameters": [*_CSRF],
                        **(
                            {
                                "requestBody": {
                                    "content": {
                                        "application/json": {
                                            "schema": {
                                                "type": "object",
                                                "properties": {
                                                    "reason": {"type": "string", "maxLength": 200}
                                                },
                                            }
                                        }
                                    },
                                }
                            }
                            if action == "pause"
                            else {}
                        ),
                        "responses": {
                            "200": _json(_ref("PowerSessionReply")),
                            "409": _error("You are not in a power session (no_power_session)"),
                            **_COMMON_ERRORS,
                        },
                    }
                }
                for action, summary in (
                    ("pause", "Pause: no new contact after the current one (with a reason)"),
                    ("resume", "Resume a paused session"),
                    ("last-call", "End the session once the current contact is wrapped up"),
                    ("leave", "Leave now: your line is hung up"),
                )
            },
            "/api/calls/{call_id}/hangup": {
                "post": {
                    "summary": "Hang up a live call (your own, or any as an organizer)",
                    "parameters": [
                        {
                            "name": "call_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        *_CSRF,
                    ],
                    "responses": {
                        "202": _json({"type": "object"}, "Hang-up requested"),
                        "404": _error("No such call (or not yours)"),
                        "503": _error("The phone system is unavailable (pbx_unavailable)"),
                        **_COMMON_ERRORS,
                    },
                }
            },
            "/api/calls/{call_id}/supervise": {
                "post": {
                    "summary": "Listen to, whisper to or barge into a live call (organizers)",
                    "description": (
                        "Rings the organizer's own phone into the call: listen is silent, "
                        "whisper is heard by the volunteer only, barge by both sides. Only "
                        "organizers of the call's team and administrators, never on their "
                        "own call. Written to the audit log."
                    ),
                    "parameters": [
                        {
                            "name": "call_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        *_CSRF,
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["mode"],
                                    "properties": {
                                        "mode": {
                                            "type": "string",
                                            "enum": ["listen", "whisper", "barge"],
                                        }
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _json({"type": "object"}, "The organizer's phone is being rung"),
                        "403": _error("Not an organizer of the call's team"),
                        "404": _error("No such call (or not yours)"),
                        "409": _error(
                            "The call is not answered yet or is over (call_not_live), or the "
                            "organizer has no phone to ring (no_phone)"
                        ),
                        "422": _error("mode is not listen, whisper or barge"),
                        **_COMMON_ERRORS,
                    },
                }
            },
            "/api/calls/{call_id}/skip-outcome": {
                "post": {
                    "summary": "Leave an answered call without its outcome, saying why",
                    "description": (
                        "Lifts outcome_pending. The contact then follows the campaign's "
                        "retry rules. Written to the audit log."
                    ),
                    "parameters": [
                        {
                            "name": "call_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        *_CSRF,
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["reason"],
                                    "properties": {
                                        "reason": {
                                            "type": "string",
                                            "enum": list(SKIP_REASONS),
                                        },
                                        "note": {
                                            "type": "string",
                                            "maxLength": MAX_SKIP_NOTE,
                                            "description": "Required when reason is other",
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "call_id": {"type": "string"},
                                    "skipped": {
                                        "type": "boolean",
                                        "description": "False when it was skipped already",
                                    },
                                },
                            }
                        ),
                        "404": _error("No such call (or not yours)"),
                        "409": _error("The outcome is recorded already (outcome_recorded)"),
                        "422": _error("No reason, an unknown one, or a missing note (invalid)"),
                        **_COMMON_ERRORS,
                    },
                }
            },
            "/api/outcomes": {
                "post": {
                    "summary": "Record how a call went (idempotent on submission_id)",
                    "parameters": _CSRF,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("OutcomeSubmission")}},
                    },
                    "responses": {
                        "201": _json(_ref("OutcomeResult"), "Stored"),
                        "200": _json(_ref("OutcomeResult"), "Already stored (a retry)"),
                        "422": _error(
                            "Field-level errors in error.fields (code invalid), keyed by "
                            "dotted path: survey.vote, email, new_numbers.0.number (not a "
                            "phone number, letters, an extension)... Without a call_id, a "
                            "volunteer's outcome may not change the contact: email, language, "
                            "support_score, do_not_call and new_numbers are then refused on "
                            "their fields. A new number already on another contact is not an "
                            "error: it is not attached, and the answer is the same as for one "
                            "that is."
                        ),
                        "503": _error(
                            "Database unavailable: send the same submission again (retry)"
                        ),
                        **_COMMON_ERRORS,
                    },
                }
            },
            "/api/contacts/{contact_id}/notes": {
                "post": {
                    "summary": "Add a comment to a contact's record",
                    "parameters": [
                        {
                            "name": "contact_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        },
                        *_CSRF,
                    ],
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["body"],
                                    "properties": {
                                        "body": {"type": "string", "maxLength": 10000},
                                        "call_id": {"type": "string"},
                                    },
                                }
                            }
                        }
                    },
                    "responses": {"201": _json({"type": "object"}), **_COMMON_ERRORS},
                }
            },
            "/api/campaigns/{campaign_id}/next": {
                "get": {
                    "summary": (
                        "The next contact to call on a list (yours, or a teammate's with owner)"
                    ),
                    "parameters": [
                        {
                            "name": "campaign_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        },
                        {"name": "owner", "in": "query", "schema": {"type": "integer"}},
                    ],
                    "description": (
                        "While an answered call's outcome is owed, the contact of that call "
                        "instead, with outcome_pending naming the call (null otherwise)."
                    ),
                    "responses": {"200": _json(_ref("NextContact")), **_COMMON_ERRORS},
                }
            },
            "/api/live/events": {
                "get": {
                    "summary": "Live call state as Server-Sent Events",
                    "description": (
                        "First a `snapshot` event ({now, items, roster?}), then `change` events "
                        "({kind, key, present, seq, payload}); a new `snapshot` replaces "
                        "everything when the stream fell behind. Volunteers see their own calls; "
                        "organizers see every call and the volunteer roster."
                    ),
                    "responses": {
                        "200": {
                            "description": "An event stream",
                            "content": {"text/event-stream": {}},
                        },
                        **_COMMON_ERRORS,
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"})},
                }
            },
            "/api/live/snapshot": {
                "get": {
                    "summary": "The same snapshot as JSON",
                    "responses": {"200": _json({"type": "object"}), **_COMMON_ERRORS},
                }
            },
        },
    }
