"""How long a big period's documents take to write.

Builds a book with 2,000 consumers (1,900 departments under 40 schools, 100 outside
customers) and one month of 200,000 usage lines, runs it (`api.run`: load, import,
close and write the documents), then writes the documents again with `api.report`
and prints both times. The issue's target: documents in under a minute on 2 cores.

    PYTHONPATH=. python benchmarks/documents.py [--consumers N] [--lines N] [--db URL]
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path

PERIOD = "2026-03"
PROVIDERS = ["IT", "FLEET", "PRINT", "LABS", "FACIL", "LEGAL", "HR", "PAYROLL", "CATER", "AV"]


def build_book(folder: Path, consumers: int, lines: int, seed: int = 7) -> Path:
    """A book folder with `consumers` consumers and one usage file of `lines` lines."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "book.toml").write_text('name = "Benchmark University"\ncurrency = "USD"\npayment_terms = "Net 30"\n')
    externals = max(1, consumers // 20)
    departments = consumers - externals
    schools = max(1, departments // 48)
    units = [["ROOT", "Benchmark University", "internal", "", "Office of the President", ""]]
    units += [[p, f"Provider {p}", "internal", "ROOT", f"Head of {p}", ""] for p in PROVIDERS]
    units += [[f"S{s:02d}", f"School {s}", "internal", "ROOT", f"Dean {s}", ""] for s in range(schools)]
    codes = []
    for d in range(departments):
        code = f"D{d:04d}"
        codes.append(code)
        units.append(
            [code, f"Department {d} & Co <{d}>", "internal", f"S{d % schools:02d}", f"Manager {d}", f"d{d}@example.edu"]
        )
    for e in range(externals):
        code = f"X{e:03d}"
        codes.append(code)
        units.append([code, f"Customer {e}", "external", "", f"Buyer {e}", ""])
    _write(folder / "units.csv", ["code", "name", "kind", "parent", "manager", "email"], units)
    services = [[f"{p}{i}", p, f"{p} service {i}", "hour" if i % 2 else "item"] for p in PROVIDERS for i in range(3)]
    _write(folder / "services.csv", ["code", "provider", "name", "unit_of_measure"], services)
    rates = []
    for code, *_ in services:
        rates.append([code, "internal", "2025-01-01", "", f"{rng.randint(100, 9000) / 100:.2f}"])
        rates.append([code, "external", "2025-01-01", "", f"{rng.randint(100, 9000) / 100 * 1.4:.3f}"])
    _write(folder / "rates.csv", ["service", "customer_class", "effective_from", "effective_to", "rate"], rates)
    usage = []
    for n in range(lines):
        service = services[rng.randrange(len(services))]
        consumer = codes[n % len(codes)] if n < len(codes) else rng.choice(codes)
        day = f"2026-02-{rng.randint(20, 28):02d}" if n % 97 == 0 else f"{PERIOD}-{rng.randint(1, 31):02d}"
        quantity = f"{rng.randint(1, 400) / 4:g}"
        if n % 211 == 0:
            quantity = "-" + quantity
        usage.append(
            [day, service[0], consumer, quantity, f"R{n:07d}", f"Work order {n}" if n % 50 else f'=HYPERLINK("x") {n}']
        )
    _write(
        folder / "usage" / f"{PERIOD}.csv",
        ["date", "service", "consumer", "quantity", "reference", "description"],
        usage,
    )
    return folder


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def main() -> None:
    from chargeback import api

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumers", type=int, default=2000)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="chargeback-bench-"))
    url = args.db or f"sqlite:///{work / 'bench.db'}"
    started = time.perf_counter()
    book = build_book(work / "book", args.consumers, args.lines)
    print(
        f"book: {args.consumers} consumers, {args.lines} usage lines "
        f"({time.perf_counter() - started:.1f} s to generate)"
    )
    started = time.perf_counter()
    api.run(url, book, work / "out")
    print(f"run (load, import, close, documents): {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    folder = api.report(url, PERIOD, work / "out")
    took = time.perf_counter() - started
    files = sum(1 for path in folder.rglob("*") if path.is_file())
    print(f"documents (report {PERIOD}): {took:.1f} s for {files} files in {folder}")


if __name__ == "__main__":
    main()
