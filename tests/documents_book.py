"""A book whose periods hold everything the documents must show: a unit hierarchy, an
outside customer, late charges, credits, adjustments, duplicates, a reopen, and
hostile text (HTML, formula starts) in descriptions and references."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from conftest import BOOKS, csv_rows, import_rows

from chargeback import api

HOSTILE = [
    "=cmd|' /C calc'!A0",
    "+1+2",
    "-2+3",
    "@SUM(A1:A9)",
    "\tTabbed",
    "\rReturned",
    "<script>alert('x')</script> & Sons",
]


def build(url: str, folder: Path) -> Path:
    """Load the book, import, adjust, close 2026-03 (reopened once) and 2026-04;
    returns the output folder."""
    book = folder / "book"
    shutil.copytree(BOOKS / "mini", book)
    shutil.rmtree(book / "usage")
    with open(book / "units.csv", "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(
            [
                ["code", "name", "kind", "parent", "manager", "expense_account", "revenue_account"],
                ["COL", "Mini College", "internal", "", "Dean Ada", "", ""],
                ["IT", "Information Technology", "internal", "COL", "", "6100", "4100"],
                ["FLEET", "Fleet Services", "internal", "COL", "", "6100", "4200"],
                ["ART", "Art Department", "internal", "COL", "Frida K.", "6100", ""],
                ["MATH", "Mathematics", "internal", "COL", "", "-6200", ""],
                ["EXT-1", "Town Library", "external", "", "Head Librarian", "", ""],
                ["CHEM", "Chemistry & <Labs>", "internal", "SCI", "", "", ""],
                ["SCI", "=Science Faculty", "internal", "COL", "", "", ""],
            ]
        )
    (book / "book.toml").write_text('name = "Mini College & Co"\ncurrency = "USD"\npayment_terms = "Net 30"\n')
    out = folder / "out"
    api.load(url, book)
    march = csv_rows("""
        2026-03-02,HELP,ART,1.5,T-1,Laptop setup
        2026-03-05,VAN,MATH,1,V-1,Conference trip
        2026-03-20,VAN,ART,2,V-2,Exhibit transport
        2026-03-21,HELP,EXT-1,2,T-2,Catalog kiosk & <b>screen</b>
        2026-03-22,HELP,FLEET,0.25,T-3,Dispatch PC
    """)
    march += [["2026-03-23", "HELP", "CHEM", "1", f"H-{n}", text] for n, text in enumerate(HOSTILE)]
    march += csv_rows("2026-03-24,VAN,CHEM,3,+ref-1,-minus start")
    import_rows(url, folder, march, name="2026-03.csv")
    import_rows(url, folder, march, name="2026-03.csv")  # every line a duplicate
    api.adjust(url, "2026-03", "HELP", "MATH", "-5.25", "goodwill", memo="Goodwill <credit> & thanks")
    api.close(url, "2026-03", out)
    api.reopen(url, "2026-03", "Late <invoice> from IT & fleet")
    import_rows(url, folder, "2026-03-30,HELP,SCI,2,T-9,After reopen", name="2026-03-late.csv")
    api.close(url, "2026-03", out)
    april = """
        2026-03-30,HELP,MATH,1,T-4,Late ticket
        2026-04-02,HELP,ART,-0.5,T-1C,Credit for T-1
        2026-04-03,VAN,IT,3,V-3,Equipment move
        2026-04-04,HELP,CHEM,4,T-5,Instrument PCs
        2026-04-05,HELP,EXT-1,1,T-6,Kiosk repair
    """
    import_rows(url, folder, april, "2026-04", name="2026-04.csv")
    api.adjust(url, "2026-04", "VAN", "ART", "12.00", "fuel price", "FUEL-1", memo="Fuel surcharge")
    api.close(url, "2026-04", out)
    return out
