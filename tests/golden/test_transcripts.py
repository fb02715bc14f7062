"""Every recorded AMI session, replayed through the decoder and the call tracker.

The expected values were read off the recordings by hand (see
tests/fixtures/ami/README.md for what each one shows).  Sessions recorded
over two connections replay as one, with a ConnectionLost between the files
and the second connection's first CoreShowChannels list as the Resynced.

Each scenario is replayed twice: as production sees it (the client's
Originate registers the call, its Hangup is noted as the operator's), and
from Asterisk's events alone, where calls are discovered from their
``<call id>-v`` channel and nobody is known to have asked for a hangup.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import FrozenInstanceError, dataclass, field
from dataclasses import fields as dataclass_fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ami_bridge.codec import Decoder, Message
from ami_bridge.stream import ConnectionLost, Received, Resynced
from ami_bridge.tools.replay import (
    REPLAY_EPOCH,
    HangupSent,
    ReplayStep,
    is_supervision,
    replay,
    replay_steps,
    run,
)
from ami_bridge.tools.transcript import read_transcript
from ami_bridge.tracker import TRANSITIONS, CallTracker, CallUpdate, Command, Trigger, decide
from dialer.domain.vocabulary import CallOutcome, CallState

AMI = Path(__file__).parent.parent / "fixtures" / "ami"

S = CallState
O = CallOutcome  # noqa: E741

FULL_PATH = [
    S.REQUESTED,
    S.RINGING_VOLUNTEER,
    S.VOLUNTEER_ANSWERED,
    S.RINGING_CONTACT,
    S.TALKING,
    S.ENDED,
]
CONTACT_NOT_REACHED = [
    S.REQUESTED,
    S.RINGING_VOLUNTEER,
    S.VOLUNTEER_ANSWERED,
    S.RINGING_CONTACT,
    S.ENDED,
]

# A power session's contact: its Local volunteer leg never rings.
POWER_PATH = [S.REQUESTED, S.VOLUNTEER_ANSWERED, S.RINGING_CONTACT, S.TALKING, S.ENDED]
POWER_PATH_NOT_REACHED = [S.REQUESTED, S.VOLUNTEER_ANSWERED, S.RINGING_CONTACT, S.ENDED]


@dataclass(frozen=True)
class Expected:
    outcome: CallOutcome | None
    state: CallState = S.ENDED
    # The outcome when only Asterisk's events are known (no client hints).
    outcome_without_hints: CallOutcome | None = None
    # False for a call with no "<call id>-v" channel: events alone cannot
    # name it, only the client's Originate can.
    visible_without_hints: bool = True
    path: list[CallState] = field(default_factory=lambda: FULL_PATH)
    fields: dict[str, Any] = field(default_factory=dict)
    ring_seconds: float | None = None
    talk_seconds: float | None = None


# file(s) -> call id -> expectation
SCENARIOS: dict[tuple[str, ...], dict[str, Expected]] = {
    ("pjsip_contact_answers_then_hangs_up.ami",): {
        "c0001": Expected(
            O.COMPLETED,
            fields={
                "volunteer_channel": "PJSIP/1001-0000001b",
                "volunteer_uniqueid": "c0001-v",
                "contact_channel": "PJSIP/pstn-0000001c",
                "contact_uniqueid": "1795374123.46",
                "linkedid": "c0001-v",
                "bridge_id": "ae6a8a17-e5e9-4992-b521-8ebaa4cf81ff",
                "contact_number": "15145550180",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "volunteer_hangup_cause_text": "Normal Clearing",
                "contact_hangup_cause": 16,
                "contact_hangup_cause_text": "Normal Clearing",
                "originate_reason": 4,
                "failure_reason": None,
            },
            ring_seconds=1.006,  # DialBegin 0.005 -> DialEnd ANSWER 1.011
            talk_seconds=3.007,  # answer 1.011 -> last Hangup 4.018
        )
    },
    ("pjsip_contact_busy.ami",): {
        "c0002": Expected(
            O.CONTACT_BUSY,
            path=CONTACT_NOT_REACHED,
            fields={
                "volunteer_channel": "PJSIP/1002-0000001d",
                "contact_channel": "PJSIP/pstnbusy-0000001e",
                "contact_uniqueid": "1795374129.48",
                "linkedid": "c0002-v",
                "bridge_id": None,
                "dial_status": "BUSY",
                "volunteer_hangup_cause": 17,
                "contact_hangup_cause": 17,
                "contact_hangup_cause_text": "User busy",
                "originate_reason": 4,
            },
            ring_seconds=0.0,
        )
    },
    ("pjsip_volunteer_unreachable.ami",): {
        # Never rang (no Newstate Ringing), then cause 19 and Reason 3.
        "c0003": Expected(
            O.VOLUNTEER_UNREACHABLE,
            path=[S.REQUESTED, S.ENDED],
            fields={
                "volunteer_channel": "PJSIP/1099-0000001f",
                "volunteer_uniqueid": "c0003-v",
                "contact_channel": None,
                "contact_uniqueid": None,
                "dial_status": None,
                "volunteer_hangup_cause": 19,
                "volunteer_hangup_cause_text": "User alerting, no answer",
                "contact_hangup_cause": None,
                "originate_response": "Failure",
                "originate_reason": 3,
                "volunteer_ringing_at": None,
                "volunteer_answered_at": None,
            },
        )
    },
    ("pjsip_hangup_by_action_during_talk.ami",): {
        "c0004": Expected(
            O.HUNG_UP_BY_OPERATOR,
            outcome_without_hints=O.COMPLETED,
            fields={
                "volunteer_channel": "PJSIP/1003-00000020",
                "contact_channel": "Local/15145550184@fake-pstn-00000009;1",
                "contact_uniqueid": "1795374146.51",
                "linkedid": "c0004-v",
                "bridge_id": "033ac783-ef03-4e8d-b706-ec43d559d2c8",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
            },
            ring_seconds=1.0,  # 0.006 -> 1.006
            talk_seconds=1.507,  # 1.006 -> 2.513
        )
    },
    ("local_contact_no_answer.ami",): {
        "c0005": Expected(
            O.CONTACT_NO_ANSWER,
            path=CONTACT_NOT_REACHED,
            fields={
                "volunteer_channel": "PJSIP/1001-00000021",
                "contact_channel": "Local/15145550182@fake-pstn-0000000a;1",
                "contact_uniqueid": "1795374150.54",
                "dial_status": "NOANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 0,
                "contact_hangup_cause_text": "Unknown",
            },
            ring_seconds=4.002,  # Dial() gives up after 4 s
        )
    },
    ("local_contact_congestion_and_rejected.ami",): {
        # The ;1 half says cause 0; the ;2 half carries the real 34.
        "c0006": Expected(
            O.CONTACT_CONGESTION,
            path=CONTACT_NOT_REACHED,
            fields={
                "volunteer_channel": "PJSIP/1001-00000022",
                "contact_channel": "Local/15145550183@fake-pstn-0000000b;1",
                "contact_uniqueid": "1795374156.57",
                "dial_status": "CONGESTION",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 34,
                "contact_hangup_cause_text": "Circuit/channel congestion",
            },
            ring_seconds=0.002,
        ),
        # Dial() reports a rejection as NOANSWER; cause 21 tells them apart.
        "c0007": Expected(
            O.CONTACT_REJECTED,
            path=CONTACT_NOT_REACHED,
            fields={
                "volunteer_channel": "PJSIP/1002-00000023",
                "contact_channel": "Local/15145550185@fake-pstn-0000000c;1",
                "contact_uniqueid": "1795374156.60",
                "dial_status": "NOANSWER",
                "volunteer_hangup_cause": 21,
                "volunteer_hangup_cause_text": "Call Rejected",
                "contact_hangup_cause": 21,
            },
            ring_seconds=0.0,
        ),
    },
    ("concurrent_three_calls.ami",): {
        "c0010": Expected(
            O.COMPLETED,
            fields={
                "volunteer_channel": "PJSIP/1001-00000024",
                "contact_channel": "PJSIP/pstn-00000028",
                "contact_uniqueid": "1795374158.67",
                "linkedid": "c0010-v",
                "bridge_id": "4b52b823-78a6-4b77-afc0-4c8e2fb96d1e",
                "contact_hangup_cause": 16,
            },
            ring_seconds=1.002,
            talk_seconds=3.006,
        ),
        "c0011": Expected(
            O.CONTACT_BUSY,
            path=CONTACT_NOT_REACHED,
            fields={
                "volunteer_channel": "PJSIP/1002-00000025",
                "contact_channel": "PJSIP/pstnbusy-00000027",
                "contact_uniqueid": "1795374158.65",
                "linkedid": "c0011-v",
                "dial_status": "BUSY",
                "contact_hangup_cause": 17,
            },
            ring_seconds=0.001,
        ),
        "c0012": Expected(
            O.COMPLETED,
            fields={
                "volunteer_channel": "PJSIP/1003-00000026",
                "contact_channel": "Local/15145550170@fake-pstn-0000000d;1",
                "contact_uniqueid": "1795374158.66",
                "linkedid": "c0012-v",
                "bridge_id": "cef2ddee-c2d4-47ec-9b1d-4abe74021a8a",
            },
            ring_seconds=0.999,
            talk_seconds=4.507,
        ),
    },
    ("least_privilege_user_call_and_resync.ami",): {
        # No VarSet, no Newexten, no FullyBooted: nothing the tracker needs.
        "c0020": Expected(
            O.HUNG_UP_BY_OPERATOR,
            outcome_without_hints=O.COMPLETED,
            fields={
                "volunteer_channel": "PJSIP/1001-00000036",
                "contact_channel": "Local/15145550184@fake-pstn-00000012;1",
                "contact_uniqueid": "1795374416.91",
                "bridge_id": "c0713d31-59fb-4301-8e86-41d1b9d96390",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
            },
            ring_seconds=1.001,
            talk_seconds=0.003,
        )
    },
    (
        "reconnect_1_connection_lost_mid_call.ami",
        "reconnect_2_new_connection_resyncs.ami",
    ): {
        # The resync finds the call still up and re-attaches it; the client
        # then hangs the volunteer leg up by regex.
        "c0030": Expected(
            O.HUNG_UP_BY_OPERATOR,
            outcome_without_hints=O.COMPLETED,
            fields={
                "volunteer_channel": "PJSIP/1002-00000037",
                "contact_channel": "Local/15145550194@fake-pstn-00000013;1",
                "contact_uniqueid": "1795374484.94",
                "linkedid": "c0030-v",
                "bridge_id": "4ffd60ed-ff4e-4928-9fdf-ed1325e27db6",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
            },
            ring_seconds=1.002,
            # 1.007 -> the second file's 0.504 plus the estimated gap: a lower
            # bound (the Local ;1 was 2 whole seconds old at the listing).
            talk_seconds=1.5,
        )
    },
    (
        "restart_1_asterisk_restarts_mid_call.ami",
        "restart_2_after_restart_call_is_gone.ami",
    ): {
        # SoftHangupRequest Cause 4 (shutdown) on every channel, then Hangup.
        "c0031": Expected(
            O.FAILED,
            fields={
                "failure_reason": "Asterisk shut down during the call",
                "volunteer_channel": "PJSIP/1003-00000038",
                "contact_channel": "Local/15145550194@fake-pstn-00000014;1",
                "contact_uniqueid": "1795374487.97",
                "bridge_id": "8b9d882e-8034-462e-a566-f201f24ce30f",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
            },
            ring_seconds=1.001,
            talk_seconds=1.134,
        )
    },
    (
        "crash_1_asterisk_killed_mid_call.ami",
        "crash_2_after_restart_call_is_gone.ami",
    ): {
        # No Hangup ever: only the empty resync ends it, and nobody knows how.
        "c0032": Expected(
            O.LOST,
            fields={
                "volunteer_channel": "PJSIP/1001-00000000",
                "contact_channel": "Local/15145550194@fake-pstn-00000000;1",
                "contact_uniqueid": "1795374503.1",
                "bridge_id": "fd7e37b9-6aa4-4ce1-be14-55b1b89e7582",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": None,
                "contact_hangup_cause": None,
            },
            ring_seconds=1.001,
            talk_seconds=None,
        )
    },
    ("bad_actions.ami",): {
        # Neither Originate has a ChannelId: the replay names them by ActionID.
        # A missing endpoint looks, on the wire, exactly like an unplugged
        # phone (Reason 0, no channel): the volunteer could not be reached.
        "82ad6aef8600": Expected(
            O.VOLUNTEER_UNREACHABLE,
            visible_without_hints=False,
            path=[S.REQUESTED, S.ENDED],
            fields={
                "volunteer_endpoint": "PJSIP/nosuch",
                "volunteer_channel": None,
                "originate_response": "Failure",
                "originate_reason": 0,
                "failure_reason": (
                    "Asterisk refused to ring PJSIP/nosuch (OriginateResponse Reason 0 with no "
                    "channel): its phone is unreachable or not registered, or no such endpoint"
                ),
            },
        ),
        "871494b83e52": Expected(
            O.FAILED,
            visible_without_hints=False,
            path=[S.REQUESTED, S.ENDED],
            fields={
                "failure_reason": "Asterisk refused the Originate: Extension does not exist.",
                "originate_reason": None,
            },
        ),
    },
    # Recorded by tests/pbx/record_transcripts.py on the shipped
    # asterisk-config/ (contacts dialed as PJSIP/<number>@carrier through
    # [dialer-place-call]), the Originate built by the dialer's own client.
    ("shipped_volunteer_unplugged.ami",): {
        # Qualify had the phone Unavailable: refused at once, no channel
        # ever, so events alone never see the call.
        "s0001": Expected(
            O.VOLUNTEER_UNREACHABLE,
            visible_without_hints=False,
            path=[S.REQUESTED, S.ENDED],
            fields={
                "volunteer_channel": None,
                "volunteer_uniqueid": None,
                "contact_channel": None,
                "dial_status": None,
                "volunteer_hangup_cause": None,
                "originate_response": "Failure",
                "originate_reason": 0,
                "failure_reason": (
                    "Asterisk refused to ring PJSIP/1099 (OriginateResponse Reason 0 with no "
                    "channel): its phone is unreachable or not registered, or no such endpoint"
                ),
            },
        )
    },
    ("shipped_volunteer_busy.ami",): {
        # 486 from the phone: Reason 0 (not 5), the cause says busy.
        "s0002": Expected(
            O.VOLUNTEER_BUSY,
            path=[S.REQUESTED, S.ENDED],
            fields={
                "volunteer_channel": "PJSIP/1031-00000000",
                "volunteer_uniqueid": "s0002-v",
                "contact_channel": None,
                "volunteer_hangup_cause": 17,
                "volunteer_hangup_cause_text": "User busy",
                "originate_response": "Failure",
                "originate_reason": 0,
                "volunteer_ringing_at": None,
                "failure_reason": None,
            },
        )
    },
    ("shipped_volunteer_no_answer.ami",): {
        # Rang until the Originate's 15 s Timeout: cause 19, Reason 3, no DialEnd.
        "s0003": Expected(
            O.VOLUNTEER_NO_ANSWER,
            path=[S.REQUESTED, S.RINGING_VOLUNTEER, S.ENDED],
            fields={
                "volunteer_channel": "PJSIP/1032-00000001",
                "contact_channel": None,
                "dial_status": None,
                "volunteer_hangup_cause": 19,
                "volunteer_hangup_cause_text": "User alerting, no answer",
                "originate_response": "Failure",
                "originate_reason": 3,
                "volunteer_answered_at": None,
            },
        )
    },
    ("shipped_volunteer_declines.ami",): {
        # 603 from the phone: cause 21, Reason 0; declining is being busy.
        "s0004": Expected(
            O.VOLUNTEER_BUSY,
            path=[S.REQUESTED, S.ENDED],
            fields={
                "volunteer_channel": "PJSIP/1033-00000002",
                "volunteer_hangup_cause": 21,
                "volunteer_hangup_cause_text": "Call Rejected",
                "originate_response": "Failure",
                "originate_reason": 0,
            },
        )
    },
    ("shipped_contact_answers_then_hangs_up.ami",): {
        "s0005": Expected(
            O.COMPLETED,
            fields={
                "volunteer_channel": "PJSIP/1001-00000003",
                "volunteer_uniqueid": "s0005-v",
                "contact_channel": "PJSIP/carrier-00000004",
                "contact_uniqueid": "1796473857.4",
                "linkedid": "s0005-v",
                "bridge_id": "90191004-a357-4b02-b334-78287f56fbbf",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
                "originate_reason": 4,
            },
            ring_seconds=1.007,
            talk_seconds=3.004,
        )
    },
    # A volunteer whose phone is their own number: the Originate's channel is
    # Local/<number>@dialer-outbound/n, whose ;2 half dials the number through
    # the carrier while its ;1 half (the "-v" leg) waits, then dials the contact.
    ("shipped_own_number_contact_answers_then_hangs_up.ami",): {
        "s0015": Expected(
            O.COMPLETED,
            fields={
                "volunteer_channel": "Local/15145550125@dialer-outbound-00000000;1",
                "volunteer_uniqueid": "s0015-v",
                "contact_channel": "PJSIP/carrier-00000001",
                "contact_uniqueid": "1796597619.3",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
                "originate_reason": 4,
            },
            ring_seconds=1.005,
            talk_seconds=3.006,
        )
    },
    ("shipped_own_number_busy.ami",): {
        # The carrier's 486 on the ;2 half's dial: cause 17 on both halves,
        # Reason 0, as a busy desk phone gives.
        "s0016": Expected(
            O.VOLUNTEER_BUSY,
            path=[S.REQUESTED, S.ENDED],
            fields={
                "volunteer_channel": "Local/15145550131@dialer-outbound-00000001;1",
                "contact_channel": None,
                "dial_status": None,
                "volunteer_hangup_cause": 17,
                "volunteer_hangup_cause_text": "User busy",
                # The ;2 half's cause is the volunteer's, not a contact's.
                "contact_hangup_cause": None,
                "originate_reason": 0,
            },
        )
    },
    ("shipped_contact_busy.ami",): {
        "s0006": Expected(
            O.CONTACT_BUSY,
            path=CONTACT_NOT_REACHED,
            fields={
                "volunteer_channel": "PJSIP/1002-00000005",
                "contact_channel": "PJSIP/carrier-00000006",
                "contact_uniqueid": "1796473863.6",
                "dial_status": "BUSY",
                "volunteer_hangup_cause": 17,
                "contact_hangup_cause": 17,
                "contact_hangup_cause_text": "User busy",
            },
            ring_seconds=0.003,
        )
    },
    ("shipped_contact_no_answer.ami",): {
        # The shipped DIALER_RING_TIMEOUT: 30 s.
        "s0007": Expected(
            O.CONTACT_NO_ANSWER,
            path=CONTACT_NOT_REACHED,
            fields={
                "volunteer_channel": "PJSIP/1009-00000007",
                "contact_channel": "PJSIP/carrier-00000008",
                "dial_status": "NOANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 0,
            },
            ring_seconds=30.027,
        )
    },
    ("shipped_contact_declines.ami",): {
        # 603: NOANSWER, cause 21 (DIALSTATUS says CHANUNAVAIL).
        "s0008": Expected(
            O.CONTACT_REJECTED,
            path=CONTACT_NOT_REACHED,
            fields={
                "volunteer_channel": "PJSIP/1004-00000009",
                "contact_channel": "PJSIP/carrier-0000000a",
                "dial_status": "NOANSWER",
                "volunteer_hangup_cause": 21,
                "contact_hangup_cause": 21,
                "contact_hangup_cause_text": "Call Rejected",
            },
            ring_seconds=0.006,
        )
    },
    ("shipped_contact_congestion.ami",): {
        # 503: CONGESTION, cause 34.
        "s0009": Expected(
            O.CONTACT_CONGESTION,
            path=CONTACT_NOT_REACHED,
            fields={
                "volunteer_channel": "PJSIP/1005-0000000b",
                "contact_channel": "PJSIP/carrier-0000000c",
                "dial_status": "CONGESTION",
                "volunteer_hangup_cause": 34,
                "contact_hangup_cause": 34,
                "contact_hangup_cause_text": "Circuit/channel congestion",
            },
            ring_seconds=0.009,
        )
    },
    ("shipped_contact_not_found.ami",): {
        # 404: NOANSWER like a 603, but cause 1: the number does not exist.
        "s0010": Expected(
            O.CONTACT_UNREACHABLE,
            path=CONTACT_NOT_REACHED,
            fields={
                "volunteer_channel": "PJSIP/1006-0000000d",
                "contact_channel": "PJSIP/carrier-0000000e",
                "dial_status": "NOANSWER",
                "volunteer_hangup_cause": 1,
                "contact_hangup_cause": 1,
                "contact_hangup_cause_text": "Unallocated (unassigned) number",
            },
            ring_seconds=0.008,
        )
    },
    ("shipped_volunteer_hangs_up_during_talk.ami",): {
        # The volunteer's phone sent BYE: a call that reached the contact.
        "s0011": Expected(
            O.COMPLETED,
            fields={
                "volunteer_channel": "PJSIP/1030-0000000f",
                "contact_channel": "PJSIP/carrier-00000010",
                "bridge_id": "99d395f9-0179-43a2-ae35-3b6fb1833ff2",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
            },
            ring_seconds=1.011,
            talk_seconds=1.992,
        )
    },
    ("shipped_hangup_by_operator_during_talk.ami",): {
        "s0012": Expected(
            O.HUNG_UP_BY_OPERATOR,
            outcome_without_hints=O.COMPLETED,
            fields={
                "volunteer_channel": "PJSIP/1007-00000011",
                "contact_channel": "PJSIP/carrier-00000012",
                "contact_uniqueid": "1796473905.18",
                "bridge_id": "44fd39e6-30c0-4fb0-bdf9-a417ed706007",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
            },
            ring_seconds=1.013,
            talk_seconds=1.508,
        )
    },
    # An organizer's phone rung into the call ([dialer-supervise]): its
    # channel (<call id>-spy1, its own Linkedid) is no part of the call, and
    # the Originate carrying DIALER_SPY_CHANNEL registers no call of its own.
    ("shipped_listen_during_talk.ami",): {
        "s0017": Expected(
            O.HUNG_UP_BY_OPERATOR,
            outcome_without_hints=O.COMPLETED,
            fields={
                "volunteer_channel": "PJSIP/1011-00000000",
                "contact_channel": "PJSIP/carrier-00000001",
                "contact_uniqueid": "1796614962.1",
                "bridge_id": "6b820b68-84ba-4629-bd5d-ac4ab670ecca",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
            },
            ring_seconds=1.014,
            talk_seconds=3.512,
        )
    },
    ("shipped_barge_with_beep.ami",): {
        "s0018": Expected(
            O.HUNG_UP_BY_OPERATOR,
            outcome_without_hints=O.COMPLETED,
            fields={
                "volunteer_channel": "PJSIP/1013-00000003",
                "contact_channel": "PJSIP/carrier-00000004",
                "contact_uniqueid": "1796614968.4",
                "bridge_id": "f36270c3-b490-4c8d-acd4-80eff19d00e6",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
            },
            ring_seconds=1.011,
            talk_seconds=3.511,
        )
    },
    # Power mode (see the fixtures' README): the session's leg (ps19-s, desk
    # phone 1015 in ConfBridge dialer-power-19) is no call of the tracker's;
    # each contact is one, whose volunteer leg is the Local channel into the
    # conference, answered at once (no volunteer ringing).
    ("shipped_power_session.ami",): {
        "s0019": Expected(
            O.COMPLETED,
            path=POWER_PATH,
            fields={
                "volunteer_channel": "Local/19@dialer-power-join-00000001;1",
                "volunteer_uniqueid": "s0019-v",
                "contact_channel": "PJSIP/carrier-00000001",
                "contact_uniqueid": "1796622631.5",
                "linkedid": "s0019-v",
                "bridge_id": "3aba645b-8ade-4125-9525-785eaff23f53",
                "contact_number": "15145550100",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
                "originate_reason": 4,
                "failure_reason": None,
            },
            ring_seconds=1.063,
            talk_seconds=2.95,
        ),
        "s0020": Expected(
            O.CONTACT_BUSY,
            path=POWER_PATH_NOT_REACHED,
            fields={
                "volunteer_channel": "Local/19@dialer-power-join-00000002;1",
                "contact_channel": "PJSIP/carrier-00000002",
                "dial_status": "BUSY",
                "volunteer_hangup_cause": 17,
                "contact_hangup_cause": 17,
                "originate_reason": 4,
            },
            ring_seconds=0.048,
        ),
        "s0021": Expected(
            O.CONTACT_REJECTED,
            path=POWER_PATH_NOT_REACHED,
            fields={
                "volunteer_channel": "Local/19@dialer-power-join-00000003;1",
                "contact_channel": "PJSIP/carrier-00000003",
                "dial_status": "NOANSWER",
                "volunteer_hangup_cause": 21,
                "contact_hangup_cause": 21,
                "contact_hangup_cause_text": "Call Rejected",
            },
            ring_seconds=0.006,
        ),
        # The volunteer's leg hung up by action while the contact talked:
        # ConfBridge put the ;2 half out, which hung up the ;1 half and the
        # contact.  As when a desk phone hangs up mid-talk
        # (shipped_volunteer_hangs_up_during_talk): the contact talked, the
        # call completed.  The client's Hangup names the session's channel,
        # which is no call's, so the replay notes no operator hang-up.
        "s0022": Expected(
            O.COMPLETED,
            path=POWER_PATH,
            fields={
                "volunteer_channel": "Local/19@dialer-power-join-00000004;1",
                "contact_channel": "PJSIP/carrier-00000004",
                "contact_uniqueid": "1796622638.14",
                "bridge_id": "acbcfad4-989b-4849-95e7-94703ce9b99a",
                "dial_status": "ANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
                "hangup_requested_by": None,
            },
            ring_seconds=1.012,
            talk_seconds=1.506,
        ),
        # Dialed after the volunteer left: the ;2 half found no volunteer and
        # hung up before the ;1 half was answered; the contact was never
        # dialed, and the ;2 half's cause is the volunteer side's.
        "s0023": Expected(
            O.VOLUNTEER_UNREACHABLE,
            path=[S.REQUESTED, S.ENDED],
            fields={
                "volunteer_channel": "Local/19@dialer-power-join-00000005;1",
                "volunteer_uniqueid": "s0023-v",
                "contact_channel": None,
                "contact_uniqueid": None,
                "dial_status": None,
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": None,
                "originate_response": "Failure",
                "originate_reason": 0,
                "volunteer_answered_at": None,
            },
        ),
    },
    ("shipped_refused_by_dialplan.ami",): {
        # [dialer-refuse] hung the answered volunteer up with cause 34
        # before any Dial(): no contact leg at all.
        "s0013": Expected(
            O.FAILED,
            path=[S.REQUESTED, S.RINGING_VOLUNTEER, S.VOLUNTEER_ANSWERED, S.ENDED],
            fields={
                "volunteer_channel": "PJSIP/1008-00000013",
                "contact_channel": None,
                "dial_status": None,
                "volunteer_hangup_cause": 34,
                "originate_reason": 4,
                "failure_reason": "the volunteer answered but the contact was never dialled",
            },
        )
    },
    ("shipped_hangup_by_volunteer_while_contact_rings.ami",): {
        # The replay takes every Hangup the client sent for the operator's
        # (test_the_volunteer_cancels_a_ringing_contact has the volunteer's);
        # events alone look like a Dial() that was never answered.
        "s0014": Expected(
            O.HUNG_UP_BY_OPERATOR,
            outcome_without_hints=O.CONTACT_NO_ANSWER,
            path=CONTACT_NOT_REACHED,
            fields={
                "volunteer_channel": "PJSIP/1010-00000014",
                "contact_channel": "PJSIP/carrier-00000015",
                "dial_status": "NOANSWER",
                "volunteer_hangup_cause": 16,
                "contact_hangup_cause": 16,
            },
            ring_seconds=1.504,
        )
    },
    # The second file of each pair on its own: a fresh worker after a restart.
    ("reconnect_2_new_connection_resyncs.ami",): {
        # Discovered from the resync listing, bridged: its answer time is
        # taken as its contact leg's creation, which the listing says was 2 s
        # before the resync (Duration 00:00:02), so talk time counts from
        # then (-1.999 -> 0.504).
        "c0030": Expected(
            O.HUNG_UP_BY_OPERATOR,
            outcome_without_hints=O.COMPLETED,
            path=[S.TALKING, S.ENDED],
            fields={
                "discovered": True,
                "volunteer_channel": "PJSIP/1002-00000037",
                "contact_channel": "Local/15145550194@fake-pstn-00000013;1",
                "contact_uniqueid": "1795374484.94",
                "bridge_id": "4ffd60ed-ff4e-4928-9fdf-ed1325e27db6",
                "dial_status": None,
                "volunteer_hangup_cause": 16,
            },
            talk_seconds=2.503,
        )
    },
    ("restart_2_after_restart_call_is_gone.ami",): {},
    ("crash_2_after_restart_call_is_gone.ami",): {},
}

PAIRED_FIRST_FILES = {
    "reconnect_1_connection_lost_mid_call.ami": "c0030",
    "restart_1_asterisk_restarts_mid_call.ami": "c0031",
    "crash_1_asterisk_killed_mid_call.ami": "c0032",
}


def _replay(files: tuple[str, ...], *, client_hints: bool) -> dict[str, list[CallUpdate]]:
    steps = list(replay_steps([AMI / name for name in files]))
    updates: dict[str, list[CallUpdate]] = defaultdict(list)
    tracker = CallTracker()
    for step in steps:
        for update in run([step], tracker, client_hints=client_hints).values():
            updates[update.call_id].append(update)
    return updates


def _path(updates: list[CallUpdate]) -> list[CallState]:
    path: list[CallState] = []
    for update in updates:
        if not path or path[-1] is not update.state:
            path.append(update.state)
    return path


def test_every_recording_is_covered() -> None:
    covered = {name for files in SCENARIOS for name in files}
    assert covered == {path.name for path in AMI.glob("*.ami")}


@pytest.mark.parametrize("client_hints", [True, False], ids=["with_client", "events_only"])
@pytest.mark.parametrize("files", list(SCENARIOS), ids=lambda files: "+".join(files))
def test_recorded_session(files: tuple[str, ...], client_hints: bool) -> None:
    expected = SCENARIOS[files]
    updates = _replay(files, client_hints=client_hints)
    if not client_hints:
        expected = {
            call_id: spec for call_id, spec in expected.items() if spec.visible_without_hints
        }
    assert set(updates) == set(expected)
    for call_id, spec in expected.items():
        last = updates[call_id][-1]
        outcome = spec.outcome
        if not client_hints and spec.outcome_without_hints is not None:
            outcome = spec.outcome_without_hints
        assert (last.state, last.outcome) == (spec.state, outcome), call_id
        assert _path(updates[call_id]) == spec.path, call_id
        for name, value in spec.fields.items():
            if name == "discovered" or (not client_hints and name == "volunteer_endpoint"):
                continue
            assert getattr(last, name) == value, (call_id, name)
        assert last.discovered is (not client_hints or spec.fields.get("discovered", False))
        if spec.ring_seconds is None:
            assert last.ring_seconds is None, call_id
        else:
            assert last.ring_seconds == pytest.approx(spec.ring_seconds, abs=0.0005), call_id
        if spec.talk_seconds is None:
            assert last.talk_seconds is None, call_id
        else:
            assert last.talk_seconds == pytest.approx(spec.talk_seconds, abs=0.0005), call_id
        assert last.ended_at is not None
        assert last.contact_answered_at is None or last.contact_answered_at <= last.ended_at


@pytest.mark.parametrize("first", list(PAIRED_FIRST_FILES))
def test_first_file_alone_leaves_the_call_as_it_was_last_seen(first: str) -> None:
    updates = _replay((first,), client_hints=True)
    call_id = PAIRED_FIRST_FILES[first]
    last = updates[call_id][-1]
    if first.startswith("restart"):
        # Asterisk hung the channels up before closing: the end was seen.
        assert (last.state, last.outcome) == (S.ENDED, O.FAILED)
    else:
        assert (last.state, last.outcome) == (S.TALKING, None)
        assert last.ended_at is None


@pytest.mark.parametrize("first", ["reconnect", "crash"])
def test_connection_lost_ends_nothing_and_the_resync_decides(first: str) -> None:
    files = tuple(name for name in sorted(p.name for p in AMI.glob(f"{first}_*.ami")))
    call_id = "c0030" if first == "reconnect" else "c0032"
    tracker = CallTracker()
    steps: list[ReplayStep] = list(replay_steps([AMI / name for name in files]))
    lost = next(i for i, step in enumerate(steps) if isinstance(step, ConnectionLost))
    resynced = next(i for i, step in enumerate(steps) if isinstance(step, Resynced))
    assert lost < resynced
    run(steps[:lost], tracker)
    assert run(steps[lost : lost + 1], tracker) == {}
    before = tracker.get(call_id)
    assert before is not None
    assert (before.state, before.outcome) == (S.TALKING, None)
    run(steps[lost + 1 : resynced], tracker)
    after = run(steps[resynced : resynced + 1], tracker)
    if first == "reconnect":
        # Still talking on the new connection: re-attached, nothing to report.
        assert after == {}
        again = tracker.get(call_id)
        assert again is not None
        assert again.state is S.TALKING
    else:
        update = after[call_id]
        assert (update.previous_state, update.state, update.outcome) == (
            S.TALKING,
            S.ENDED,
            O.LOST,
        )
        assert update.ended_at == steps[resynced].at


def test_replay_matches_the_golden_outcomes() -> None:
    calls = replay(AMI / "concurrent_three_calls.ami")
    assert [(call["call_id"], call["outcome"]) for call in calls] == [
        ("c0010", "completed"),
        ("c0011", "contact_busy"),
        ("c0012", "completed"),
    ]


# ------------------------------------------------ variations on the recordings
#
# The same sessions, bent the ways a live stream bends: events repeated,
# garbage in between, a step missed while disconnected, other endings.


def _bent(tmp_path: Path, name: str, *edits: tuple[bytes, bytes]) -> Path:
    data = (AMI / name).read_bytes()
    for old, new in edits:
        assert old in data, old
        data = data.replace(old, new)
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _final(path: Path, *, client_hints: bool = True) -> dict[str, CallUpdate]:
    return run(replay_steps([path]), client_hints=client_hints)


@pytest.mark.parametrize("files", [files for files in SCENARIOS if files], ids="+".join)
def test_every_event_twice_changes_nothing(files: tuple[str, ...]) -> None:
    steps = list(replay_steps([AMI / name for name in files]))
    doubled: list[ReplayStep] = []
    for step in steps:
        doubled.append(step)
        if isinstance(step, Received):
            doubled.append(step)
    once = run(steps)
    twice = run(doubled)
    assert {k: (v.state, v.outcome, v.talk_seconds) for k, v in twice.items()} == {
        k: (v.state, v.outcome, v.talk_seconds) for k, v in once.items()
    }


GARBAGE = [
    Message(fields={}),
    Message(fields={"Event": "Hangup"}),
    Message(fields={"Event": "Hangup", "Uniqueid": "1795374123.99", "Cause": "sixteen"}),
    Message(fields={"Event": "Newchannel", "Uniqueid": "-v"}),
    Message(fields={"Event": "DialBegin", "Uniqueid": "c0001-v"}),
    Message(fields={"Event": "DialEnd", "Uniqueid": "c0001-v", "DialStatus": "WHAT"}),
    Message(fields={"Event": "OriginateResponse", "ActionID": "x", "Reason": "nan"}),
    Message(fields={"Event": "BridgeEnter"}),
    Message(fields={"Response": "Error", "ActionID": "nobody"}),
    Message(fields={"Response": "Error"}),
    Message(fields={"Event": "Shutdown"}),
]


def test_garbage_between_the_events_is_ignored() -> None:
    steps = list(replay_steps([AMI / "pjsip_contact_answers_then_hangs_up.ami"]))
    tracker = CallTracker()
    noisy: list[ReplayStep] = []
    for step in steps:
        noisy.append(step)
        if isinstance(step, Received) and step.message.event != "Hangup":
            noisy += [Received(message, step.at) for message in GARBAGE[:-1]]
    final = run(noisy, tracker)
    assert set(final) == {"c0001"}
    assert (final["c0001"].outcome, final["c0001"].dial_status) == (O.COMPLETED, "ANSWER")
    assert tracker.feed(object()) == []  # type: ignore[arg-type]


def test_decoded_garbage_never_raises() -> None:
    tracker = CallTracker()
    decoder = Decoder(expect_banner=False)
    noise = (
        b"Event: Hangup\r\nUniqueid\r\n\r\nEvent: Newchannel\r\nUniqueid: c1-v\r\nLinkedid:\r\n\r\n"
    )
    for message in decoder.feed(
        noise + b"\xff\xfe\r\n\r\nEvent: Newstate\r\nUniqueid: c1-v\r\n\r\n"
    ):
        tracker.feed(Received(message, REPLAY_EPOCH))
    live = tracker.get("c1")
    assert live is not None
    assert live.discovered


def test_the_transition_table() -> None:
    order = list(CallState)
    for state in CallState:
        for trigger in Trigger:
            new_state, commands = decide(state, trigger)
            if trigger in TRANSITIONS[state]:
                assert order.index(new_state) > order.index(state)
                assert commands
            else:
                # Never backwards, never out of ENDED: ignored.
                assert (new_state, commands) == (state, ())
    assert TRANSITIONS[S.ENDED] == {}
    assert decide(S.REQUESTED, Trigger.ENDED) == (S.ENDED, (Command.FINISH,))


def test_volunteer_hangs_up_while_the_contact_rings(tmp_path: Path) -> None:
    path = _bent(
        tmp_path, "local_contact_no_answer.ami", (b"DialStatus: NOANSWER", b"DialStatus: CANCEL")
    )
    assert _final(path)["c0005"].outcome is O.HUNG_UP_BY_VOLUNTEER


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [(b"5", O.VOLUNTEER_BUSY), (b"8", O.VOLUNTEER_UNREACHABLE), (b"1", O.VOLUNTEER_UNREACHABLE)],
)
def test_volunteer_leg_reasons(tmp_path: Path, reason: bytes, outcome: CallOutcome) -> None:
    path = _bent(
        tmp_path,
        "pjsip_volunteer_unreachable.ami",
        (b"Reason: 3", b"Reason: " + reason),
        (b"Cause: 19\r\nCause-txt: User alerting, no answer", b"Cause: 16\r\nCause-txt: Normal"),
    )
    assert _final(path)["c0003"].outcome is outcome


def test_a_volunteer_phone_that_rang_was_not_answered(tmp_path: Path) -> None:
    # The same no-answer timeout, but this phone did say it was ringing.
    data = (AMI / "pjsip_volunteer_unreachable.ami").read_bytes()
    dial_begin = data.index(b"Event: DialBegin")
    frame_end = data.index(b"\r\n\r\n", dial_begin) + 4
    ringing = (
        b"<<< t=0.003\nEvent: Newstate\r\nChannel: PJSIP/1099-0000001f\r\nChannelState: 5\r\n"
        b"ChannelStateDesc: Ringing\r\nUniqueid: c0003-v\r\nLinkedid: c0003-v\r\n\r\n"
    )
    path = tmp_path / "rang.ami"
    path.write_bytes(data[:frame_end] + ringing + data[frame_end:])
    final = _final(path)["c0003"]
    assert final.outcome is O.VOLUNTEER_NO_ANSWER
    assert final.volunteer_ringing_at is not None


def test_the_volunteer_cancels_from_the_screen() -> None:
    steps = list(replay_steps([AMI / "local_contact_no_answer.ami"]))
    tracker = CallTracker()
    dial_begin = next(
        i
        for i, step in enumerate(steps)
        if isinstance(step, Received)
        and step.message.event == "DialBegin"
        and step.message.get("Uniqueid")
    )
    run(steps[: dial_begin + 1], tracker)
    [noted] = tracker.note_hangup_requested("c0005", by="volunteer", at=steps[dial_begin].at)
    assert (noted.hangup_requested_by, noted.state) == ("volunteer", S.RINGING_CONTACT)
    assert tracker.note_hangup_requested("c0005", by="operator", at=steps[dial_begin].at) == []
    assert run(steps[dial_begin + 1 :], tracker)["c0005"].outcome is O.HUNG_UP_BY_VOLUNTEER


def test_a_volunteer_hangup_request_after_the_answer_is_still_completed() -> None:
    steps = list(replay_steps([AMI / "pjsip_contact_answers_then_hangs_up.ami"]))
    tracker = CallTracker()
    bridged = next(
        i
        for i, step in enumerate(steps)
        if isinstance(step, Received) and step.message.event == "BridgeEnter"
    )
    run(steps[: bridged + 1], tracker)
    tracker.note_hangup_requested("c0001", by="volunteer", at=steps[bridged].at)
    final = run(steps[bridged + 1 :], tracker)["c0001"]
    assert (final.outcome, final.hangup_requested_by) == (O.COMPLETED, "volunteer")


def test_a_refused_originate(tmp_path: Path) -> None:
    tracker = CallTracker()
    [registered] = tracker.register(
        "c77", volunteer_channel="PJSIP/1001", contact_number="15145550180", at=REPLAY_EPOCH
    )
    assert (registered.state, registered.previous_state, registered.discovered) == (
        S.REQUESTED,
        None,
        False,
    )
    [ended] = tracker.note_originate_error(
        "c77", message="Extension does not exist.", at=REPLAY_EPOCH
    )
    assert (ended.state, ended.outcome) == (S.ENDED, O.FAILED)
    assert ended.failure_reason == "Asterisk refused the Originate: Extension does not exist."
    assert tracker.get("c77") == ended
    assert (
        tracker.register("c77", volunteer_channel="PJSIP/1001", contact_number="1", at=REPLAY_EPOCH)
        == []
    )
    assert tracker.note_originate_error("c77", message="again", at=REPLAY_EPOCH) == []


def test_a_step_missed_while_disconnected_is_recovered_by_the_resync() -> None:
    # Lose the connection while the contact is still ringing; the resync
    # shows the legs bridged: the call is talking from the resync on.
    first = list(replay_steps([AMI / "reconnect_1_connection_lost_mid_call.ami"]))
    ringing = next(
        i
        for i, step in enumerate(first)
        if isinstance(step, Received)
        and step.message.event == "DialState"
        and step.message.get("Uniqueid") == "c0030-v"
    )
    rest = list(
        replay_steps(
            [
                AMI / "reconnect_1_connection_lost_mid_call.ami",
                AMI / "reconnect_2_new_connection_resyncs.ami",
            ]
        )
    )
    lost = next(i for i, step in enumerate(rest) if isinstance(step, ConnectionLost))
    resynced = next(i for i, step in enumerate(rest) if isinstance(step, Resynced))
    tracker = CallTracker()
    run(first[: ringing + 1], tracker)
    assert tracker.feed(rest[lost]) == []  # type: ignore[arg-type]
    before = tracker.get("c0030")
    assert before is not None and before.state is S.RINGING_CONTACT
    [update] = tracker.feed(rest[resynced])  # type: ignore[arg-type]
    assert (update.previous_state, update.state) == (S.RINGING_CONTACT, S.TALKING)
    assert update.contact_answered_at == rest[resynced].at
    assert update.bridge_id == "4ffd60ed-ff4e-4928-9fdf-ed1325e27db6"
    final = run(rest[resynced + 1 :], tracker)["c0030"]
    assert final.outcome is O.HUNG_UP_BY_OPERATOR


def test_a_restarted_worker_keeps_the_answer_times_it_had_stored() -> None:
    # A worker restarted mid-call hands the call back with what it stored;
    # the resync that re-attaches it must not replace those times.
    steps = list(replay_steps([AMI / "reconnect_2_new_connection_resyncs.ami"]))
    resynced = next(i for i, step in enumerate(steps) if isinstance(step, Resynced))
    answered = steps[resynced].at - timedelta(seconds=11)  # type: ignore[union-attr]
    tracker = CallTracker()
    tracker.register(
        "c0030",
        volunteer_channel="PJSIP/1002",
        contact_number="15145550194",
        at=answered - timedelta(seconds=5),
        resumed=True,
        volunteer_answered_at=answered - timedelta(seconds=2),
        contact_answered_at=answered,
    )
    final = run(steps, tracker)["c0030"]
    assert final.contact_answered_at == answered
    assert final.volunteer_answered_at == answered - timedelta(seconds=2)
    assert final.talk_seconds == pytest.approx(
        (final.ended_at - answered).total_seconds()  # type: ignore[operator]
    )


def test_a_call_never_seen_and_not_listed_is_lost() -> None:
    tracker = CallTracker()
    tracker.register("c1", volunteer_channel="PJSIP/1001", contact_number="1", at=REPLAY_EPOCH)
    tracker.feed(ConnectionLost("gone", REPLAY_EPOCH))
    [update] = tracker.feed(Resynced((), REPLAY_EPOCH))
    assert (update.state, update.outcome) == (S.ENDED, O.LOST)
    assert tracker.live_calls() == []


def test_a_call_heard_from_on_the_new_connection_survives_an_empty_listing() -> None:
    steps = list(replay_steps([AMI / "pjsip_contact_answers_then_hangs_up.ami"]))
    tracker = CallTracker()
    tracker.feed(ConnectionLost("gone", REPLAY_EPOCH))
    bridged = next(
        i
        for i, step in enumerate(steps)
        if isinstance(step, Received) and step.message.event == "BridgeEnter"
    )
    run(steps[: bridged + 1], tracker)
    assert tracker.feed(Resynced((), steps[bridged].at)) == []
    assert run(steps[bridged + 1 :], tracker)["c0001"].outcome is O.COMPLETED


def test_shutdown_then_nothing_listed_is_a_failure_not_a_mystery(tmp_path: Path) -> None:
    steps = list(replay_steps([AMI / "crash_1_asterisk_killed_mid_call.ami"]))
    tracker = CallTracker()
    run(steps, tracker)
    end = steps[-1].at
    tracker.feed(Received(Message(fields={"Event": "Shutdown", "Restart": "True"}), end))
    tracker.feed(ConnectionLost("closed_by_server", end))
    [update] = tracker.feed(Resynced((), end))
    assert (update.outcome, update.failure_reason) == (
        O.FAILED,
        "Asterisk shut down while the call was up",
    )


def test_events_after_the_end_do_not_bring_a_call_back() -> None:
    steps = list(replay_steps([AMI / "pjsip_contact_busy.ami"]))
    tracker = CallTracker()
    run(steps, tracker)
    ended = tracker.get("c0002")
    assert ended is not None and ended.ended
    replayed = run([step for step in steps if isinstance(step, Received)], tracker)
    assert replayed == {}
    assert tracker.get("c0002") == ended


def test_register_after_discovery_fills_in() -> None:
    steps = list(replay_steps([AMI / "pjsip_contact_answers_then_hangs_up.ami"]))
    tracker = CallTracker()
    first_channel = next(
        i
        for i, step in enumerate(steps)
        if isinstance(step, Received) and step.message.event == "Newchannel"
    )
    [discovered] = run(steps[first_channel : first_channel + 1], tracker).values()
    assert discovered.discovered
    [merged] = tracker.register(
        "c0001", volunteer_channel="PJSIP/1001", contact_number="15145550180", at=steps[0].at
    )
    assert (merged.discovered, merged.volunteer_channel, merged.volunteer_endpoint) == (
        False,
        "PJSIP/1001-0000001b",
        "PJSIP/1001",
    )
    assert tracker.call_id_for_channel("PJSIP/1001-0000001b") == "c0001"
    assert tracker.call_id_for_channel("PJSIP/9999-00000000") is None
    assert [call.call_id for call in tracker.live_calls()] == ["c0001"]


def test_snapshots_are_plain_call_updates() -> None:
    updates = run(replay_steps([AMI / "concurrent_three_calls.ami"]))
    names = {f.name for f in dataclass_fields(CallUpdate)}
    for update in updates.values():
        assert set(vars(update)) == names
        assert update == CallUpdate(**vars(update))
        with pytest.raises(FrozenInstanceError):
            update.state = S.TALKING  # type: ignore[misc]


def test_calls_handed_back_after_a_worker_restart() -> None:
    # A new worker registers the calls its predecessor left in flight, then
    # its first login's resync re-attaches the one still up.
    listing = next(
        step
        for step in replay_steps([AMI / "reconnect_2_new_connection_resyncs.ami"])
        if isinstance(step, Resynced)
    )
    tracker = CallTracker()
    for call_id in ("c0030", "c0099"):
        tracker.register(
            call_id, volunteer_channel="PJSIP/1002", contact_number="15145550194", at=REPLAY_EPOCH
        )
    [reattached, lost] = sorted(tracker.feed(listing), key=lambda update: update.call_id)
    assert (lost.call_id, lost.outcome) == ("c0099", O.LOST)
    assert (reattached.call_id, reattached.state, reattached.previous_state) == (
        "c0030",
        S.TALKING,
        S.REQUESTED,
    )
    assert reattached.contact_channel == "Local/15145550194@fake-pstn-00000013;1"
    assert [call.call_id for call in tracker.live_calls()] == ["c0030"]


def test_calls_handed_back_after_the_first_resync() -> None:
    # The worker started its AMI client (login, resync) before handing back
    # the calls its predecessor left in flight.
    listing = next(
        step
        for step in replay_steps([AMI / "reconnect_2_new_connection_resyncs.ami"])
        if isinstance(step, Resynced)
    )
    tracker = CallTracker()
    [discovered] = tracker.feed(listing)
    assert (discovered.call_id, discovered.discovered, discovered.state) == (
        "c0030",
        True,
        S.TALKING,
    )
    [still_up] = tracker.register(
        "c0030", volunteer_channel="PJSIP/1002", contact_number="1", at=REPLAY_EPOCH, resumed=True
    )
    assert (still_up.state, still_up.discovered) == (S.TALKING, False)
    [gone] = tracker.register(
        "c0099", volunteer_channel="PJSIP/1003", contact_number="2", at=REPLAY_EPOCH, resumed=True
    )
    assert (gone.state, gone.outcome, gone.previous_state) == (S.ENDED, O.LOST, None)
    # A fresh call is not judged by a listing taken before it existed.
    [fresh] = tracker.register(
        "c0100", volunteer_channel="PJSIP/1001", contact_number="3", at=REPLAY_EPOCH
    )
    assert fresh.state is S.REQUESTED


def test_a_call_seen_from_events_alone_knows_the_number_dialed() -> None:
    updates = _replay(("shipped_contact_answers_then_hangs_up.ami",), client_hints=False)
    assert updates["s0005"][-1].contact_number == "15145550100"


def test_the_volunteer_cancels_a_ringing_contact() -> None:
    # What the service notes when the volunteer presses Hang up while the
    # contact's phone rings; then the Hangup of the contact's leg.
    steps = list(replay_steps([AMI / "shipped_hangup_by_volunteer_while_contact_rings.ami"]))
    tracker = CallTracker()
    hangup = next(i for i, step in enumerate(steps) if isinstance(step, HangupSent))
    run(steps[:hangup], tracker)
    [noted] = tracker.note_hangup_requested("s0014", by="volunteer", at=steps[hangup].at)
    assert noted.state is S.RINGING_CONTACT
    final = run(steps[hangup + 1 :], tracker)["s0014"]
    assert (final.outcome, final.contact_answered_at) == (O.HUNG_UP_BY_VOLUNTEER, None)


SHIPPED_ORIGINATE_HEADERS = (
    "Action", "Channel", "Context", "Exten", "Priority", "CallerID", "Timeout", "Async",
    "ChannelId", "OtherChannelId", "Variable", "Variable", "ActionID",
)  # fmt: skip


@pytest.mark.parametrize("path", sorted(AMI.glob("shipped_*.ami")), ids=lambda path: path.name)
def test_the_shipped_recordings_originate_as_the_dialer_does(path: Path) -> None:
    # One Originate per file for the call, shaped by the worker and
    # AmiClient.originate (an organizer's supervision is checked below).
    calls = [
        action
        for action in _originates(path)
        if not is_supervision(action) and action["Context"] != "dialer-power"
    ]
    # A power session dials its contacts one by one, each a call of its own.
    assert len(calls) == (5 if path.name == "shipped_power_session.ami" else 1)
    for originate in calls:
        call_id = originate.action_id
        assert call_id is not None
        assert tuple(key for key, _ in originate.pairs) == SHIPPED_ORIGINATE_HEADERS
        assert (originate["Context"], originate["Priority"], originate["Async"]) == (
            "dialer-outbound",
            "1",
            "true",
        )
        assert (originate["ChannelId"], originate["OtherChannelId"]) == (
            f"{call_id}-v",
            f"{call_id}-o",
        )
        assert originate.getall("Variable") == [
            f"DIALER_CALL_ID={call_id}",
            "DIALER_CALLERID=15145550000",
        ]


POWER_SESSION_ORIGINATE_HEADERS = (
    "Action", "Channel", "Context", "Exten", "Priority", "CallerID", "Timeout", "Async",
    "ChannelId", "Variable", "ActionID",
)  # fmt: skip


def test_a_power_session_rings_the_volunteer_once_and_dials_contacts_into_its_conference() -> None:
    session, *contacts = _originates(AMI / "shipped_power_session.ami")
    assert tuple(key for key, _ in session.pairs) == POWER_SESSION_ORIGINATE_HEADERS
    assert (
        session["Channel"],
        session["Context"],
        session["Exten"],
        session["ChannelId"],
        session.action_id,
    ) == ("PJSIP/1015", "dialer-power", "19", "ps19-s", "power-19")
    assert session.getall("Variable") == ["DIALER_CALLERID=15145550000"]
    assert {contact["Channel"] for contact in contacts} == {"Local/19@dialer-power-join/n"}
    # The session's leg is no call: its ChannelId ends in neither -v nor -o.
    assert set(_replay(("shipped_power_session.ami",), client_hints=False)) == {
        contact.action_id for contact in contacts
    }


def _originates(path: Path) -> list[Message]:
    return [
        action
        for frame in read_transcript(path)
        if frame.direction == "client" and frame.note is None
        for action in Decoder(expect_banner=False).feed(frame.data)
        if action.action == "Originate"
    ]


SUPERVISION_ORIGINATE_HEADERS = (
    "Action", "Channel", "Context", "Exten", "Priority", "CallerID", "Timeout", "Async",
    "ChannelId", "Variable", "Variable", "Variable", "Variable", "ActionID",
)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "mode", "beep"),
    [
        ("shipped_listen_during_talk.ami", "listen", "no"),
        ("shipped_barge_with_beep.ami", "barge", "yes"),
    ],
)
def test_a_supervision_originate_names_the_leg_asterisk_reported(
    name: str, mode: str, beep: str
) -> None:
    """The channel spied on is the volunteer leg's name from Asterisk's own
    Newchannel, as the tracker read it, never something the client made up."""
    path = AMI / name
    call, spy = _originates(path)
    assert (is_supervision(call), is_supervision(spy)) == (False, True)
    assert tuple(key for key, _ in spy.pairs) == SUPERVISION_ORIGINATE_HEADERS
    call_id = call.action_id
    assert (spy["Context"], spy["Exten"], spy["ChannelId"], spy.action_id) == (
        "dialer-supervise",
        mode,
        f"{call_id}-spy1",
        "spy-1",
    )
    [leg] = [
        message["Channel"]
        for frame in read_transcript(path)
        if frame.direction == "server" and frame.note is None
        for message in Decoder(expect_banner=True).feed(frame.data)
        if message.event == "Newchannel" and message.get("Uniqueid") == f"{call_id}-v"
    ]
    assert spy.getall("Variable") == [
        f"DIALER_SPY_CHANNEL={leg}",
        f"DIALER_SPY_BEEP={beep}",
        "DIALER_SPY_NOTICE=no",
        "DIALER_CALLERID=15145550000",
    ]
