"""The AMI wire trace: framing, masking, the file format, files and failures."""

from __future__ import annotations

import asyncio
import io
import itertools
import logging
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ami_bridge.codec import Action, Decoder
from ami_bridge.tools.replay import replay
from ami_bridge.tools.transcript import Frame, parse_transcript, read_transcript, server_bytes
from ami_bridge.wiretrace import (
    MASK,
    MessageFramer,
    TraceFiles,
    WireTrace,
    mask_secrets,
    trace_path,
)

AMI = Path(__file__).parent.parent / "fixtures" / "ami"

BANNER = b"Asterisk Call Manager/13.0.0\r\n"
PING = b"Response: Success\r\nActionID: 1\r\nPing: Pong\r\n\r\n"
EVENT = b"Event: Newchannel\r\nChannel: PJSIP/1001-00000001\r\nUniqueid: c1-v\r\n\r\n"
FOLLOWS = (
    b"Response: Follows\r\nActionID: 2\r\n"
    b"Privilege: Command\r\nline one\r\n\r\nline after a blank\r\n--END COMMAND--\r\n\r\n"
)


class Sink(io.BytesIO):
    """A file that keeps what was written once the trace closes it."""

    def close(self) -> None:
        self.ended = True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def frames_of(chunks: list[bytes]) -> list[bytes]:
    framer = MessageFramer()
    frames = [frame for chunk in chunks for frame in framer.feed(chunk)]
    assert framer.pending == b""
    return frames


# -- framing -------------------------------------------------------------------


def test_several_messages_in_one_read_are_several_frames() -> None:
    assert frames_of([BANNER + PING + EVENT]) == [BANNER, PING, EVENT]


def test_a_message_over_several_reads_is_one_frame() -> None:
    framer = MessageFramer()
    assert framer.feed(BANNER[:5]) == []
    assert framer.feed(BANNER[5:] + EVENT[:10]) == [BANNER]
    assert framer.feed(EVENT[10:-1]) == []
    assert framer.pending == EVENT[:-1]
    assert framer.feed(EVENT[-1:] + PING[:3]) == [EVENT]
    assert framer.feed(PING[3:]) == [PING]


@pytest.mark.parametrize("cut", [-4, -3, -2, -1])
def test_a_read_cut_inside_the_final_crlf_crlf(cut: int) -> None:
    framer = MessageFramer(expect_banner=False)
    assert framer.feed(EVENT[:cut]) == []
    assert framer.feed(EVENT[cut:]) == [EVENT]


def test_a_read_cut_between_cr_and_lf_inside_a_header() -> None:
    cut = EVENT.index(b"\r\n") + 1
    assert frames_of([BANNER, EVENT[:cut], EVENT[cut:]]) == [BANNER, EVENT]


def test_command_output_with_blank_lines_is_one_frame() -> None:
    half = FOLLOWS.index(b"\r\n\r\nline after") + 2
    framer = MessageFramer(expect_banner=False)
    assert framer.feed(FOLLOWS[:half] + b"\r\n") == []
    assert framer.feed(FOLLOWS[half + 2 :] + EVENT) == [FOLLOWS, EVENT]


def test_bare_lf_messages_and_blank_lines_between_messages() -> None:
    bare = b"Event: Hangup\nUniqueid: x\n\n"
    assert frames_of([BANNER + bare + b"\r\n" + EVENT]) == [BANNER, bare, b"\r\n" + EVENT]


def test_a_first_line_that_is_not_a_banner_is_part_of_the_first_message() -> None:
    assert frames_of([b"Response: Success\r\n", b"\r\n"]) == [b"Response: Success\r\n\r\n"]


@given(st.lists(st.integers(min_value=0), max_size=40))
def test_any_chunking_gives_the_decoders_messages_byte_for_byte(cuts: list[int]) -> None:
    stream = BANNER + PING + FOLLOWS + EVENT + b"Event: X\nA: b\n\r\n" + PING
    frames = frames_of(chunked(stream, cuts))
    assert b"".join(frames) == stream
    decoded = Decoder().feed(stream)
    assert len(frames) == len(decoded)
    for index, frame in enumerate(frames):
        [message] = Decoder(expect_banner=index == 0).feed(frame)
        assert message == decoded[index]


def test_a_whole_recording_in_random_reads() -> None:
    frames = read_transcript(AMI / "pjsip_hangup_by_action_during_talk.ami")
    stream = b"".join(server_bytes(frames))
    rng = random.Random(7)
    chunks = chunked(stream, [rng.randrange(len(stream)) for _ in range(3000)])
    cut = frames_of(chunks)
    # Asterisk wrote one message per recorded frame: the framer finds them again.
    assert cut == [f.data for f in frames if f.direction == "server" and f.note is None]


# -- masking -------------------------------------------------------------------


def test_the_login_secret_is_masked_and_nothing_else_changes() -> None:
    login = Action.build("Login", {"Username": "dialer", "Secret": "s3cr3t"}, action_id="a1")
    assert mask_secrets(login.encode()) == (
        b"Action: Login\r\nUsername: dialer\r\nSecret: ********\r\nActionID: a1\r\n\r\n"
    )


@pytest.mark.parametrize(
    "header",
    [b"Secret", b"secret", b"SECRET", b"Password", b"AuthPassword", b"passwd", b"DB_Secret_2"],
)
def test_every_secret_looking_header_is_masked(header: bytes) -> None:
    message = b"Event: X\r\n" + header + b": hunter2\r\nOther: kept\r\n\r\n"
    masked = mask_secrets(message)
    assert b"hunter2" not in masked
    assert masked == b"Event: X\r\n" + header + b": " + MASK + b"\r\nOther: kept\r\n\r\n"


def test_bare_lf_and_no_space_after_the_colon() -> None:
    assert mask_secrets(b"Action: Login\nSecret:abc\n\n") == b"Action: Login\nSecret:********\n\n"


def test_md5_login_challenge_and_key_are_masked() -> None:
    challenge = b"Response: Success\r\nChallenge: 840415273\r\nActionID: c\r\n\r\n"
    assert mask_secrets(challenge) == (
        b"Response: Success\r\nChallenge: ********\r\nActionID: c\r\n\r\n"
    )
    login = b"Action: Login\r\nAuthType: MD5\r\nUsername: d\r\nKey: 0cc175b9c0f1b6a8\r\n\r\n"
    assert b"0cc175b9" not in mask_secrets(login)
    assert b"Key: ********\r\n" in mask_secrets(login)


def test_key_outside_a_login_is_not_a_secret() -> None:
    dbget = b"Action: DBGet\r\nFamily: dialer\r\nKey: calls\r\n\r\n"
    assert mask_secrets(dbget) == dbget


def test_an_empty_secret_stays_empty() -> None:
    login = b"Action: Login\r\nUsername: d\r\nSecret: \r\n\r\n"
    assert mask_secrets(login) == login


def test_the_known_secret_is_masked_anywhere() -> None:
    leaked = b"Response: Follows\r\nOutput: secret = long-secret-1\r\n\r\n"
    assert mask_secrets(leaked, [b"long-secret-1"]) == (
        b"Response: Follows\r\nOutput: secret = ********\r\n\r\n"
    )


# -- the trace file ------------------------------------------------------------


def trace_to(out: Sink, clock: Clock, *, secret: str = "a-long-secret") -> WireTrace:
    return WireTrace(out, secrets=[secret.encode()], clock=clock)


def test_frames_in_the_recording_format() -> None:
    out, clock = Sink(), Clock()
    trace = trace_to(out, clock)
    trace.received(BANNER)
    clock.now = 0.0004
    login = Action.build("Login", {"Username": "dialer", "Secret": "a-long-secret"}, action_id="1")
    trace.sent(login.encode())
    clock.now = 0.0016
    trace.received(PING[:7])
    clock.now = 1.25
    trace.received(PING[7:] + EVENT[:3])
    clock.now = 2.5
    trace.received(EVENT[3:])
    clock.now = 3.0
    trace.end(by_client=False)
    assert out.getvalue() == (
        b"<<< t=0.000\n" + BANNER + b">>> t=0.000\n"
        b"Action: Login\r\nUsername: dialer\r\nSecret: ********\r\nActionID: 1\r\n\r\n"
        b"<<< t=1.250\n" + PING + b"<<< t=2.500\n" + EVENT + b"<<< t=3.000\n"
        b"(connection closed by Asterisk)\n"
    )
    frames = parse_transcript(out.getvalue())
    assert [(f.direction, f.t, f.note) for f in frames] == [
        ("server", 0.0, None),
        ("client", 0.0, None),
        ("server", 1.25, None),
        ("server", 2.5, None),
        ("server", 3.0, "closed_by_server"),
    ]
    assert trace.active is False


def test_a_client_drop_without_logoff_is_noted() -> None:
    out, clock = Sink(), Clock()
    trace = trace_to(out, clock)
    trace.received(BANNER)
    clock.now = 4.0
    trace.end(by_client=True)
    assert parse_transcript(out.getvalue())[-1] == Frame("client", 4.0, b"", "dropped_by_client")


def test_a_client_that_logged_off_needs_no_note() -> None:
    out, clock = Sink(), Clock()
    trace = trace_to(out, clock)
    trace.received(BANNER)
    trace.sent(Action("Logoff", action_id="9").encode())
    trace.received(b"Response: Goodbye\r\nActionID: 9\r\n\r\n")
    trace.end(by_client=True)
    assert [f.note for f in parse_transcript(out.getvalue())] == [None, None, None]


def test_a_message_cut_short_by_the_end_is_kept_and_the_format_holds() -> None:
    out, clock = Sink(), Clock()
    trace = trace_to(out, clock)
    trace.received(BANNER + EVENT[:12])
    trace.end(by_client=False)
    frames = parse_transcript(out.getvalue())
    assert frames[1].data == EVENT[:12] + b"\n"
    assert frames[2].note == "closed_by_server"


def test_nothing_is_written_after_the_end() -> None:
    out, clock = Sink(), Clock()
    trace = trace_to(out, clock)
    trace.received(BANNER)
    trace.end(by_client=False)
    trace.received(PING)  # the transport may still deliver a read
    trace.sent(Action("Ping").encode())
    trace.end(by_client=True)
    assert len(parse_transcript(out.getvalue())) == 2


def rewrite(path: Path, into: Path, rng: random.Random) -> Path:
    """``path`` as the wire trace would write it, reads cut at random."""
    frames = read_transcript(path)
    clock = Clock()
    out = Sink()
    trace = WireTrace(out, clock=clock)
    ended = False
    for frame in frames:
        clock.now = frame.t
        if frame.note is not None:
            trace.end(by_client=frame.note == "dropped_by_client")
            ended = True
        elif frame.direction == "client":
            trace.sent(frame.data)
        else:
            for chunk in chunked(frame.data, [rng.randrange(999) for _ in range(3)]):
                trace.received(chunk)
    if not ended:
        trace.end(by_client=True)
    target = into / path.name
    target.write_bytes(out.getvalue())
    return target


@pytest.mark.parametrize(
    "session",
    [
        ["pjsip_contact_answers_then_hangs_up.ami"],
        ["pjsip_hangup_by_action_during_talk.ami"],
        ["concurrent_three_calls.ami"],
        ["least_privilege_user_call_and_resync.ami"],
        ["reconnect_1_connection_lost_mid_call.ami", "reconnect_2_new_connection_resyncs.ami"],
        ["restart_1_asterisk_restarts_mid_call.ami", "restart_2_after_restart_call_is_gone.ami"],
    ],
)
def test_a_trace_replays_like_the_recording(tmp_path: Path, session: list[str]) -> None:
    rng = random.Random(session[0])
    traced = [rewrite(AMI / name, tmp_path, rng) for name in session]
    assert replay(*traced) == replay(*(AMI / name for name in session))
    for path in traced:
        assert b"dialer-secret" not in path.read_bytes()


# -- files ---------------------------------------------------------------------


def test_file_names_sort_in_connection_order() -> None:
    opened = datetime(2026, 8, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert trace_path(Path("/var/log/dialer/ami.ami"), opened) == Path(
        "/var/log/dialer/ami-20260801T120000.123456Z.ami"
    )
    assert trace_path(Path("/tmp/pbx1"), opened) == Path("/tmp/pbx1-20260801T120000.123456Z.ami")
    assert trace_path(Path("/tmp/traces"), opened, is_directory=True) == Path(
        "/tmp/traces/ami-20260801T120000.123456Z.ami"
    )
    later = datetime(2026, 8, 1, 12, 0, 10, tzinfo=UTC)
    assert str(trace_path(Path("a.ami"), opened)) < str(trace_path(Path("a.ami"), later))


def test_each_connection_gets_its_own_file(tmp_path: Path) -> None:
    files = TraceFiles(tmp_path / "ami.ami", secrets=["x"])
    first, second = files.open(), files.open()
    assert first is not None and second is not None
    first.received(BANNER)
    second.received(BANNER)
    first.end(by_client=True)
    second.end(by_client=True)
    written = sorted(tmp_path.glob("ami-*.ami"))
    assert len(written) == 2
    assert all(path.read_bytes().startswith(b"<<< t=") for path in written)


def test_files_are_private_and_survive_copytruncate(tmp_path: Path) -> None:
    trace = TraceFiles(tmp_path / "ami.ami").open()
    assert trace is not None
    trace.received(BANNER + PING)
    trace._flush()
    [path] = tmp_path.glob("ami-*.ami")
    assert path.stat().st_mode & 0o777 == 0o600  # contacts' numbers and names
    path.write_bytes(b"")  # what logrotate's copytruncate does after its copy
    trace.received(EVENT)
    trace.end(by_client=False)
    # Appended at the new start of the file: no hole of NUL bytes before it.
    frames = parse_transcript(path.read_bytes())
    assert [(f.data, f.note) for f in frames] == [(EVENT, None), (b"", "closed_by_server")]


def test_a_directory_holds_the_files(tmp_path: Path) -> None:
    trace = TraceFiles(tmp_path).open()
    assert trace is not None
    trace.end(by_client=True)
    [written] = tmp_path.glob("ami-*Z.ami")
    assert written.read_bytes().startswith(b">>> t=")


def test_an_unwritable_path_logs_one_error_and_traces_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = TraceFiles(tmp_path / "missing" / "ami.ami")
    with caplog.at_level(logging.INFO, logger="ami_bridge.wiretrace"):
        assert files.open() is None
        assert files.open() is None
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "missing" in errors[0].getMessage()
        assert "No such file or directory" in errors[0].getMessage()
        (tmp_path / "missing").mkdir()
        assert files.open() is not None
        assert "writing again" in caplog.records[-1].getMessage()


class FailingFile(io.BytesIO):
    def write(self, data: bytes) -> int:  # type: ignore[override]
        raise OSError(28, "No space left on device")


def test_a_failing_write_turns_the_trace_off_once() -> None:
    reported: list[Exception] = []
    trace = WireTrace(FailingFile(), on_error=reported.append)
    trace.received(BANNER)
    trace.received(PING)
    trace.sent(Action("Ping").encode())
    trace.end(by_client=True)
    assert len(reported) == 1 and not trace.active


async def test_frames_reach_the_file_within_the_flush_interval(tmp_path: Path) -> None:
    path = tmp_path / "live.ami"
    with path.open("xb", buffering=1 << 16) as out:
        trace = WireTrace(out, flush_interval=0.02)
        trace.received(BANNER + PING)
        assert path.read_bytes() == b""  # buffered: no system call per frame
        await asyncio.sleep(0.1)
        assert path.read_bytes() == b"<<< t=0.000\n" + BANNER + b"<<< t=0.000\n" + PING
        trace.end(by_client=False)
