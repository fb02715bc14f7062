"""Contact import speed into PostgreSQL.

Prints rows/second for:
- ours: `dialer.services.importer.import_contacts` on a generated 100,000-row CSV
  (and a re-import of the same file, the idempotent merge path);
- baseline: a naive row-by-row ORM import (one SELECT + INSERT and a commit
  per row), the obvious first implementation, on a 5,000-row slice;
- floor: PostgreSQL COPY of the same raw rows into an unindexed table, the
  fastest the server can take the bytes, for scale.

Then, unless ``--rows-per-file 0``, the two import paths side by side on
files of a few thousand to 50,000 rows, into one more fresh database: the
batch path (``bulk=False``, the baseline) against the bulk path (worker
processes and ``COPY``), and which of them ``DIALER_IMPORT_BULK_MIN_BYTES``
(``dialer.services.importer.BULK_MIN_BYTES``) picks for each file.

Run: .venv/bin/python bench/import_contacts.py [--rows 100000]
Uses a fresh database on DIALER_TEST_PG (default postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from common import PG_SERVER
from sqlalchemy import select

from dialer.domain.numbers import to_e164
from dialer.services.importer import BULK_MIN_BYTES, import_contacts
from dialer.store import engine as db
from dialer.store.models import Contact, ContactPhone

FIRST = ["Ada", "Émile", "Marie", "Tommy", "Grace", "Alan", "Louise", "Jean", "Fatima", "Wei"]
LAST = ["Lovelace", "Nelligan", "Curie", "Douglas", "Hopper", "Turing", "Arbour", "Tremblay"]
AREAS = ["514", "438", "450", "604", "416", "613", "819", "418"]


def generate_csv(
    path: Path, rows: int, seed: int = 1, numbers: range = range(2_000_000, 9_999_999)
) -> None:
    """``rows`` people, each with a number of its own drawn from ``numbers``."""
    rng = random.Random(seed)
    drawn = rng.sample(numbers, rows)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("first_name,last_name,phone,email,language,tags,pointage\n")
        for index, number in enumerate(drawn):
            digits = f"{rng.choice(AREAS)}{number:07d}"
            first, last = rng.choice(FIRST), rng.choice(LAST)
            handle.write(
                f"{first},{last},({digits[:3]}) {digits[3:6]}-{digits[6:]},"
                f"p{index}@example.org,{rng.choice(['fr', 'en'])},"
                f'"{rng.choice(["donor", "member"])};gotv",{rng.randint(1, 5)}\n'
            )


async def fresh_database() -> tuple[str, str]:
    name = f"dialer_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"postgresql://{PG_SERVER}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = f"postgresql+asyncpg://{PG_SERVER}/{name}"
    await db.upgrade_async(url)
    return name, url


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(f"postgresql://{PG_SERVER}/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def naive_import(url: str, path: Path, limit: int) -> int:
    """What a first version would do: the ORM, one row at a time."""
    import csv

    engine = db.create_engine(url)
    sessions = db.session_factory(engine)
    count = 0
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if count >= limit:
                break
            e164 = to_e164(row["phone"], "CA")
            async with sessions.begin() as session:
                found = await session.scalar(select(ContactPhone).where(ContactPhone.e164 == e164))
                if found is None:
                    contact = Contact(
                        first_name=row["first_name"],
                        last_name=row["last_name"],
                        email=row["email"],
                        language=row["language"],
                        tags=row["tags"].split(";"),
                        support_score=int(row["pointage"]),
                    )
                    contact.phones = [ContactPhone(e164=e164)]
                    session.add(contact)
            count += 1
    await engine.dispose()
    return count


async def copy_floor(name: str, path: Path) -> None:
    connection = await asyncpg.connect(f"postgresql://{PG_SERVER}/{name}")
    await connection.execute(
        "CREATE TABLE raw_rows (first_name text, last_name text, phone text, email text, "
        "language text, tags text, pointage int)"
    )
    await connection.copy_to_table("raw_rows", source=str(path), format="csv", header=True)
    await connection.close()


async def compare_paths(tmp: Path, sizes: list[int]) -> None:
    """The batch and the bulk path on the same sizes of file, one fresh
    database for all (each file's numbers are its own: every row is new)."""
    name, url = await fresh_database()
    lines = []
    try:
        engine = db.create_engine(url)
        sessions = db.session_factory(engine)
        for index, rows in enumerate(sizes):
            seconds: dict[bool, float] = {}
            for bulk in (False, True):
                path = tmp / f"paths-{rows}-{bulk}.csv"
                # Two disjoint millions of numbers per file and path.
                first = 2_000_000 + (2 * index + bulk) * 1_000_000
                generate_csv(path, rows, seed=index, numbers=range(first, first + 1_000_000))
                started = time.perf_counter()
                report = await import_contacts(sessions, path, region="CA", bulk=bulk)
                seconds[bulk] = time.perf_counter() - started
                assert report.imported == rows, (report.imported, report.errors[:3])
            megabytes = path.stat().st_size / 1024 / 1024
            chosen = "bulk" if path.stat().st_size >= BULK_MIN_BYTES else "batch"
            faster = "bulk" if seconds[True] < seconds[False] else "batch"
            lines.append((rows, megabytes, seconds[False], seconds[True], faster, chosen))
        await engine.dispose()
    finally:
        await drop_database(name)
    print(
        f"\n{'rows':>8} {'MB':>6} {'batch s':>8} {'bulk s':>8} {'bulk vs batch':>14}"
        f" {'faster':>7} {'picked':>7}"
    )
    for rows, megabytes, batch, bulk, faster, chosen in lines:
        print(
            f"{rows:>8} {megabytes:>6.1f} {batch:>8.2f} {bulk:>8.2f} {batch / bulk:>13.1f}x"
            f" {faster:>7} {chosen:>7}"
        )
    print(f"picked: by DIALER_IMPORT_BULK_MIN_BYTES, default {BULK_MIN_BYTES / 1024 / 1024:g} MB")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=5_000)
    parser.add_argument(
        "--rows-per-file",
        default="5000,10000,20000,50000",
        help="file sizes for the batch-against-bulk table (0: none)",
    )
    args = parser.parse_args()
    path_sizes = [int(n) for n in args.rows_per_file.split(",") if int(n) > 0]
    results: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "contacts.csv"
        generate_csv(path, args.rows)
        name, url = await fresh_database()
        try:
            engine = db.create_engine(url)
            sessions = db.session_factory(engine)
            started = time.perf_counter()
            report = await import_contacts(sessions, path, region="CA")
            results.append(
                ("ours: import_contacts", report.imported, time.perf_counter() - started)
            )
            assert report.rejected == 0, report.errors[:5]
            started = time.perf_counter()
            again = await import_contacts(sessions, path, region="CA")
            results.append(
                ("ours: re-import (merge)", again.unchanged, time.perf_counter() - started)
            )
            await engine.dispose()
        finally:
            await drop_database(name)

        name, url = await fresh_database()
        try:
            started = time.perf_counter()
            count = await naive_import(url, path, args.baseline_rows)
            results.append(("baseline: row-by-row ORM", count, time.perf_counter() - started))
            started = time.perf_counter()
            await copy_floor(name, path)
            results.append(("floor: COPY raw rows", args.rows, time.perf_counter() - started))
        finally:
            await drop_database(name)

    ours = results[0][1] / results[0][2]
    print(f"{'method':<28} {'rows':>8} {'seconds':>8} {'rows/s':>10} {'vs baseline':>12}")
    baseline = results[2][1] / results[2][2]
    for label, rows, seconds in results:
        rate = rows / seconds
        print(f"{label:<28} {rows:>8} {seconds:>8.2f} {rate:>10.0f} {rate / baseline:>11.1f}x")
    print(f"\n{args.rows} rows imported in {args.rows / ours:.1f} s")
    if path_sizes:
        with tempfile.TemporaryDirectory() as tmp:
            await compare_paths(Path(tmp), path_sizes)


if __name__ == "__main__":
    asyncio.run(main())
