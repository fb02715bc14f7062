"""AMI ingest speed: bytes from Asterisk to call-state updates, on one core.

Feeds what Asterisk sent in every recording under tests/fixtures/ami,
repeated until there are at least --events events, through:

- ours: ``ami_bridge.codec.Decoder`` + ``ami_bridge.tracker.CallTracker``,
  every message wrapped in the ``Received`` item the AMI client emits;
- panoramisk: its own ``AMIProtocol.data_received`` dispatching every
  event to one synchronous callback registered on a ``Manager`` (no
  socket: the protocol gets a do-nothing transport).  The callback only
  counts, so panoramisk does strictly less work than our tracker.

Both get the very same chunks, in two layouts: one read per recorded frame
(one message per read: an idle connection, the worst case for both) and
--read-size reads (what a busy connection delivers; asyncio reads up to
256 KiB at a time).  Each repetition rewrites the call ids and Asterisk
Uniqueids (``c0001-v`` -> ``r7c0001-v``), so the tracker sees new calls
every time instead of stale duplicates; the tracker lives across all of
them, as in production.  Best of --runs timings, garbage collector on.

Run: .venv/bin/python bench/ami_ingest.py [--events 200000] [--runs 3] [--read-size 65536]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager

from ami_bridge.codec import Decoder
from ami_bridge.stream import Received
from ami_bridge.tools.transcript import read_transcript
from ami_bridge.tracker import CallTracker
from dialer.domain.vocabulary import CallState

AMI = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ami"
START = datetime(2026, 8, 1, tzinfo=UTC)
_CALL_ID = re.compile(rb"(?<![\w-])(c\d{4}-[vo])\b")
_UNIQUEID = re.compile(rb"(?<![\w.])(\d{10}\.\d+)\b")


@dataclass(frozen=True)
class Workload:
    chunks: list[bytes]
    stamps: list[datetime]
    messages: int
    events: int
    rounds: int
    files: int


def one_round() -> tuple[list[bytes], list[float]]:
    """Every recording's server chunks (banners dropped), and their times."""
    chunks: list[bytes] = []
    times: list[float] = []
    offset = 0.0
    for path in sorted(AMI.glob("*.ami")):
        last = 0.0
        for frame in read_transcript(path):
            if frame.direction != "server" or frame.note is not None:
                continue
            last = frame.t
            if frame.data.startswith(b"Asterisk Call Manager/"):
                continue
            chunks.append(frame.data)
            times.append(offset + frame.t)
        offset += last + 1.0
    return chunks, times


def build(min_events: int) -> Workload:
    base, times = one_round()
    per_round = b"".join(base)
    messages = per_round.count(b"\r\n\r\n")
    events = len(re.findall(rb"(?:^|\r\n\r\n)Event: ", per_round))
    rounds = -(-min_events // events)
    span = times[-1] + 1.0
    chunks: list[bytes] = []
    stamps: list[datetime] = []
    for index in range(rounds):
        prefix = b"r%d" % index
        for chunk, t in zip(base, times, strict=True):
            chunk = _CALL_ID.sub(prefix + rb"\1", chunk)
            chunks.append(_UNIQUEID.sub(prefix + rb"-\1", chunk))
            stamps.append(START + timedelta(seconds=index * span + t))
    files = len(list(AMI.glob("*.ami")))
    return Workload(chunks, stamps, messages * rounds, events * rounds, rounds, files)


def run_ours(work: Workload) -> tuple[float, dict[str, int]]:
    decoder = Decoder(expect_banner=False)
    tracker = CallTracker()
    feed = tracker.feed
    updates = 0
    ended = 0
    gc.collect()
    started = time.perf_counter()
    for chunk, at in zip(work.chunks, work.stamps, strict=True):
        for message in decoder.feed(chunk):
            for update in feed(Received(message, at)):
                updates += 1
                if update.state is CallState.ENDED:
                    ended += 1
    elapsed = time.perf_counter() - started
    return elapsed, {"updates": updates, "ended": ended, "live": len(tracker.live_calls())}


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def run_panoramisk(work: Workload) -> tuple[float, dict[str, int]]:
    loop = asyncio.new_event_loop()
    quiet = logging.getLogger("bench.panoramisk")
    quiet.disabled = True
    try:
        manager = Manager(loop=loop, log=quiet)
        # Drop the Manager's own FullyBooted handler (it schedules a task):
        # exactly one callback is registered, ours.
        manager.callbacks.clear()
        manager.patterns.clear()
        seen = [0]

        def on_event(_manager: Any, _event: Any) -> None:
            seen[0] += 1

        manager.register_event("*", on_event)
        protocol = AMIProtocol()
        protocol.connection_made(_NullTransport())
        protocol.factory = manager
        protocol.log = quiet
        protocol.encoding = "utf8"
        data_received: Callable[[bytes], None] = protocol.data_received
        gc.collect()
        started = time.perf_counter()
        for chunk in work.chunks:
            data_received(chunk)
        elapsed = time.perf_counter() - started
        return elapsed, {"dispatched": seen[0]}
    finally:
        loop.close()


def run_ours_decoder_only(work: Workload, *, parse: bool) -> tuple[float, dict[str, int]]:
    decoder = Decoder(expect_banner=False)
    count = 0
    gc.collect()
    started = time.perf_counter()
    for chunk in work.chunks:
        for message in decoder.feed(chunk):
            if parse:
                message.fields  # noqa: B018 - the lazy parse is what is measured
            count += 1
    elapsed = time.perf_counter() - started
    return elapsed, {"messages": count}


def best(runs: int, fn: Callable[[], tuple[float, dict[str, int]]]) -> tuple[float, dict[str, int]]:
    results = [fn() for _ in range(runs)]
    return min(results, key=lambda result: result[0])


def rechunk(work: Workload, size: int) -> Workload:
    """The same bytes cut into reads of ``size`` bytes, as a busy socket gives."""
    data = b"".join(work.chunks)
    chunks = [data[start : start + size] for start in range(0, len(data), size)]
    # A read's messages all get the read's time, as the AMI client stamps them.
    ends = []
    position = 0
    for chunk in work.chunks:
        position += len(chunk)
        ends.append(position)
    stamps = []
    index = 0
    for start in range(0, len(data), size):
        last = min(start + size, len(data))
        while ends[index] < last:
            index += 1
        stamps.append(work.stamps[index])
    return Workload(chunks, stamps, work.messages, work.events, work.rounds, work.files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--read-size", type=int, default=65_536)
    args = parser.parse_args()

    recorded = build(args.events)
    size = sum(map(len, recorded.chunks))
    print(
        f"AMI ingest: {recorded.events:,} events ({recorded.messages:,} messages, "
        f"{size / 1e6:.1f} MB) = {recorded.files} recordings x {recorded.rounds} rounds; "
        f"best of {args.runs}; one core"
    )
    version = metadata.version("panoramisk")
    print(f"{'reads':22} {'pipeline':40} {'seconds':>8} {'events/s':>10} {'vs panoramisk':>14}")
    bulk = rechunk(recorded, args.read_size)
    layouts = [
        ("one message per read", recorded),
        (f"{args.read_size // 1024} KiB reads", bulk),
    ]
    info: dict[str, int] = {}
    for label, work in layouts:
        ours, info = best(args.runs, lambda work=work: run_ours(work))
        theirs, theirs_info = best(args.runs, lambda work=work: run_panoramisk(work))
        rows = [
            ("ours: Decoder + CallTracker", ours),
            (f"panoramisk {version}: AMIProtocol + 1 callback", theirs),
        ]
        if work is recorded:
            lazy, _ = best(args.runs, lambda: run_ours_decoder_only(recorded, parse=False))
            eager, _ = best(args.runs, lambda: run_ours_decoder_only(recorded, parse=True))
            rows += [
                ("  ours: Decoder alone", lazy),
                ("  ours: Decoder, every message parsed", eager),
            ]
        for name, seconds in rows:
            rate = work.events / seconds
            print(f"{label:22} {name:40} {seconds:8.3f} {rate:10,.0f} {theirs / seconds:13.2f}x")
            label = ""
        assert theirs_info["dispatched"] == work.events
    print(
        f"tracker: {info['updates']:,} call updates, {info['ended']:,} calls ended, "
        f"{info['live']:,} still live (the crash recording's call only ends on a resync)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
