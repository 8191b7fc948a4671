"""Move the flat modules of `chargeback/` into packages by domain (issue 29) and rewrite
every import that names them.

    python scripts/relayout.py            # move (git mv) and rewrite the whole tree
    python scripts/relayout.py FILE...    # only rewrite the imports of these files

Rewriting is idempotent: a file already on the new layout is left as it is.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: old module -> new dotted path under `chargeback`.
MOVES: dict[str, str] = {
    "money": "core.money",
    "errors": "core.errors",
    "fields": "core.fields",
    "pricing": "core.pricing",
    "allocation": "core.allocation",
    "safe": "core.safe",
    "progress": "core.progress",
    "db": "store.db",
    "schema": "store.schema",
    "book": "book.load",
    "reference": "book.snapshot",
    "tabular": "ingest.tabular",
    "usage": "ingest.usage",
    "usage_lines": "ingest.usage_checks",
    "journal": "ledger.journal",
    "charges": "ledger.charges",
    "adjustments": "ledger.adjustments",
    "verification": "ledger.verification",
    "audit": "ledger.audit",
    "export": "ledger.export",
    "seals": "ledger.seals",
    "periods": "close.periods",
    "reconciliation": "close.reconciliation",
    "variance": "close.variance",
    "budgets": "close.budgets",
    "recovery": "close.recovery",
    "bills": "documents.bills",
    "documents": "documents.folder",
    "invoices": "documents.invoices",
    "statements": "documents.statements",
    "reconciliation_workbook": "documents.reconciliation_workbook",
    "delivery": "documents.delivery",
    "workbooks": "documents.workbooks",
    "xlsx": "documents.small_workbooks",
}

PACKAGES = {
    "core": "Pure building blocks: money, periods and fields, pricing, allocation, refusals. No database, no files.",
    "store": "Where the books live: the schema, the database connection and its migrations.",
    "book": "The book: reference data read from a folder, checked, loaded, and read back as a snapshot.",
    "ingest": "Usage files: read, checked a whole column at a time, stored.",
    "ledger": "The journal: charges priced and posted, adjustments, verification, the audit log, seals, exports.",
    "close": "The month: periods opened, closed and reopened; reconciliation, variance, budgets, cost recovery.",
    "documents": "What people receive: statements, invoices, roll-ups, the reconciliation workbook, delivery.",
}

SUBMODULES: dict[str, set[str]] = {}
for _new in MOVES.values():
    SUBMODULES.setdefault(_new.split(".")[0], set()).add(_new.split(".")[1])

FROM_MODULE = re.compile(r"(?<![/\w-])chargeback\.([a-z_]+)\b(?!['\"`])")
FROM_PACKAGE = re.compile(r"^(\s*)from chargeback import ([^(\n]+)$", re.M)


def rewrite(text: str) -> str:
    def dotted(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in PACKAGES:
            after = match.string[match.end() :]
            imported = re.match(r"\s+import\s+\(?\s*(\w+)", after)
            if after.startswith(".") or (imported and imported.group(1) in SUBMODULES[name]):
                return match.group(0)
        return f"chargeback.{MOVES[name]}" if name in MOVES else match.group(0)

    def split(match: re.Match[str]) -> str:
        indent, names = match.group(1), match.group(2)
        stay: list[str] = []
        moved: list[str] = []
        for part in (p.strip() for p in names.split(",")):
            name, _, alias = part.partition(" as ")
            name = name.strip()
            if name in MOVES:
                package, _, module = MOVES[name].rpartition(".")
                as_name = alias.strip() or name
                suffix = "" if as_name == module else f" as {as_name}"
                moved.append(f"{indent}from chargeback.{package} import {module}{suffix}")
            else:
                stay.append(part)
        lines = ([f"{indent}from chargeback import {', '.join(stay)}"] if stay else []) + moved
        return "\n".join(lines)

    # `chargeback.<old>` in imports, strings and attribute paths first, then the names
    # of `from chargeback import ...`; a second run changes nothing.
    return FROM_PACKAGE.sub(split, FROM_MODULE.sub(dotted, text))


def files() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    keep = (".py", ".toml", ".ini", ".cfg", ".md", ".mako", ".sh")
    return [ROOT / f for f in tracked.stdout.split() if f.endswith(keep) or f.endswith("/run")]


def move() -> None:
    package_dir = ROOT / "chargeback"
    for package, doc in PACKAGES.items():
        (package_dir / package).mkdir(exist_ok=True)
        init = package_dir / package / "__init__.py"
        if not init.exists():
            init.write_text(f'"""{doc}"""\n')
            subprocess.run(["git", "add", str(init)], cwd=ROOT, check=True)
    for old, new in MOVES.items():
        source = package_dir / f"{old}.py"
        target = package_dir / (new.replace(".", "/") + ".py")
        if source.exists():
            subprocess.run(["git", "mv", str(source), str(target)], cwd=ROOT, check=True)
    if (package_dir / "migrations").exists():
        subprocess.run(["git", "mv", "chargeback/migrations", "chargeback/store/migrations"], cwd=ROOT, check=True)


def main(argv: list[str]) -> None:
    if not argv:
        move()
        targets = files()
    else:
        targets = [Path(a).resolve() for a in argv]
    for path in targets:
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        text = path.read_text()
        new = rewrite(text)
        if new != text:
            path.write_text(new)


if __name__ == "__main__":
    main(sys.argv[1:])
