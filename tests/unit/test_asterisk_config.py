"""The Asterisk configuration in asterisk-config/ against what the dialer expects.

The dialer only works, and is only safe, if the PBX's files agree with its
settings: the Originate's context exists, the variables it sets are the
ones the dialplan reads, its AMI user can do what it needs and nothing
more, and the dialplan refuses what the dialer's policy refuses.  These
tests read the files with ami_bridge.asterisk_conf (no Asterisk needed).
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import re
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest

from ami_bridge.asterisk_conf import (
    ConfigError,
    ConfigFile,
    Context,
    dialplan_globals,
    evaluate_filter,
    find_extension,
    load_config,
    parse_config,
    parse_dialplan,
    pattern_matches,
    sort_extensions,
    split_args,
    unfiltered_references,
    variable_references,
)
from dialer.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "asterisk-config"
CONFIG_FILES = sorted(CONFIG_DIR.glob("*.conf"))

# What the dialer's Originate sets on the volunteer's channel (see
# shared/ami-transcripts/README.md and the least-privilege recording).
DIALER_VARIABLES = {
    "DIALER_CALL_ID",
    "DIALER_CALLERID",
    "DIALER_SPY_CHANNEL",
    "DIALER_SPY_BEEP",
    "DIALER_SPY_NOTICE",
}
# Set by the volunteer's endpoint (pjsip.conf set_var), read by the
# pre-dial subroutine; the dialer may also pass it per call.
ENDPOINT_VARIABLES = {"DIALER_AUTOANSWER"}
# Applications and functions whose arguments reach the SIP wire.
SINK_APPS = {"dial", "chanspy", "originate"}
SINK_FUNCTIONS = ("CALLERID(", "CONNECTEDLINE(", "PJSIP_HEADER(")
PREDIAL_CONTEXT = "dialer-volunteer-predial"
REFUSE_CONTEXT = "dialer-refuse"
# The files an install writes next to the shipped ones, which #include them
# (docker-compose.yml renders them from .env; docs/deploy.md shows them).
SECRET_FILES = {
    "manager_dialer_secret.conf": "secret = test-ami-secret\n",
    "pjsip_secrets.conf": "".join(
        f"[{name}-auth]\ntype = auth\nauth_type = userpass\n"
        f"username = {user}\npassword = test-{name}\n\n"
        for name, user in [
            ("1001", "1001"),
            ("1002", "1002"),
            ("1003", "1003"),
            ("carrier", "account"),
        ]
    ),
    "res_pgsql_secret.conf": "dbpass = test-asterisk-db\n",
}


def _default(name: str) -> Any:
    """A setting's shipped default (the tests must not depend on a developer's .env)."""
    return Settings.model_fields[name].default


def _installed(path: Path, secret_files: dict[str, str] = SECRET_FILES) -> ConfigFile:
    """A shipped file as Asterisk reads it once the install has written its secrets."""
    return parse_config(
        path.read_text(encoding="utf-8"), source=str(path), include_loader=secret_files.get
    )


def _as_in_git(path: Path) -> ConfigFile:
    """A shipped file with its secrets files present but empty: what git holds."""
    return _installed(path, dict.fromkeys(SECRET_FILES, ""))


@pytest.fixture(scope="module")
def extensions() -> ConfigFile:
    return load_config(CONFIG_DIR / "extensions.conf")


@pytest.fixture(scope="module")
def dialplan(extensions: ConfigFile) -> dict[str, Context]:
    return parse_dialplan(extensions)


@pytest.fixture(scope="module")
def manager() -> ConfigFile:
    return _installed(CONFIG_DIR / "manager.conf")


@pytest.fixture(scope="module")
def pjsip() -> ConfigFile:
    return _installed(CONFIG_DIR / "pjsip.conf")


def _dialer_contexts(dialplan: dict[str, Context]) -> list[Context]:
    return [context for name, context in dialplan.items() if name.startswith("dialer-")]


def _classes(value: str | None) -> set[str]:
    return {item.strip().lower() for item in (value or "").split(",") if item.strip()}


# --- every file -------------------------------------------------------------


def test_the_config_directory_has_the_files_the_dialer_needs() -> None:
    names = {path.name for path in CONFIG_FILES}
    assert {"manager.conf", "pjsip.conf", "extensions.conf"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.name)
def test_every_file_parses(path: Path) -> None:
    config = _installed(path)
    assert config.sections, f"{path.name} has no section"
    for include in config.includes:
        # Only the secrets files are not in the repository, and they are
        # required: #include, never #tryinclude.
        assert include.target in SECRET_FILES, (
            f"{path.name}:{include.line} includes {include.target!r}"
        )
        assert not include.optional, f"{path.name}:{include.line}: #tryinclude"
        assert include.found


@pytest.mark.parametrize(
    ("name", "secrets"),
    [
        ("pjsip.conf", "pjsip_secrets.conf"),
        ("manager.conf", "manager_dialer_secret.conf"),
        ("res_pgsql.conf", "res_pgsql_secret.conf"),
    ],
)
def test_a_missing_secrets_file_fails_closed(name: str, secrets: str) -> None:
    """Without its secrets file Asterisk logs the missing #include and rejects the file.

    pjsip.conf then loads no transport and no endpoint, manager.conf no AMI
    listener: nothing registers, nothing logs in, the error names the file.
    """
    present = {target: text for target, text in SECRET_FILES.items() if target != secrets}
    with pytest.raises(ConfigError, match=re.escape(secrets)):
        _installed(CONFIG_DIR / name, present)


@pytest.mark.skipif(find_spec("asterisklint") is None, reason="asterisklint is not installed")
def test_asterisklint_finds_nothing_in_the_dialplan() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from asterisklint.main import main; "
            "sys.exit(main(sys.argv[1:], os.environ))",
            "dialplan-check",
            str(CONFIG_DIR / "extensions.conf"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": "/nonexistent"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stderr.strip(), result.stderr


# --- the dialplan -----------------------------------------------------------


def test_the_outbound_context_exists(dialplan: dict[str, Context]) -> None:
    context = _default("outbound_context")
    assert context == "dialer-outbound"
    assert context in dialplan
    assert dialplan[context].priorities


def test_every_context_named_by_an_application_exists(dialplan: dict[str, Context]) -> None:
    for context in dialplan.values():
        assert all(name in dialplan for name in context.includes), context.name
        for step in context.priorities:
            if step.app.lower() in ("gosub", "goto", "gotoif"):
                target = step.data.split("?", 1)[-1] if step.app.lower() == "gotoif" else step.data
                for branch in target.split(":"):
                    parts = split_args(branch)
                    if len(parts) == 3:
                        assert parts[0] in dialplan, f"{step.source}:{step.line}"


def test_the_dialer_variables_are_the_ones_the_dialplan_reads(
    dialplan: dict[str, Context], pjsip: ConfigFile
) -> None:
    read: set[str] = set()
    for context in _dialer_contexts(dialplan):
        for step in context.priorities:
            read.update(ref.name for ref in variable_references(step.data))
    channel_reads = {name for name in read if name.startswith("DIALER_")}
    assert channel_reads >= DIALER_VARIABLES
    # Nothing else named DIALER_* is read from the channel: a typo here
    # would silently read an empty variable.
    assert channel_reads == DIALER_VARIABLES | ENDPOINT_VARIABLES
    set_vars = {
        value.split("=", 1)[0].strip()
        for section in pjsip.of_type("endpoint", templates=True)
        for value in section.get_all("set_var")
    }
    assert set_vars >= ENDPOINT_VARIABLES


def test_the_caller_id_comes_from_dialer_callerid(dialplan: dict[str, Context]) -> None:
    steps = dialplan["dialer-place-call"].priorities
    assert any("${FILTER(0-9,${DIALER_CALLERID})}" in step.data for step in steps), (
        "DIALER_CALLERID must be read through FILTER(0-9,...)"
    )
    assert any(
        step.app.lower() == "set" and step.data.startswith("CALLERID(num)=") for step in steps
    )
    # The Originate's caller name is the contact's own name (for the
    # volunteer's phone): cleared before the contact is dialed.
    assert any(step.app.lower() == "set" and step.data == "CALLERID(name)=" for step in steps)


def _sink_steps(dialplan: dict[str, Context]) -> list[Any]:
    return [
        step
        for context in dialplan.values()
        for step in context.priorities
        if step.app.lower() in SINK_APPS or any(sink in step.data for sink in SINK_FUNCTIONS)
    ]


def test_every_variable_reaching_dial_or_caller_id_is_filtered(
    dialplan: dict[str, Context],
) -> None:
    steps = _sink_steps(dialplan)
    assert any(step.app.lower() == "dial" for step in steps)
    for step in steps:
        loose = [ref.expression for ref in unfiltered_references(step.data)]
        assert not loose, f"{step.source}:{step.line}: not in FILTER(): {loose}"


def test_the_filter_rule_catches_a_bare_variable() -> None:
    assert [r.name for r in unfiltered_references("PJSIP/${EXTEN}@carrier,30")] == ["EXTEN"]
    assert unfiltered_references("PJSIP/${FILTER(0-9,${EXTEN})}@carrier") == []
    # Filtering the allowed characters is not filtering the value.
    assert [r.name for r in unfiltered_references("${FILTER(${CHARS},x)}")] == ["CHARS"]
    assert [r.name for r in unfiltered_references("${LEN(${X})}")] == ["X"]


def _resolve(text: str, globals_: dict[str, str]) -> str:
    """Evaluate the FILTER()/GLOBAL() subset the dialplan uses for constants."""

    def replace(match: re.Match[str]) -> str:
        return globals_.get(match["name"], "")

    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"\$\{GLOBAL\((?P<name>[A-Za-z0-9_]+)\)\}", replace, text)
        text = re.sub(
            r"\$\{FILTER\((?P<allowed>[^,${}]*),(?P<value>[^${}]*)\)\}",
            lambda m: evaluate_filter(m["allowed"], m["value"]),
            text,
        )
    return text


def test_the_contact_rings_at_least_15_seconds(
    dialplan: dict[str, Context], extensions: ConfigFile
) -> None:
    dials = [s for s in dialplan["dialer-place-call"].priorities if s.app.lower() == "dial"]
    assert len(dials) == 1
    args = dials[0].args()
    assert len(args) >= 2, "Dial() without a timeout rings until the carrier gives up"
    timeout = _resolve(args[1], dialplan_globals(extensions))
    assert timeout.isdigit(), f"timeout {args[1]!r} resolves to {timeout!r}"
    assert int(timeout) >= 15


def test_the_contact_is_dialed_over_a_pjsip_trunk_that_exists(
    dialplan: dict[str, Context], extensions: ConfigFile, pjsip: ConfigFile
) -> None:
    (dial,) = [s for s in dialplan["dialer-place-call"].priorities if s.app.lower() == "dial"]
    target = _resolve(dial.args()[0], dialplan_globals(extensions))
    technology, _, rest = target.partition("/")
    assert technology == "PJSIP"
    endpoint = rest.rpartition("@")[2]
    assert endpoint in {section.name for section in pjsip.of_type("endpoint")}
    # No Dial options: nothing that hands the contact a feature or a transfer.
    assert len(dial.args()) == 2


# The dialing policy, as the dialplan enforces it: (number, dialed?).
POLICY_CASES = [
    ("15145550184", True),  # Montreal
    ("12125550123", True),  # New York
    ("18005550199", True),  # toll-free
    ("17875550123", True),  # Puerto Rico, a US territory
    ("19005550123", False),  # premium rate, area code 900
    ("12129765555", False),  # premium rate, 976 exchange
    ("12125551212", False),  # directory assistance
    ("17005550123", False),  # carrier services
    ("15005550123", False),  # personal communications services
    ("18765550123", False),  # Jamaica: +1 but international rates
    ("18095550123", False),  # Dominican Republic
    ("12645550123", False),  # Anguilla
    ("11235550123", False),  # area code cannot start with 1
    ("15141550123", False),  # exchange cannot start with 1
    ("1514555018", False),  # too short
    ("151455501840", False),  # too long
    ("33142685300", False),  # France: not allowed by default
    ("442079460000", False),  # United Kingdom
    ("911", False),
    ("011441234567890", False),  # international dialing prefix
    ("+15145550184", False),  # the + never reaches the dialplan
    ("15145550184#", False),
]


def _outcome(dialplan: dict[str, Context], context: str, number: str) -> str:
    found = find_extension(dialplan, context, number)
    if found is None:
        found = (context, "i") if "i" in dialplan[context].extensions() else None
    if found is None:
        return "no-match"
    first = dialplan[found[0]].extensions()[found[1]][0]
    if first.app.lower() == "gosub":
        return split_args(first.data)[0]
    return f"{first.app.lower()}({first.data})"


@pytest.mark.parametrize(("number", "dialed"), POLICY_CASES)
def test_the_outbound_context_dials_only_allowed_numbers(
    dialplan: dict[str, Context], number: str, dialed: bool
) -> None:
    outcome = _outcome(dialplan, _default("outbound_context"), number)
    assert outcome == ("dialer-place-call" if dialed else "dialer-refuse"), outcome


def _refusals(dialplan: dict[str, Context]) -> list[Any]:
    return [
        step
        for context in _dialer_contexts(dialplan)
        for step in context.priorities
        if step.app.lower() == "gosub" and split_args(step.data)[0] == REFUSE_CONTEXT
    ]


def _gosub_arguments(step: Any) -> list[str]:
    target = split_args(step.data)
    assert len(target) == 3, f"{step.source}:{step.line}: Gosub(context,exten,priority(...))"
    found = re.fullmatch(r"(?P<priority>[^()]+)\((?P<args>.*)\)", target[2])
    assert found, f"{step.source}:{step.line}: Gosub without arguments"
    return split_args(found["args"])


def test_every_refusal_passes_its_reason_and_number(dialplan: dict[str, Context]) -> None:
    """Gosub(dialer-refuse,s,1(<reason>,<number>)) everywhere it is called.

    Inside the subroutine ${EXTEN} is `s`, so the number must come as an
    argument for the log line to say which number was refused.
    """
    steps = _refusals(dialplan)
    assert len(steps) >= 30
    for step in steps:
        reason, number = _gosub_arguments(step)
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", reason), f"{step.source}:{step.line}"
        if step.context == "dialer-place-call":
            expected = "${ARG1}"  # the number it was called with
        elif step.extension == "i":
            expected = "${INVALID_EXTEN}"  # ${EXTEN} is `i` there
        else:
            expected = "${EXTEN}"
        assert number == expected, f"{step.source}:{step.line}: {number!r}"
    assert {step.context for step in steps} == {_default("outbound_context"), "dialer-place-call"}


def test_the_refusal_log_names_the_number_from_its_argument(dialplan: dict[str, Context]) -> None:
    steps = dialplan[REFUSE_CONTEXT].priorities
    (log,) = [step for step in steps if step.app == "Log"]
    level, message = log.args()
    assert level == "WARNING"
    assert "to ${FILTER(0-9,${ARG2})} refused: ${FILTER(-a-z,${ARG1})}" in message
    # Logged values are filtered too: the log is read by people and tools.
    assert not unfiltered_references(message)
    names = {ref.name for step in steps for ref in variable_references(step.data)}
    assert "EXTEN" not in names, "${EXTEN} is `s` inside a Gosub"


def test_refusal_hangs_up_with_congestion(dialplan: dict[str, Context]) -> None:
    steps = dialplan["dialer-refuse"].priorities
    assert steps[-1].app == "Hangup"
    assert steps[-1].data == "34"
    assert all(step.app.lower() not in SINK_APPS for step in steps)


def test_a_number_without_a_caller_id_is_refused(dialplan: dict[str, Context]) -> None:
    steps = dialplan["dialer-place-call"].priorities
    labels = {step.label: step for step in steps if step.label}
    assert "nocallerid" in labels
    assert labels["nocallerid"].data == "dialer-refuse,s,1(no-caller-id,${ARG1})"
    dial_index = next(i for i, step in enumerate(steps) if step.app == "Dial")
    check_index = next(i for i, step in enumerate(steps) if "?nocallerid" in step.data)
    assert check_index < dial_index


@pytest.mark.parametrize("number", [number for number, dialed in POLICY_CASES if dialed])
def test_the_phones_cannot_dial_contacts_directly(
    dialplan: dict[str, Context], number: str
) -> None:
    outcome = _outcome(dialplan, "from-phones", number)
    assert outcome.startswith("hangup("), outcome


def test_the_phones_context_cannot_reach_the_dialer_contexts(
    dialplan: dict[str, Context], pjsip: ConfigFile
) -> None:
    phones = dialplan["from-phones"]
    assert not phones.includes
    for step in phones.priorities:
        assert "dialer-" not in step.data, f"{step.source}:{step.line}"
    volunteer_contexts = {
        section.get("context") for section in pjsip.of_type("endpoint") if section.name != "carrier"
    }
    assert volunteer_contexts == {"from-phones"}
    assert _default("outbound_context") not in volunteer_contexts


def test_the_predial_subroutine_only_adds_headers(dialplan: dict[str, Context]) -> None:
    steps = dialplan[PREDIAL_CONTEXT].priorities
    assert {step.app for step in steps} <= {"Set", "GotoIf", "Return"}
    headers = [step.data for step in steps if step.data.startswith("PJSIP_HEADER(add,")]
    assert any("Call-Info)=" in data and "answer-after=0" in data for data in headers)
    # Every path returns: a Gosub that does not Return leaves the call hanging.
    assert steps[-1].app == "Return"


def test_patterns_sort_and_match_like_asterisk() -> None:
    order = sort_extensions(["_X.", "_1NXXNXXXXXX", "_1NXX976XXXX", "_1900NXXXXXX", "s"])
    assert order == ["s", "_1900NXXXXXX", "_1NXX976XXXX", "_1NXXNXXXXXX", "_X."]
    assert pattern_matches("_1NXXNXXXXXX", "15145550184")
    assert not pattern_matches("_1NXXNXXXXXX", "11145550184")
    assert pattern_matches("_X.", "12")
    assert not pattern_matches("_X.", "1")
    assert pattern_matches("_[0-9+].", "+1514")
    assert pattern_matches("_X!", "1")


# --- the volunteers' phones --------------------------------------------------


def test_the_volunteer_channel_matches_the_pjsip_endpoints(pjsip: ConfigFile) -> None:
    template = _default("volunteer_channel")
    technology = template.split("/", 1)[0]
    assert technology == "PJSIP"
    endpoints = {s.name: s for s in pjsip.of_type("endpoint")}
    aors = {s.name for s in pjsip.of_type("aor")}
    volunteers = [s for s in endpoints.values() if s.get("context") == "from-phones"]
    assert len(volunteers) >= 3
    for endpoint in volunteers:
        channel = template.format(extension=endpoint.name)
        assert channel == f"PJSIP/{endpoint.name}"
        # The dialer's channel regexes and the registrar both rely on the
        # endpoint, its aor and the extension having the same name.
        assert endpoint.name.isdigit()
        assert endpoint.get("aors") == endpoint.name
        assert endpoint.name in aors
        assert endpoint.get("auth"), f"endpoint {endpoint.name} takes calls unauthenticated"
        assert endpoint.get("direct_media") == "no"
        assert endpoint.get("allow_transfer") == "no"


def test_no_password_is_written_in_pjsip_conf() -> None:
    in_git = _as_in_git(CONFIG_DIR / "pjsip.conf")
    for section in in_git.sections:
        assert not section.get_all("password"), f"[{section.name}] has a password in git"
    assert [(i.target, i.optional) for i in in_git.includes] == [("pjsip_secrets.conf", False)]


def test_every_pjsip_auth_lives_in_the_secrets_file(pjsip: ConfigFile) -> None:
    """The shape docs/deploy.md gives pjsip_secrets.conf: one userpass auth per name used."""
    auths = {section.name: section for section in pjsip.of_type("auth")}
    used = {
        name
        for endpoint in pjsip.of_type("endpoint")
        for name in (endpoint.get("auth"), endpoint.get("outbound_auth"))
        if name
    }
    assert used == set(auths)
    for endpoint in pjsip.of_type("endpoint"):
        if endpoint.get("auth"):
            assert endpoint.get("auth") == f"{endpoint.name}-auth"
    assert "carrier-auth" in used
    for auth in auths.values():
        assert auth.get("auth_type") == "userpass"
        assert auth.get("username") and auth.get("password")


def test_an_autoanswer_phone_is_configured_by_endpoint_variable(pjsip: ConfigFile) -> None:
    autoanswer = [
        s for s in pjsip.of_type("endpoint") if "DIALER_AUTOANSWER=yes" in s.get_all("set_var")
    ]
    assert autoanswer, "no example of an auto-answer phone"


# --- AMI ----------------------------------------------------------------------

EVENTS_THE_TRACKER_NEEDS = {
    "Newchannel",
    "Newstate",
    "DialBegin",
    "DialEnd",
    "DialState",
    "Hangup",
    "HangupRequest",
    "SoftHangupRequest",
    "BridgeEnter",
    "BridgeLeave",
    "BridgeCreate",
    "BridgeDestroy",
    "OriginateResponse",
    "CoreShowChannel",
    "CoreShowChannelsComplete",
    "Status",
    "StatusComplete",
    "Shutdown",
    "FullyBooted",
}
NOISE = {"VarSet", "Newexten", "DeviceStateChange", "RTCPSent", "RTCPReceived"}
_ADVANCED_FILTER = re.compile(
    r"^eventfilter\((?P<criteria>(?:action|name|header|method)\([^()]*\)"
    r"(?:,(?:action|name|header|method)\([^()]*\))*)\)$"
)


def test_ami_listens_on_the_internal_network_only(manager: ConfigFile) -> None:
    general = manager.section("general")
    assert general.get("enabled") == "yes"
    assert general.get("webenabled") == "no"
    address = ipaddress.ip_address(general.get("bindaddr") or "0.0.0.0")
    assert not address.is_unspecified
    assert address.is_private
    assert general.get("tlsenable") in (None, "no")


def test_the_dialer_ami_user_has_least_privilege(manager: ConfigFile) -> None:
    user = manager.section(_default("ami_username"))
    assert _classes(user.get("read")) == {"call", "reporting"}
    assert _classes(user.get("write")) == {"call", "originate", "reporting"}
    for dangerous in ("system", "command", "config", "agi", "all"):
        assert dangerous not in _classes(user.get("write"))
        assert dangerous not in _classes(user.get("read"))
    assert int(user.get("writetimeout") or "100") >= 1000


def test_the_dialer_ami_user_has_no_secret_in_git() -> None:
    in_git = _as_in_git(CONFIG_DIR / "manager.conf")
    user = in_git.section(_default("ami_username"))
    assert user.get("secret") is None
    assert [(i.target, i.optional) for i in in_git.includes] == [
        ("manager_dialer_secret.conf", False)
    ]
    secret = "s3cr3t"
    with_secret = parse_config(
        (CONFIG_DIR / "manager.conf").read_text(),
        include_loader=lambda target: f"secret = {secret}\n",
    )
    assert with_secret.section(_default("ami_username")).get("secret") == secret


def test_the_dialer_ami_user_is_restricted_by_address(manager: ConfigFile) -> None:
    user = manager.section(_default("ami_username"))
    rules = [(o.key.lower(), o.value) for o in user.options if o.key.lower() in ("deny", "permit")]
    assert rules[0] == ("deny", "0.0.0.0/0.0.0.0"), "first refuse everyone"
    permitted = [
        ipaddress.ip_network(value, strict=True) for key, value in rules if key == "permit"
    ]
    assert permitted
    bindaddr = ipaddress.ip_address(manager.section("general").get("bindaddr") or "")
    for network in permitted:
        assert network.prefixlen >= 24, f"{network} is wider than the dialer needs"
        assert bindaddr not in network


def _filters(manager: ConfigFile) -> list[tuple[str, str, str]]:
    """(action, name, value) of every advanced eventfilter of the dialer user."""
    found = []
    for option in manager.section(_default("ami_username")).options:
        if not option.key.lower().startswith("eventfilter"):
            continue
        match = _ADVANCED_FILTER.match(option.key)
        assert match, f"line {option.line}: not the eventfilter(...) syntax: {option.key}"
        criteria = dict(re.findall(r"(action|name|header|method)\(([^()]*)\)", match["criteria"]))
        found.append((criteria.get("action", "include"), criteria.get("name", ""), option.value))
    return found


def test_the_event_filters_keep_what_the_tracker_needs(manager: ConfigFile) -> None:
    filters = _filters(manager)
    included = {name for action, name, _ in filters if action == "include"}
    excluded = {name for action, name, _ in filters if action == "exclude"}
    assert included >= EVENTS_THE_TRACKER_NEEDS
    assert not included & NOISE
    assert {"VarSet", "Newexten"} <= excluded
    assert not excluded & EVENTS_THE_TRACKER_NEEDS
    # Name-only filters: an empty match expression, no regex over payloads.
    assert all(value == "" for _, _, value in filters)


def test_the_event_filters_pass_a_recorded_call(manager: ConfigFile) -> None:
    """Every event of the least-privilege recording the tracker uses gets through."""
    recording = ROOT / "tests/fixtures/ami/least_privilege_user_call_and_resync.ami"
    events = set(re.findall(r"^Event: (\w+)\r?$", recording.read_text(), re.M))
    filters = _filters(manager)
    included = {name for action, name, _ in filters if action == "include"}
    excluded = {name for action, name, _ in filters if action == "exclude"}
    passed = {event for event in events if event in included and event not in excluded}
    assert events - passed == {"DeviceStateChange"}


# --- modules ------------------------------------------------------------------


def test_modules_refuse_shell_access_and_other_channel_drivers() -> None:
    modules = load_config(CONFIG_DIR / "modules.conf").section("modules")
    noload = set(modules.get_all("noload"))
    assert {"app_system.so", "func_shell.so", "chan_iax2.so", "pbx_lua.so", "pbx_ael.so"} <= noload
    assert "chan_pjsip.so" not in noload


# --- the parser itself --------------------------------------------------------


def test_parser_templates_appends_and_comments() -> None:
    config = parse_config(
        "[tpl](!)\ntype = endpoint ; comment\nallow = ulaw\n"
        "[1001](tpl)\nallow = alaw\n;-- block\n[ignored]\n--;\n"
        "[1001](+)\nnote = a\\;b\n"
    )
    endpoint = config.of_type("endpoint")
    assert [s.name for s in endpoint] == ["1001"]
    assert endpoint[0].get_all("allow") == ["ulaw", "alaw"]
    assert endpoint[0].get("note") == "a;b"
    assert endpoint[0].options[0].inherited_from == "tpl"
    assert not config.named("ignored")


@pytest.mark.parametrize(
    "text",
    [
        "key = value\n",  # outside a section
        "[a](missing)\n",  # template not defined before
        "[a]\njust words\n",
        '[a]\n#include "missing.conf"\n',
        "[a]\n;-- never closed\n",
    ],
)
def test_parser_refuses_what_asterisk_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(text)


def test_the_browser_phones_view_writes_out_the_webrtc_template(pjsip: ConfigFile) -> None:
    """Realtime endpoints cannot inherit a template, so migration 0013's
    ps_endpoints view spells the [webrtc-endpoint] settings out: the two agree."""
    migration = importlib.import_module("dialer.store.migrations.versions.0013_browser_phones")
    literal = re.compile(r"'([^']*)'::varchar\(\d+\) AS (\w+)")
    written = {name: value for value, name in literal.findall(migration.VIEWS["ps_endpoints"])}
    template = pjsip.section("webrtc-endpoint")
    expected = {option.key: option.value for option in template.options if option.key != "type"}
    assert written == expected and written["webrtc"] == "yes"


def test_supervision_spies_on_one_named_channel_or_refuses(
    dialplan: dict[str, Context],
) -> None:
    """ChanSpy's first argument is a prefix: empty, it would spy on every
    channel of the PBX.  [dialer-spy] hangs up instead, before ChanSpy."""
    steps = dialplan["dialer-spy"].priorities
    apps = [step.app.lower() for step in steps]
    assert apps.index("gotoif") < apps.index("chanspy")
    guard = steps[apps.index("gotoif")]
    assert guard.data == '$["${SPY_TARGET}" = ""]?notarget'
    labels = {step.label: step for step in steps if step.label}
    assert labels["notarget"].app.lower() == "log"
    # Only the three modes, each with E (stop when the volunteer's leg ends).
    modes = {
        step.extension: step.data
        for step in dialplan["dialer-supervise"].priorities
        if step.app.lower() == "gosub"
    }
    assert modes == {
        "listen": "dialer-spy,s,1(ES)",
        "whisper": "dialer-spy,s,1(wES)",
        "barge": "dialer-spy,s,1(BES)",
    }
