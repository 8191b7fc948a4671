"""The benchmark's generator: the skewed shape is what it claims, the uniform one unchanged.

Benchmark figures are compared across rounds (`benchmarks/HISTORY.md`), so the uniform
book must stay the one every earlier round measured.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType

import pytest
from benchmark_scripts import benchmark_script

# sha256 over the folder written by the generator as it was before shapes existed
# (commit 33f1dbd), computed once from that code with `digest` below; the uniform shape
# must reproduce it byte for byte.
UNIFORM_BEFORE_SHAPES = {
    (1000, 2000, 400, 1): "f8f7dda9a640d2969019e18e447ffb1d017b1bc2977b5190e9b48b94e8e10877",
    (500, 300, 50, 7): "7b32cd38a4e5fdd710a14db2c0a6df80e62b784babac6e52a5f30b9d5bbf9b7b",
}


@pytest.fixture(scope="module")
def generate() -> ModuleType:
    return benchmark_script("generate")


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def usage(folder: Path) -> list[dict[str, str]]:
    with open(folder / "usage" / "2026-03.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.parametrize("size", sorted(UNIFORM_BEFORE_SHAPES))
def test_uniform_is_unchanged(generate: ModuleType, tmp_path: Path, size: tuple[int, int, int, int]) -> None:
    lines, units, services, seed = size
    folder = generate.generate(tmp_path / "book", lines, units, services, seed)
    assert digest(folder) == UNIFORM_BEFORE_SHAPES[size]


def test_uniform_is_the_same_across_chunks(generate: ModuleType, tmp_path: Path) -> None:
    """Writing in chunks must not change which random draw goes where."""
    whole = generate.generate(tmp_path / "whole", 1000, 300, 50, 7)
    chunked = generate.generate(tmp_path / "chunked", 1000, 300, 50, 7, chunk=64)
    assert digest(whole) == digest(chunked)


def test_skewed(generate: ModuleType, tmp_path: Path) -> None:
    folder = generate.generate(tmp_path / "a", 8000, 200, 60, 3, shape="skewed")
    rows = usage(folder)
    assert len(rows) == 8000
    assert len({row["reference"] for row in rows}) == 8000
    services: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        services[row["consumer"]].add(row["service"])
    with open(folder / "units.csv", newline="") as handle:
        consumers = {
            u["code"]
            for u in csv.DictReader(handle)
            if u["code"].startswith(("D", "PRV", "EXT")) and not u["code"].startswith("DIV")
        }
    assert set(services) == consumers
    assert all(10 <= len(used) <= 30 for used in services.values())
    busiest = Counter(row["consumer"] for row in rows).most_common()
    tenth = len(busiest) // 10
    assert sum(n for _, n in busiest[:tenth]) > 3 * len(rows) * tenth / len(busiest)
    with open(folder / "services.csv", newline="") as handle:
        owner = {s["code"]: s["provider"] for s in csv.DictReader(handle)}
    assert all(owner[row["service"]] != row["consumer"] for row in rows)

    again = generate.generate(tmp_path / "b", 8000, 200, 60, 3, shape="skewed")
    assert digest(again) == digest(folder)
    other = generate.generate(tmp_path / "c", 8000, 200, 60, 4, shape="skewed")
    assert digest(other) != digest(folder)
    uniform = generate.generate(tmp_path / "d", 8000, 200, 60, 3)
    assert all(
        (uniform / name).read_bytes() == (folder / name).read_bytes()
        for name in ("units.csv", "services.csv", "rates.csv", "recurring.csv")
    )
