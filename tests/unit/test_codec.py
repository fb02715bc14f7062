"""The sans-I/O AMI codec: the decoder on awkward input, the encoder's refusals."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ami_bridge.codec import (
    Action,
    AmiEncodingError,
    Decoder,
    Message,
    encode_action,
    iter_messages,
    parse_block,
)
from ami_bridge.tools.transcript import read_transcript, server_bytes

AMI = Path(__file__).parent.parent / "fixtures" / "ami"
BANNER = b"Asterisk Call Manager/13.0.0\r\n"


def feed_bytewise(data: bytes, *, expect_banner: bool = True) -> tuple[list[Message], int]:
    decoder = Decoder(expect_banner=expect_banner)
    messages: list[Message] = []
    for index in range(len(data)):
        messages += decoder.feed(data[index : index + 1])
    return messages, decoder.pending


def feed_whole(data: bytes, *, expect_banner: bool = True) -> tuple[list[Message], int]:
    decoder = Decoder(expect_banner=expect_banner)
    return decoder.feed(data), decoder.pending


def snapshot(messages: list[Message]) -> list[tuple[object, ...]]:
    return [(m.banner, dict(m.fields), m.pairs, m.body) for m in messages]


# --------------------------------------------------------------- framing


def test_a_partial_message_waits_for_its_end() -> None:
    decoder = Decoder(expect_banner=False)
    assert decoder.feed(b"Event: Hangup\r\nUniqueid: 17") == []
    assert decoder.pending == len(b"Event: Hangup\r\nUniqueid: 17")
    assert decoder.feed(b"95.1\r\nCause: 16\r\n") == []
    assert decoder.feed(b"\r") == []
    [message] = decoder.feed(b"\n")
    assert message.fields == {"Event": "Hangup", "Uniqueid": "1795.1", "Cause": "16"}
    assert decoder.pending == 0


def test_byte_by_byte_equals_all_at_once_on_every_recording() -> None:
    for path in sorted(AMI.glob("*.ami")):
        data = b"".join(server_bytes(read_transcript(path)))
        whole, whole_pending = feed_whole(data)
        bytewise, bytewise_pending = feed_bytewise(data)
        assert snapshot(bytewise) == snapshot(whole), path.name
        assert whole_pending == bytewise_pending == 0, path.name
        assert whole[0].banner == "Asterisk Call Manager/13.0.0", path.name


def test_every_split_point_gives_the_same_messages() -> None:
    data = (
        BANNER + b"Event: Newchannel\r\nChannel: PJSIP/1001-0000001b\r\nUniqueid: c0001-v\r\n\r\n"
        b"Response: Success\r\nActionID: 42\r\nMessage: Originate successfully queued\r\n\r\n"
    )
    expected = snapshot(feed_whole(data)[0])
    assert len(expected) == 3
    for cut in range(1, len(data)):
        decoder = Decoder()
        got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert snapshot(got) == expected, cut


@pytest.mark.parametrize(
    "text",
    ["Zoë Café", "Ŝtéphane 日本語", "call me 📞 maybe", "ñ" * 50],
    ids=["latin", "cjk", "emoji", "many"],
)
def test_multibyte_characters_split_across_feeds(text: str) -> None:
    data = f"Event: NewCallerid\r\nCallerIDName: {text}\r\n\r\n".encode()
    for cut in range(1, len(data)):
        decoder = Decoder(expect_banner=False)
        messages = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
        assert [m.get("CallerIDName") for m in messages] == [text], cut
    messages, _ = feed_bytewise(data, expect_banner=False)
    assert messages[0]["CallerIDName"] == text


def test_bare_lf_line_ends() -> None:
    data = b"Asterisk Call Manager/13.0.0\nEvent: Hangup\nCause: 16\n\nEvent: Newstate\n\n"
    for messages in (feed_whole(data)[0], feed_bytewise(data)[0]):
        assert messages[0].banner == "Asterisk Call Manager/13.0.0"
        assert [dict(m.fields) for m in messages[1:]] == [
            {"Event": "Hangup", "Cause": "16"},
            {"Event": "Newstate"},
        ]


def test_mixed_line_ends() -> None:
    data = b"Event: A\r\nX: 1\n\r\nEvent: B\nY: 2\r\n\nEvent: C\r\n\r\n"
    for messages in (feed_whole(data, expect_banner=False)[0], feed_bytewise(data)[0]):
        assert [dict(m.fields) for m in messages] == [
            {"Event": "A", "X": "1"},
            {"Event": "B", "Y": "2"},
            {"Event": "C"},
        ]


def test_blank_lines_between_messages_are_noise() -> None:
    data = b"\r\n\r\nEvent: A\r\n\r\n\r\n\r\n\nEvent: B\r\n\r\n"
    for messages in (feed_whole(data, expect_banner=False)[0], feed_bytewise(data)[0]):
        assert [m.event for m in messages] == ["A", "B"]


def test_repeated_keys_keep_the_first_in_fields_and_all_in_getall() -> None:
    data = (
        b"Response: Success\r\nActionID: 7\r\nOutput: line one\r\nOutput: line two\r\n"
        b"output: lower case\r\n\r\n"
    )
    [message] = feed_whole(data, expect_banner=False)[0]
    assert message["Output"] == "line one"
    assert message.getall("Output") == ["line one", "line two", "lower case"]
    assert message.pairs == (
        ("Response", "Success"),
        ("ActionID", "7"),
        ("Output", "line one"),
        ("Output", "line two"),
        ("output", "lower case"),
    )


def test_values_keep_their_colons_and_spaces() -> None:
    data = b"Event: X\r\nAppData: a: b:c\r\nPad:  two spaces \r\nEmpty: \r\nBare:\r\n\r\n"
    [message] = feed_whole(data, expect_banner=False)[0]
    assert dict(message.fields) == {
        "Event": "X",
        "AppData": "a: b:c",
        "Pad": " two spaces ",
        "Empty": "",
        "Bare": "",
    }


# ------------------------------------------------------- command output


FOLLOWS = (
    b"Response: Follows\r\nPrivilege: Command\r\nActionID: 9\r\n"
    b"Channel              Location             State\n"
    b"\n"
    b"PJSIP/1001-0000001b  s@from-phones:1      Up\n"
    b"Name: not a header\n"
    b"\n"
    b"1 active channel\n"
    b"--END COMMAND--\r\n\r\n"
)
FOLLOWS_BODY = (
    "Channel              Location             State",
    "",
    "PJSIP/1001-0000001b  s@from-phones:1      Up",
    "Name: not a header",
    "",
    "1 active channel",
)


def test_old_style_command_output_with_empty_lines() -> None:
    data = BANNER + FOLLOWS + b"Event: FullyBooted\r\n\r\n"
    for messages in (feed_whole(data)[0], feed_bytewise(data)[0]):
        assert [m.banner for m in messages] == ["Asterisk Call Manager/13.0.0", None, None]
        response = messages[1]
        assert response.response == "Follows"
        assert dict(response.fields) == {
            "Response": "Follows",
            "Privilege": "Command",
            "ActionID": "9",
        }
        assert response.body == FOLLOWS_BODY
        assert messages[2].event == "FullyBooted"


def test_command_output_after_a_blank_line_is_still_one_message() -> None:
    # Regression: a blank line before the response used to hide its first
    # line, so the output was cut at its own first empty line.
    data = b"Event: A\r\n\r\n\r\n" + FOLLOWS + b"Event: B\r\n\r\n"
    for messages in (feed_whole(data, expect_banner=False)[0], feed_bytewise(data)[0]):
        assert [m.event or m.response for m in messages] == ["A", "Follows", "B"]
        assert messages[1].body == FOLLOWS_BODY


def test_command_output_waits_for_its_terminator() -> None:
    decoder = Decoder(expect_banner=False)
    head, tail = FOLLOWS.split(b"1 active")
    assert decoder.feed(head) == []
    [message] = decoder.feed(b"1 active" + tail)
    assert message.body == FOLLOWS_BODY


def test_parse_block_keeps_command_output_lines() -> None:
    message = parse_block("Response: Follows\r\nActionID: 1\r\nfree text\n--END COMMAND--")
    assert message.body == ("free text",)
    assert message.action_id == "1"


# ------------------------------------------------------------------ banner


def test_banner_is_its_own_message() -> None:
    [banner, event] = feed_whole(BANNER + b"Event: FullyBooted\r\n\r\n")[0]
    assert banner.is_banner
    assert banner.banner == "Asterisk Call Manager/13.0.0"
    assert banner.fields == {}
    assert not event.is_banner


def test_banner_split_across_feeds() -> None:
    decoder = Decoder()
    assert decoder.feed(b"Asterisk Call Man") == []
    assert decoder.feed(b"ager/13.0.0\r") == []
    [banner] = decoder.feed(b"\n")
    assert banner.banner == "Asterisk Call Manager/13.0.0"


def test_a_peer_without_banner_is_still_parsed() -> None:
    messages, pending = feed_whole(b"Event: FullyBooted\r\n\r\n")
    assert [m.event for m in messages] == ["FullyBooted"]
    assert pending == 0


def test_banner_is_only_expected_first() -> None:
    messages, _ = feed_whole(b"Asterisk Call Manager/1.1\r\n\r\n", expect_banner=False)
    assert not any(m.is_banner for m in messages)


# ----------------------------------------------------------------- garbage


def test_invalid_utf8_is_replaced_not_raised() -> None:
    data = b"\xff\xfe\x80Event: X\r\nName: caf\xc3\r\nBad: \xed\xa0\x80\r\n\r\n"
    for messages in (feed_whole(data)[0], feed_bytewise(data)[0]):
        [message] = messages
        assert message["Name"] == "caf\ufffd"
        assert "\ufffd" in message["Bad"]


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=1, max_value=64), max_size=20))
def test_arbitrary_bytes_never_raise(data: bytes, sizes: list[int]) -> None:
    decoder = Decoder()
    messages: list[Message] = []
    position = 0
    for size in [*sizes, len(data)]:
        messages += decoder.feed(data[position : position + size])
        position += size
    for message in messages:
        # Parsing is lazy: touch everything so it happens here.
        assert isinstance(dict(message.fields), dict)
        assert isinstance(message.pairs, tuple)
        assert isinstance(message.body, tuple)
        _ = (message.event, message.response, message.action_id, repr(message))


@settings(max_examples=200)
@given(
    st.lists(
        st.sampled_from(
            [
                b"Event: Hangup\r\n",
                b"Cause: 16\r\n",
                b"\r\n",
                b"\n",
                b"\r",
                b"Response: Follows\r\n",
                b"--END COMMAND--\r\n",
                b"no colon\n",
                b"\xc3",
                b"\xa9",
                b"Key:x: y\r\n",
            ]
        ),
        max_size=40,
    )
)
def test_chunking_never_changes_the_result(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    whole, whole_pending = feed_whole(data, expect_banner=False)
    bytewise, bytewise_pending = feed_bytewise(data, expect_banner=False)
    assert snapshot(bytewise) == snapshot(whole)
    assert bytewise_pending == whole_pending


# ----------------------------------------------------------------- message


def test_lazy_and_eager_messages_agree() -> None:
    [decoded] = feed_whole(b"Event: Hangup\r\nCause: 16\r\n\r\n", expect_banner=False)[0]
    built = Message(
        fields={"Event": "Hangup", "Cause": "16"},
        pairs=(("Event", "Hangup"), ("Cause", "16")),
    )
    assert decoded == built
    assert repr(decoded) == repr(built)
    assert decoded != Message(fields={"Event": "Hangup"})
    with pytest.raises(TypeError):
        hash(decoded)
    with pytest.raises(AttributeError):
        decoded.fields = {}  # type: ignore[misc]


def test_lookup_is_case_insensitive_after_exact() -> None:
    data = b"Event: Hangup\r\nCause-txt: Normal\r\n\r\n"
    [message] = feed_whole(data, expect_banner=False)[0]
    assert message.get("cause-TXT") == "Normal"
    assert message["Cause-txt"] == "Normal"
    assert "cause-txt" in message
    assert "Missing" not in message
    assert message.get("Missing", "default") == "default"
    with pytest.raises(KeyError):
        message["Missing"]


def test_event_shortcut_matches_the_parsed_fields() -> None:
    for data in (b"Event: A\r\n\r\n", b"Event:  spaced\r\n\r\n", b"Response: Success\r\n\r\n"):
        [lazy] = feed_whole(data, expect_banner=False)[0]
        [other] = feed_whole(data, expect_banner=False)[0]
        assert lazy.event == other.fields.get("Event")


def test_iter_messages() -> None:
    chunks = [BANNER, b"Event: A\r\n", b"\r\nEvent: B\r\n\r\n"]
    assert [m.event for m in iter_messages(chunks)] == [None, "A", "B"]


# ----------------------------------------------------------------- encoder


def test_encodes_an_originate() -> None:
    action = Action.build(
        "Originate",
        {"Channel": "PJSIP/1001", "Async": True, "Timeout": 15000},
        variables={"DIALER_CALL_ID": "c0001"},
        action_id="c0001",
    )
    assert action.encode() == (
        b"Action: Originate\r\nChannel: PJSIP/1001\r\nAsync: true\r\nTimeout: 15000\r\n"
        b"Variable: DIALER_CALL_ID=c0001\r\nActionID: c0001\r\n\r\n"
    )


@pytest.mark.parametrize("bad", ["\r", "\n", "\0", "\r\n"], ids=["cr", "lf", "nul", "crlf"])
@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("value", "Channel"),
        ("key", None),
        ("variable_value", "Variable"),
        ("variable_name", "Variable"),
        ("action_id", "ActionID"),
        ("name", "Action"),
    ],
)
def test_refuses_line_breaks_and_nul_anywhere(where: str, field: str | None, bad: str) -> None:
    text = f"PJSIP/1001{bad}Action: Command"
    action = {
        "value": Action("Originate", headers=(("Channel", text),)),
        "key": Action("Originate", headers=((f"Channel{bad}X", "v"),)),
        "variable_value": Action("Originate", variables=(("DIALER_CALL_ID", text),)),
        "variable_name": Action("Originate", variables=((f"A{bad}B", "v"),)),
        "action_id": Action("Originate", action_id=text),
        "name": Action(f"Originate{bad}"),
    }[where]
    with pytest.raises(AmiEncodingError) as refused:
        encode_action(action)
    expected_field = field if field is not None else f"Channel{bad}X"
    assert refused.value.field == expected_field
    assert isinstance(refused.value, ValueError)


def test_refuses_commas_in_a_variable_value() -> None:
    action = Action.build("Originate", variables={"DIALER_CALL_ID": "c1,EVIL=1"})
    with pytest.raises(AmiEncodingError) as refused:
        action.encode()
    assert refused.value.field == "Variable"
    assert "comma" in refused.value.reason


@pytest.mark.parametrize(
    "name",
    ["Bad Name", "Key:", "", "Ключ", "a/b", "Chan.nel", "Action", "actionid", "VARIABLE"],
)
def test_refuses_bad_header_names(name: str) -> None:
    with pytest.raises(AmiEncodingError) as refused:
        Action("Originate", headers=((name, "x"),)).encode()
    assert refused.value.field == name


@pytest.mark.parametrize("name", ["", "Ping Pong", "Ping:", "Ping\u00e9"])
def test_refuses_bad_action_names(name: str) -> None:
    with pytest.raises(AmiEncodingError) as refused:
        Action(name).encode()
    assert refused.value.field == "Action"


@pytest.mark.parametrize("name", ["1ABC", "A B", "A=B", "", "A-B"])
def test_refuses_bad_variable_names(name: str) -> None:
    with pytest.raises(AmiEncodingError) as refused:
        Action("Originate", variables=((name, "x"),)).encode()
    assert refused.value.field == "Variable"


def test_refuses_lone_surrogates() -> None:
    with pytest.raises(AmiEncodingError) as refused:
        Action("Originate", headers=(("CallerID", "Zo\udce9"),)).encode()
    assert refused.value.field == "CallerID"


KEY = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12).filter(
    lambda key: key.lower() not in ("action", "actionid", "variable")
)
SAFE = st.text(max_size=40).filter(lambda text: not any(c in text for c in "\r\n\0"))
VARIABLE = st.from_regex(r"[A-Za-z_][A-Za-z0-9_()]{0,10}", fullmatch=True)
UNSAFE = st.tuples(SAFE, st.sampled_from(["\r", "\n", "\0"]), SAFE).map("".join)


@given(
    name=KEY,
    headers=st.lists(st.tuples(KEY, SAFE), max_size=8),
    variables=st.lists(st.tuples(VARIABLE, SAFE.filter(lambda v: "," not in v)), max_size=4),
    action_id=st.none() | SAFE,
)
def test_safe_text_round_trips(
    name: str,
    headers: list[tuple[str, str]],
    variables: list[tuple[str, str]],
    action_id: str | None,
) -> None:
    action = Action(name, tuple(headers), tuple(variables), action_id)
    data = action.encode()
    decoder = Decoder(expect_banner=False)
    [message] = decoder.feed(data)
    assert decoder.pending == 0
    expected = [("Action", name), *headers]
    expected += [("Variable", f"{key}={value}") for key, value in variables]
    if action_id is not None:
        expected.append(("ActionID", action_id))
    assert list(message.pairs) == expected
    assert message.body == ()
    assert message.action == name
    for key, value in headers:
        assert message.getall(key)[0] == next(v for k, v in expected if k.lower() == key.lower())
        assert value in message.getall(key)


@given(
    unsafe=UNSAFE,
    where=st.sampled_from(["value", "variable", "action_id"]),
    key=KEY,
)
def test_any_text_with_cr_lf_or_nul_is_refused(unsafe: str, where: str, key: str) -> None:
    action = {
        "value": Action("Originate", headers=((key, unsafe),)),
        "variable": Action("Originate", variables=(("DIALER_CALL_ID", unsafe),)),
        "action_id": Action("Originate", action_id=unsafe),
    }[where]
    with pytest.raises(AmiEncodingError):
        action.encode()


@given(key=st.text(max_size=12), value=SAFE)
def test_only_token_header_names_are_accepted(key: str, value: str) -> None:
    valid = bool(key) and all(c in string.ascii_letters + string.digits + "_-" for c in key)
    assume(key.lower() not in ("action", "actionid", "variable"))
    action = Action("Originate", headers=((key, value),))
    if valid:
        assert action.encode().startswith(b"Action: Originate\r\n")
    else:
        with pytest.raises(AmiEncodingError) as refused:
            action.encode()
        assert refused.value.field == key


@settings(max_examples=500)
@given(
    text=st.text(alphabet=["K", "a", ":", " ", "\r", "\n", "é", "-"], max_size=60),
    key=st.sampled_from(["K", "Ka", "a", "K-a", "k", "", "K:"]),
)
def test_lazy_messages_agree_with_parse_block(text: str, key: str) -> None:
    # What the decoder hands out reads headers straight from the text; it
    # must give exactly what the reference parser gives, on any text.
    expected = parse_block(text)
    assert Message._from_text(text).header(key) == expected.fields.get(key)
    assert Message._from_text(text).get(key) == expected.get(key)
    lazy = Message._from_text(text)
    assert (dict(lazy.fields), lazy.pairs, lazy.body) == (
        dict(expected.fields),
        expected.pairs,
        expected.body,
    )
    assert Message._from_text(text).event == expected.fields.get("Event")


def test_variable_header_is_a_plain_name_outside_originate() -> None:
    getvar = Action.build("Getvar", {"Variable": "PJSIP_ENDPOINT(1001,context)"})
    assert b"Variable: PJSIP_ENDPOINT(1001,context)\r\n" in getvar.encode()
    with pytest.raises(AmiEncodingError) as caught:
        Action.build("Originate", {"Variable": "A=1,B=2"}).encode()
    assert caught.value.field == "Variable"
