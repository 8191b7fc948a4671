"""Generate a realistic book and usage files of N lines, seeded, for benchmarks.

    python benchmarks/generate.py DIR --lines 100000 [--units 2000 --services 400 --seed 1]

The book has a hierarchy (root, divisions, departments), internal providers with
services, internal and external rates with a mid-month change, recurring fees, and one
usage file per period (`usage/YYYY-MM.csv`, optionally `.xlsx`).
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

UNITS_HEADER = ["code", "name", "kind", "parent", "manager", "email", "active_from", "active_to",
                "expense_account", "revenue_account"]


def generate(folder: Path, lines: int, units: int = 2000, services: int = 400, seed: int = 1,
             period: str = "2026-03", xlsx: bool = False) -> Path:
    """Write a book with `lines` usage lines in `period` into `folder`; returns it."""
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
        for i, p in enumerate(providers):
            w.writerow([p, f"Provider {p}", "internal", divisions[i % len(divisions)], f"Manager {p}",
                        f"{p.lower()}@example.edu", "", "", f"6{i % 1000:03d}", f"4{i % 1000:03d}"])
        for i, d in enumerate(departments):
            w.writerow([d, f"Department {d}", "internal", divisions[i % len(divisions)], f"Head {d}",
                        f"{d.lower()}@example.edu", "", "", f"7{i % 1000:03d}", ""])
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
    weights = [20] * len(departments) + [5] * len(providers) + [1] * len(externals)
    path = folder / "usage" / f"{period}.csv"
    with open(path, "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["date", "service", "consumer", "quantity", "reference", "description"])
        picks = rng.choices(consumers, weights, k=lines)
        for n, consumer in enumerate(picks):
            service = codes[rng.randrange(services)]
            while owner[service] == consumer:
                service = codes[rng.randrange(services)]
            day = rng.randint(1, 28)
            quantity = rng.choice(["1", "2", "0.5", "10.25", "3.125", "100", "0.001"])
            w.writerow([f"{year}-{month}-{day:02d}", service, consumer, quantity, f"R{n:08d}",
                        f"Usage {n}"])
    if xlsx:
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet()
        with open(path, newline="") as handle:
            for row in csv.reader(handle):
                sheet.append(row)
        book.save(path.with_suffix(".xlsx"))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--services", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--xlsx", action="store_true")
    args = parser.parse_args()
    generate(args.folder, args.lines, args.units, args.services, args.seed, xlsx=args.xlsx)


if __name__ == "__main__":
    main()
