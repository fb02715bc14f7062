"""How the worker cuts pending call updates into batches written side by side."""

from __future__ import annotations

from dataclasses import dataclass

from dialer.worker.call_worker import _take_batch


@dataclass(frozen=True)
class Update:
    call_id: str
    n: int


def ids(updates: list[Update]) -> list[tuple[str, int]]:
    return [(u.call_id, u.n) for u in updates]


def test_a_call_being_written_waits_and_keeps_its_order() -> None:
    pending = [Update("a", 1), Update("b", 1), Update("a", 2), Update("c", 1), Update("b", 2)]
    batch, deferred = _take_batch(pending, {"b"}, limit=10)  # type: ignore[arg-type]
    assert ids(batch) == [("a", 1), ("a", 2), ("c", 1)]
    assert ids(deferred) == [("b", 1), ("b", 2)]


def test_a_full_batch_holds_back_the_rest_of_each_call() -> None:
    pending = [Update("a", 1), Update("b", 1), Update("a", 2), Update("c", 1)]
    batch, deferred = _take_batch(pending, set(), limit=2)  # type: ignore[arg-type]
    assert ids(batch) == [("a", 1), ("b", 1)]
    # a's second update must not overtake anything: it waits with c's.
    assert ids(deferred) == [("a", 2), ("c", 1)]


def test_nothing_is_lost_or_duplicated() -> None:
    pending = [Update(call, n) for n in range(5) for call in "abcd"]
    seen: list[tuple[str, int]] = []
    in_flight: set[str] = {"c"}
    while pending:
        batch, pending = _take_batch(pending, in_flight, limit=3)  # type: ignore[arg-type]
        seen.extend(ids(batch))
        in_flight = set()
    assert sorted(seen) == sorted((call, n) for n in range(5) for call in "abcd")
    for call in "abcd":
        assert [n for c, n in seen if c == call] == list(range(5))
