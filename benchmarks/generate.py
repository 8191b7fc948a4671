"""Generate a realistic book and usage files of N lines, seeded, for benchmarks.

    python benchmarks/generate.py DIR --lines 100000 [--shape uniform|skewed]
                                  [--units 2000 --services 400 --seed 1]

The book has a hierarchy (root, divisions, departments), internal providers with
services, internal and external rates with a mid-month change, recurring fees, and one
usage file per period (`usage/YYYY-MM.csv`, optionally `.xlsx`).

Two shapes of usage over the same book (same seed, same book files):

- `uniform`: any consumer uses any service, departments twenty times as often as an
  outside customer. The output of the benchmarks before shapes existed, byte for byte.
- `skewed`: as organisations have it. Each consumer uses its own 10-30 services, chosen
  mostly among the popular ones, and both consumers and services get lines Zipf-like
  (weight 1/rank^1.1): a few of each have most of the lines. When the file has at least
  as many lines as there are (consumer, service) pairs, every pair has a line, so each
  consumer's file shows its 10-30 services.

Lines are written in chunks, so ten million of them need no more memory than a hundred
thousand.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import math
import random
from collections.abc import Iterator
from itertools import accumulate
from pathlib import Path

UNITS_HEADER = [
    "code",
    "name",
    "kind",
    "parent",
    "manager",
    "email",
    "active_from",
    "active_to",
    "expense_account",
    "revenue_account",
]
SHAPES = ("uniform", "skewed")
QUANTITIES = ["1", "2", "0.5", "10.25", "3.125", "100", "0.001"]
ZIPF_S = 1.1
SERVICES_PER_CONSUMER = (10, 30)
CHUNK = 10_000


def generate(
    folder: Path,
    lines: int,
    units: int = 2000,
    services: int = 400,
    seed: int = 1,
    period: str = "2026-03",
    xlsx: bool = False,
    shape: str = "uniform",
    chunk: int = CHUNK,
) -> Path:
    """Write a book with `lines` usage lines of `shape` in `period` into `folder`, `chunk`
    lines at a time (the same bytes whatever the chunk); returns it."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}: use one of {', '.join(SHAPES)}")
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "usage").mkdir(exist_ok=True)
    (folder / "book.toml").write_text('name = "Benchmark University"\ncurrency = "USD"\n')
    divisions = [f"DIV{i:02d}" for i in range(max(2, units // 200))]
    providers = [f"PRV{i:03d}" for i in range(max(2, services // 10))]
    externals = [f"EXT{i:03d}" for i in range(max(2, units // 100))]
    departments = [f"D{i:05d}" for i in range(units - len(divisions) - len(providers) - len(externals) - 1)]
    with open(folder / "units.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(UNITS_HEADER)
        w.writerow(["ROOT", "Benchmark University", "internal", "", "", "", "", "", "6000", ""])
        for d in divisions:
            w.writerow([d, f"Division {d}", "internal", "ROOT", "", "", "", "", "6000", ""])
        for kind, head, codes, expense, revenue in (
            ("Provider", "Manager", providers, "6", "4"),
            ("Department", "Head", departments, "7", ""),
        ):
            for i, c in enumerate(codes):
                gl = f"{i % 1000:03d}"  # the GL accounts: the kind's digit, then the unit's number
                w.writerow(
                    [c, f"{kind} {c}", "internal", divisions[i % len(divisions)], f"{head} {c}"]
                    + [f"{c.lower()}@example.edu", "", "", expense + gl, revenue + gl if revenue else ""]
                )
        for e in externals:
            w.writerow([e, f"Customer {e}", "external", "", "", "", "", "", "", ""])
    codes = [f"S{i:04d}" for i in range(services)]
    owner = {s: providers[i % len(providers)] for i, s in enumerate(codes)}
    with open(folder / "services.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["code", "provider", "name", "unit_of_measure"])
        for s in codes:
            w.writerow([s, owner[s], f"Service {s}", rng.choice(["hour", "GB", "page", "day", "item"])])
    year, month = period.split("-")
    with open(folder / "rates.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["service", "customer_class", "effective_from", "effective_to", "rate"])
        for s in codes:
            base = rng.randint(1, 200000) / 1000
            w.writerow([s, "internal", "2020-01-01", f"{year}-{month}-15", f"{base:.3f}"])
            w.writerow([s, "internal", f"{year}-{month}-16", "", f"{base * 1.05:.4f}"])
            w.writerow([s, "external", "2020-01-01", "", f"{base * 1.4:.3f}"])
    with open(folder / "recurring.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["service", "consumer", "quantity", "from_period", "to_period", "description"])
        for d in departments[:: max(1, len(departments) // 200)]:
            w.writerow([rng.choice(codes), d, rng.randint(1, 5), "2020-01", "", "Monthly subscription"])
    consumers = departments + providers + externals
    path = folder / "usage" / f"{period}.csv"
    with open(path, "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["date", "service", "consumer", "quantity", "reference", "description"])
        if shape == "uniform":
            weights = [20] * len(departments) + [5] * len(providers) + [1] * len(externals)
            rows = _uniform(rng, lines, consumers, weights, codes, owner, f"{year}-{month}", chunk)
        else:
            rows = _skewed(rng, lines, consumers, codes, owner, f"{year}-{month}", chunk)
        for part in rows:
            w.writerows(part)
    if xlsx:
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet()
        with open(path, newline="") as handle:
            for row in csv.reader(handle):
                sheet.append(row)
        book.save(path.with_suffix(".xlsx"))
    return folder


Rows = Iterator[list[list[str]]]


def _uniform(
    rng: random.Random,
    lines: int,
    consumers: list[str],
    weights: list[int],
    codes: list[str],
    owner: dict[str, str],
    month: str,
    chunk: int,
) -> Rows:
    """The uniform lines, in chunks, byte for byte as when all consumers were drawn first.

    The consumers come from a copy of the generator's state, the rest from the state
    after `lines` draws, which is where the all-at-once `rng.choices` left it."""
    picker = random.Random()
    picker.setstate(rng.getstate())
    draw = rng.random
    for _ in range(lines):
        draw()
    cum_weights = list(accumulate(weights))
    services = len(codes)
    for start in range(0, lines, chunk):
        rows = []
        picks = picker.choices(consumers, cum_weights=cum_weights, k=min(chunk, lines - start))
        for n, consumer in enumerate(picks, start):
            service = codes[rng.randrange(services)]
            while owner[service] == consumer:
                service = codes[rng.randrange(services)]
            day = rng.randint(1, 28)
            quantity = rng.choice(QUANTITIES)
            rows.append([f"{month}-{day:02d}", service, consumer, quantity, f"R{n:08d}", f"Usage {n}"])
        yield rows


def _skewed(
    rng: random.Random,
    lines: int,
    consumers: list[str],
    codes: list[str],
    owner: dict[str, str],
    month: str,
    chunk: int,
) -> Rows:
    """Lines as organisations have them: few services per consumer, Zipf-like volumes.

    A seeded order ranks the services by popularity and another the consumers by size
    (weight 1/rank^s). Each consumer draws its 10-30 services without replacement,
    weighted by popularity (Efraimidis-Spirakis keys), and a line picks a (consumer,
    service) pair with the consumer's weight times the service's share of its set."""
    popularity = {s: 1 / rank**ZIPF_S for rank, s in enumerate(rng.sample(codes, len(codes)), 1)}
    pairs: list[tuple[str, str]] = []
    weights: list[float] = []
    for rank, consumer in enumerate(rng.sample(consumers, len(consumers)), 1):
        allowed = [s for s in codes if owner[s] != consumer]
        k = min(len(allowed), rng.randint(*SERVICES_PER_CONSUMER))
        keys = {s: math.log(1.0 - rng.random()) / popularity[s] for s in allowed}
        chosen = heapq.nlargest(k, allowed, key=keys.__getitem__)
        share = 1 / rank**ZIPF_S / sum(popularity[s] for s in chosen)
        for s in chosen:
            pairs.append((consumer, s))
            weights.append(share * popularity[s])
    covering = list(range(len(pairs))) if lines >= len(pairs) else []
    rng.shuffle(covering)
    cum_weights = list(accumulate(weights))
    dates = [f"{month}-{day:02d}" for day in range(1, 29)]
    for start in range(0, lines, chunk):
        size = min(chunk, lines - start)
        cover = covering[start : start + size]
        picks = cover + rng.choices(range(len(pairs)), cum_weights=cum_weights, k=size - len(cover))
        days = rng.choices(dates, k=size)
        quantities = rng.choices(QUANTITIES, k=size)
        yield [
            [days[i], pairs[p][1], pairs[p][0], quantities[i], f"R{n:08d}", f"Usage {n}"]
            for i, (n, p) in enumerate(zip(range(start, start + size), picks, strict=False))
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--services", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shape", choices=SHAPES, default="uniform")
    parser.add_argument("--xlsx", action="store_true")
    args = parser.parse_args()
    generate(args.folder, args.lines, args.units, args.services, args.seed, xlsx=args.xlsx, shape=args.shape)


if __name__ == "__main__":
    main()
