"""An AMI server that behaves like the Asterisk recorded in tests/fixtures/ami.

It speaks the real wire protocol over TCP (banner, Login, Originate, Hangup,
CoreShowChannels, Status, Ping, Events, Logoff) and plays each call as the
event sequence a real Asterisk produced for the same situation: the same
event names, header names and per-channel order, VarSet and Newexten noise
included, ``Privilege`` headers, ``Uniqueid`` taken from ``ChannelId`` and a
``Linkedid`` shared by every leg of a call.  ``tests/golden/test_simulator_shapes.py``
replays the recordings against it so it cannot drift from them.

Two dialplans are imitated.  The default, ``carrier``, is the one shipped
in ``asterisk-config/extensions.conf`` (the ``shipped_*`` recordings): when
the volunteer answers, ``dialer-outbound`` runs ``Gosub`` into
``dialer-place-call`` (``NoOp``, ``Set(CALLERID_DIGITS=...)``, ``GotoIf``,
``Set(CALLERID(num)=...)``, ``Set(CALLERID(name)=)``) and
``Dial(PJSIP/<number>@carrier,30)``; a
``DIALER_CALLERID`` that is not 8 to 15 digits, or a number the shipped
dialplan refuses (premium rate, directory assistance, non-geographic,
Caribbean +1 countries: :data:`SHIPPED_REFUSALS`), goes to ``dialer-refuse``
instead, which hangs the volunteer's leg up with cause 34.  An Originate
without ``DIALER_CALLERID`` at all presents its own ``CallerID`` instead of
being refused, and numbers outside +1 are dialed, as if their country's
patterns had been added.  ``ring_timeout`` stands for the
``DIALER_RING_TIMEOUT`` global.

The other dialplan is the lab one the other recordings were made with:
``dialer-outbound`` runs ``NoOp``, ``Set(CALLERID(num)=...)``,
``Set(TRUNK=...)``, ``GotoIf`` and ``Dial`` of the contact, either over a
SIP trunk (``pjsip``: ``PJSIP/<number>@pstn``) or through a
``Local/<number>@fake-pstn`` channel (``local``).  The Originate's
``DIALER_TRUNK`` variable picks the trunk (``carrier``, ``pjsip`` or
``local``; ``default_trunk`` otherwise), ``DIALER_TRUNK_EP`` the lab SIP
endpoint (``pstnbusy`` always answers 486) and ``DIALER_RING_TIMEOUT`` the
lab ``Dial`` timeout in seconds (30 by default).

The contact's SIP trunk answers as the recorded carrier did: 486 is
``DialStatus: BUSY`` with cause 17, 503 ``CONGESTION`` with cause 34, 603
``NOANSWER`` with cause 21 and 404 (an unallocated number, what
"unreachable" plays) ``NOANSWER`` with cause 1; ``DIALSTATUS`` says
``CHANUNAVAIL`` for the last two.  With the shipped dialplan come the
shipped desk phones (``volunteer-endpoint``): ``device_state_busy_at = 1``
makes a ringing phone's device ``BUSY`` until it hangs up, where the lab
phones said ``RINGING``, then ``INUSE``.

DEFAULT RULE (override per number or extension with ``script_contact`` /
``script_volunteer`` or the ``contacts`` / ``volunteers`` arguments):

* contact, by the number's last digit: 0 rings 1 s, answers and hangs up
  after 4 s; 1 busy; 2 never answers (the ``Dial`` times out); 3 congestion;
  4 rings 1 s, answers and stays until hung up; 5 rejected (cause 21);
  6 unreachable (cause 1); 7, 8, 9 ring 1 s, answer and hang up after 3 s.
* volunteer, by extension: ending in 99 unreachable (an unplugged phone
  that qualify found Unavailable: the Originate fails at once with
  Reason 0 and no channel), 98 rings and never answers (Reason 3 after the
  Originate's ``Timeout``, cause 19), 97 busy (486: cause 17, Reason 0);
  any other extension answers at once.  Only all-digit PJSIP endpoints
  exist: ``PJSIP/nosuch`` or ``Bogus/1001`` fail with Reason 0 as in
  bad_actions.ami.

Power mode (recorded: shipped_power_session; :mod:`ami_bridge.simulator.power`):
an Originate of a desk phone into context ``dialer-power``, extension
``<session>`` (digits: the context's ``_X!``), rings the phone
like a click-to-call; once it answers, ``NoOp``, ``Answer`` and
``ConfBridge`` put it in conference ``dialer-power-<session>`` as its marked
user (``BridgeCreate`` of a ``softmix`` bridge, ``ConfbridgeStart``,
``BridgeEnter``, ``ConfbridgeJoin``).  An Originate whose channel is
``Local/<session>@dialer-power-join/n`` into ``dialer-outbound`` is a
contact's call: its ;2 half (``OtherChannelId``) answers at once, which
answers the ;1 half (``ChannelId``), and joins the conference half a second
later, while the ;1 half runs the shipped dialplan and dials the contact as
any call; when conference ``<session>`` has no volunteer, the ;2 half logs
and hangs up (16) and the Originate fails with Reason 0, before anything is
dialed.  The ;1 half ending takes the ;2 half with it (its cause), and the
volunteer's leg leaving (the Hangup action, or the phone's own hang-up:
``hangs_up_after`` counts from its joining) puts every contact's ;2 half
out, which hangs up its ;1 half and the contact, then ends the conference.

All durations are simulated seconds multiplied by ``time_scale`` (0.01 turns
a 4 s call into 40 ms).  Fault-injection durations (``stall``,
``down_for``) are real seconds, because they are about the client's timers.

Not simulated: an Originate to an application, and a volunteer leg that
is any other Local channel (a volunteer whose phone is their own number);
both get ``Response: Error``, so the dialer records the call as failed with
that message.  No audio, no RTCP reports, and no ConfBridge announcer
channel (only its place in ``BridgeNumChannels`` and its device's state).

Not recorded, so modelled on the nearest recording: the ``local`` trunk's
unreachable contact, and its contact leg hung up by action while it rings;
the volunteer's leg hung up by action before it answered, or over a SIP
trunk while bridged; the refusal for want of a caller ID.  In power mode:
the volunteer's leg leaving while a contact still rings, or before the ;2
half has joined (it is put out as it joins), the ;2 half hung up by action,
and a restart during a session.

The modules, each importing only those listed before it: ``users`` (AMI
users and permissions), ``behaviour`` (what contacts and volunteers do),
``dialplan`` (trunks and the shipped dialplan's refusals), ``channels``
(channels and bridges), ``session`` (one client connection), ``exchange``
(the PBX state and events calls see), ``legs``, ``dialing`` and ``calls``
(one Originate's script), ``spying`` (an organizer's phone) and ``power``
(power mode's session legs and contacts), ``actions`` (the AMI actions), ``server``
(:class:`AmiSimulator`), ``cli`` (:func:`run_simulator`); ``raw_client``
(:class:`RawAmiClient`) stands alone.
"""

from ami_bridge.simulator.behaviour import (
    ContactBehaviour,
    ContactOutcome,
    VolunteerBehaviour,
    VolunteerOutcome,
    default_contact_behaviour,
    default_volunteer_behaviour,
)
from ami_bridge.simulator.cli import run_simulator
from ami_bridge.simulator.dialplan import SHIPPED_REFUSALS, TRUNKS, Trunk, shipped_refusal
from ami_bridge.simulator.raw_client import RawAmiClient
from ami_bridge.simulator.server import AmiSimulator
from ami_bridge.simulator.session import BANNER
from ami_bridge.simulator.users import (
    FULL_READ,
    FULL_WRITE,
    LEAST_PRIVILEGE_READ,
    LEAST_PRIVILEGE_WRITE,
    AmiUser,
)

__all__ = [
    "BANNER",
    "FULL_READ",
    "FULL_WRITE",
    "LEAST_PRIVILEGE_READ",
    "LEAST_PRIVILEGE_WRITE",
    "SHIPPED_REFUSALS",
    "TRUNKS",
    "AmiSimulator",
    "AmiUser",
    "ContactBehaviour",
    "ContactOutcome",
    "RawAmiClient",
    "Trunk",
    "VolunteerBehaviour",
    "VolunteerOutcome",
    "default_contact_behaviour",
    "default_volunteer_behaviour",
    "run_simulator",
    "shipped_refusal",
]
