"""Revise, don't overwrite: every version of a period's documents is kept, a revised
invoice has its own number, names the one it replaces and lists what changed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import full_disk, usage_file

from chargeback import api
from chargeback.core.errors import Refused


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def number_of(invoice: Path) -> str:
    found = re.search(r'<td id="number">([^<]+)</td>', invoice.read_text(encoding="utf-8"))
    assert found
    return found.group(1)


def test_a_reclose_keeps_the_first_version_and_revises_the_invoices(imported: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    march = out / "2026-03"
    api.close(imported, "2026-03", out)
    first = tree(march)
    assert number_of(march / "invoices" / "ART.html") == "ICN-202603-ART"
    assert manifest(march)["revision"] == {
        "number": 1,
        "replaces": None,
        "replaces_folder": None,
        "replaces_issued": None,
    }

    # the same close written again: the same bytes, no revision
    api.report(imported, "2026-03", out)
    assert tree(march) == first
    assert not (march / "revisions").exists()

    # reopened: a late ticket for ART (2 h at 60.00) and a credit to MATH; closed again
    api.reopen(imported, "2026-03", "late tickets")
    late = usage_file(tmp_path, "late.csv", [["2026-03-30", "HELP", "ART", "2", "T-9", "Late ticket"]])
    api.import_file(imported, late, "2026-03")
    api.adjust(imported, "2026-03", "VAN", "MATH", "-5.00", "Parking refund")
    api.close(imported, "2026-03", out)

    # the first version is kept whole, byte for byte, under revisions/1/
    assert tree(march / "revisions" / "1") == first
    assert manifest(march)["revision"]["number"] == 2
    assert manifest(march)["revision"]["replaces_folder"] == "revisions/1"
    assert manifest(march)["revision"]["replaces_issued"] == manifest(march / "revisions" / "1")["closed_at"]
    assert not any(f["path"].startswith("revisions/") for f in manifest(march)["files"])

    art = (march / "invoices" / "ART.html").read_text(encoding="utf-8")
    assert number_of(march / "invoices" / "ART.html") == "ICN-202603-ART-R2"
    assert '<strong id="replaces">ICN-202603-ART</strong>' in art
    # ART had HELP 1.5 h = 90.00 and VAN 2 d at 47.50 = 95.00; now HELP 90.00 + 120.00
    assert "Total 185.00 before, 305.00 now (USD)" in art
    changed = re.findall(r'<tr class="changed-service">(.*?)</tr>', art)
    assert changed == [
        '<td>changed amount</td><td>Help desk (HELP)</td><td class="num">90.00</td>'
        '<td class="num">210.00</td><td class="num">120.00</td>'
    ]
    assert len(re.findall(r'<tr class="added-charge"', art)) == 1
    math = (march / "invoices" / "MATH.html").read_text(encoding="utf-8")
    assert number_of(march / "invoices" / "MATH.html") == "ICN-202603-MATH-R2"
    assert "Total 45.13 before, 40.13 now (USD)" in math
    # an outside customer whose charges did not change gets the revised number too
    ext = (march / "invoices" / "EXT-1.html").read_text(encoding="utf-8")
    assert number_of(march / "invoices" / "EXT-1.html") == "INV-202603-EXT-1-R2"
    assert "Its charges are unchanged." in ext

    # reporting the revised close again makes no third version, and writes revision 2 again
    second = tree(march)
    api.report(imported, "2026-03", out)
    assert tree(march) == second
    assert sorted(p.name for p in (march / "revisions").iterdir()) == ["1"]

    # a third close: revision 3 replaces R2, and both earlier versions are kept
    api.reopen(imported, "2026-03", "one more")
    api.adjust(imported, "2026-03", "HELP", "ART", "10.00", "Setup fee")
    api.close(imported, "2026-03", out)
    assert sorted(p.name for p in (march / "revisions").iterdir()) == ["1", "2"]
    assert tree(march / "revisions" / "1") == first
    assert tree(march / "revisions" / "2") == {k: v for k, v in second.items() if not k.startswith("revisions/")}
    art = (march / "invoices" / "ART.html").read_text(encoding="utf-8")
    assert number_of(march / "invoices" / "ART.html") == "ICN-202603-ART-R3"
    assert '<strong id="replaces">ICN-202603-ART-R2</strong>' in art
    assert "Total 305.00 before, 315.00 now (USD)" in art


def test_a_close_removes_the_periods_drafts_and_a_preview_replaces_the_last(imported: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    api.preview(imported, "2026-03", out)
    api.adjust(imported, "2026-03", "HELP", "ART", "10.00", "asked by the dean", memo="Setup fee")
    api.preview(imported, "2026-03", out)
    assert sorted(p.name for p in out.iterdir()) == ["2026-03-draft"]
    assert "Setup fee" in (out / "2026-03-draft" / "invoices" / "ART.html").read_text(encoding="utf-8")
    api.close(imported, "2026-03", out)
    assert sorted(p.name for p in out.iterdir()) == ["2026-03"]


def test_a_reclose_that_cannot_write_leaves_every_version_as_it_was(imported: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    march = out / "2026-03"
    api.close(imported, "2026-03", out)
    api.reopen(imported, "2026-03", "late ticket")
    api.adjust(imported, "2026-03", "HELP", "ART", "10.00", "Setup fee")
    api.close(imported, "2026-03", out)
    before = tree(march)
    api.reopen(imported, "2026-03", "one more")
    api.adjust(imported, "2026-03", "HELP", "ART", "5.00", "Cable")
    with (
        full_disk(lambda path: ".2026-03.partial" in path and path.endswith("journal.csv")),
        pytest.raises(Refused, match="No space left on device; the period stays open"),
    ):
        api.close(imported, "2026-03", out)
    # revision 2 in place, revision 1 kept, nothing half-written beside them
    assert tree(march) == before
    assert sorted(p.name for p in out.iterdir()) == ["2026-03"]
    assert api.reconcile(imported, "2026-03").status == "open"
    api.close(imported, "2026-03", out)
    assert sorted(p.name for p in (march / "revisions").iterdir()) == ["1", "2"]
    assert number_of(march / "invoices" / "ART.html") == "ICN-202603-ART-R3"
