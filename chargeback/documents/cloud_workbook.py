"""`cloud.xlsx`: a period's cloud bills reconciled, for finance.

Sheet "Bill" lists every imported bill's rows per InvoiceId and bucket (`charged`,
`purchase`, `unused`, `unmatched`, `untagged`: every row is in exactly one) with their
row count, BilledCost, EffectiveCost, cost basis, markup and what was charged (to a
department, to the pool, or to no one for a commitment purchase). Below it, the proof,
in formulas over those rows: the rows read are the buckets' rows; the vendor bill
(BilledCost per InvoiceId) less commitment purchases plus their amortization (the cost
basis less BilledCost of the other rows) is the cost basis charged or pooled; with the
markup it is what departments and the pool were charged; the usage lines posted differ
from the departments' bucket by their rounding (each line is rounded once) and the pool
spread by allocation is the pool. Each check cell says OK when its two sides agree to
the cent.

Written with XlsxWriter's public API, with a fixed creation time (the same data gives
the same bytes).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import xlsxwriter
from sqlalchemy import Connection, func, select
from xlsxwriter.utility import xl_rowcol_to_cell

from chargeback.core.money import currency_format, from_minor
from chargeback.core.safe import neutralize
from chargeback.ledger.cloud import POOL_BUCKETS, voided
from chargeback.store.schema import Book, CloudBucket, CloudSettings, Entry, Import, Usage

HEADER = ("File", "InvoiceId", "Bucket", "Rows", "BilledCost", "EffectiveCost", "Cost basis", "Markup", "Charged", "To")
GOES_TO = {
    "charged": "departments (usage lines)",
    "purchase": "no one: commitment purchase (reaches departments through EffectiveCost)",
    "unused": "the pool: unused commitment",
    "unmatched": "the pool: no rule of cloud_map.csv matched",
    "untagged": "the pool: untagged, no rule matched",
}


def has_cloud(conn: Connection, period: str) -> bool:
    found = select(CloudBucket.id).where(CloudBucket.period == period, ~voided()).limit(1)
    return conn.execute(found).first() is not None


def write_cloud_workbook(conn: Connection, period: str, path: Path, *, draft: bool, when: dt.datetime) -> None:
    """Write `cloud.xlsx` of `period` (which has imported cloud bills) to `path`."""
    name, currency, digits = conn.execute(select(Book.name, Book.currency, Book.minor_digits)).one()
    settings = conn.execute(select(CloudSettings.service, CloudSettings.pool)).first()
    buckets = conn.execute(
        select(
            Import.file_name,
            CloudBucket.invoice,
            CloudBucket.bucket,
            CloudBucket.rows,
            CloudBucket.billed_minor,
            CloudBucket.effective_minor,
            CloudBucket.basis_minor,
            CloudBucket.markup_minor,
            CloudBucket.charged_minor,
            CloudBucket.basis,
        )
        .join(Import, Import.id == CloudBucket.import_id)
        .where(CloudBucket.period == period, ~voided())
        .order_by(CloudBucket.import_id, CloudBucket.invoice, CloudBucket.bucket)
    ).all()
    imports = select(CloudBucket.import_id).where(CloudBucket.period == period, ~voided()).distinct()
    rows_read = conn.execute(select(func.sum(Import.lines_read)).where(Import.id.in_(imports))).scalar() or 0
    lines_posted = (
        conn.execute(
            select(func.sum(Usage.amount_minor)).where(Usage.import_id.in_(imports), Usage.amount_minor.is_not(None))
        ).scalar()
        or 0
    )
    spread = 0
    if settings is not None:
        spread = (
            conn.execute(
                select(func.sum(Entry.amount_minor)).where(
                    Entry.period == period,
                    Entry.kind == "allocation",
                    Entry.source.like(f"allocation:{settings.pool}:%"),
                )
            ).scalar()
            or 0
        )
    bases = sorted({b.basis for b in buckets})
    amount = lambda minor: from_minor(int(minor), digits)  # noqa: E731

    partial = path.with_name(f".{path.name}.partial")
    try:
        book = xlsxwriter.Workbook(
            str(partial), {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False}
        )
        title = f"Cloud bill reconciliation {period}" + (" (DRAFT)" if draft else "")
        book.set_properties({"title": title, "author": "chargeback", "subject": name, "created": when})
        bold = book.add_format({"bold": True})
        head = book.add_format({"bold": True, "bg_color": "#DDE4EE", "text_wrap": True, "valign": "top"})
        money = book.add_format({"num_format": currency_format(currency, digits)})
        money_bold = book.add_format({"num_format": currency_format(currency, digits), "bold": True})
        sheet = book.add_worksheet("Bill")
        sheet.set_column(0, 0, 34)
        sheet.set_column(1, 2, 16)
        sheet.set_column(3, 8, 15)
        sheet.set_column(9, 9, 40)
        sheet.write_string(0, 0, neutralize(f"{title}: {name}"), book.add_format({"bold": True, "font_size": 14}))
        sheet.write_string(
            1,
            0,
            neutralize(
                f"Cost basis: {', '.join(bases)}; amounts in {currency}; every row of the bills is in one bucket"
            ),
        )
        sheet.write_row(3, 0, HEADER, head)
        first = 4
        for r, b in enumerate(buckets, start=first):
            sheet.write_string(r, 0, neutralize(Path(b.file_name).name))
            sheet.write_string(r, 1, neutralize(b.invoice))
            sheet.write_string(r, 2, b.bucket)
            sheet.write_number(r, 3, b.rows)
            for col, value in enumerate((b.billed_minor, b.effective_minor, b.basis_minor, b.markup_minor), start=4):
                sheet.write_number(r, col, amount(value), money)
            sheet.write_number(r, 8, amount(b.charged_minor), money)
            sheet.write_string(r, 9, GOES_TO.get(b.bucket, ""))
        last = first + len(buckets) - 1
        total = last + 1
        sheet.write_string(total, 0, "Total", bold)

        def column(col: int) -> str:
            top = xl_rowcol_to_cell(first, col, row_abs=True, col_abs=True)
            return f"{top}:{xl_rowcol_to_cell(last, col, row_abs=True, col_abs=True)}"

        def sum_of(col: int) -> str:
            return f"SUM({column(col)})"

        def sum_if(bucket: str, col: int) -> str:
            return f'SUMIF({column(2)},"{bucket}",{column(col)})'

        sums = {
            3: sum(b.rows for b in buckets),
            4: sum(b.billed_minor for b in buckets),
            5: sum(b.effective_minor for b in buckets),
            6: sum(b.basis_minor for b in buckets),
            7: sum(b.markup_minor for b in buckets),
            8: sum(b.charged_minor for b in buckets),
        }
        for col, value in sums.items():
            sheet.write_formula(
                total, col, f"={sum_of(col)}", bold if col == 3 else money_bold, value if col == 3 else amount(value)
            )

        def of(bucket: str, field: str) -> int:
            return sum(getattr(b, field) for b in buckets if b.bucket == bucket)

        r = total + 2
        sheet.write_row(r, 0, ("Proof", "Amount", "Check", "Is"), head)
        r += 1
        proof_rows: dict[str, int] = {}

        def line(
            key: str,
            label: str,
            formula: str,
            value: object,
            check: tuple[str, object] | None = None,
            is_money: bool = True,
        ) -> None:
            nonlocal r
            proof_rows[key] = r
            sheet.write_string(r, 0, label)
            shown = amount(value) if is_money else value
            sheet.write_formula(r, 1, formula, money if is_money else None, shown)
            if check is not None:
                other, other_value = check
                shown_other = amount(other_value) if is_money else other_value
                sheet.write_formula(r, 2, other, money if is_money else None, shown_other)
                ok = "OK" if shown == shown_other else "DIFFERENT"
                here, there = xl_rowcol_to_cell(r, 1), xl_rowcol_to_cell(r, 2)
                sheet.write_formula(r, 3, f'=IF(ROUND({here}-{there},{digits})=0,"OK","DIFFERENT")', bold, ok)
            r += 1

        def at(key: str) -> str:
            return xl_rowcol_to_cell(proof_rows[key], 1)

        billed = sums[4]
        purchases = of("purchase", "billed_minor")
        basis_all = sums[6]
        basis_purchase = of("purchase", "basis_minor")
        amortization = (basis_all - basis_purchase) - (billed - purchases)
        line("rows", "Rows of the bills (read)", f"={rows_read}", rows_read, (f"={sum_of(3)}", sums[3]), is_money=False)
        for invoice in sorted({b.invoice for b in buckets}):
            text = invoice.replace('"', '""')
            line(
                f"invoice {invoice}",
                neutralize(f"  bill of InvoiceId {invoice or '(none)'} (BilledCost)") or "",
                f'=SUMIF({column(1)},"{text}",{column(4)})',
                sum(b.billed_minor for b in buckets if b.invoice == invoice),
            )
        line("bill", "Vendor bill (BilledCost)", f"={sum_of(4)}", billed)
        line("purchases", "less commitment purchases (BilledCost)", f"=-{sum_if('purchase', 4)}", -purchases)
        line(
            "amortization",
            "plus amortization and other cost basis differences",
            f"=({sum_of(6)}-{sum_if('purchase', 6)})-({sum_of(4)}-{sum_if('purchase', 4)})",
            amortization,
        )
        charged_basis = of("charged", "basis_minor")
        pooled_basis = sum(of(b, "basis_minor") for b in POOL_BUCKETS)
        line(
            "basis",
            "= cost basis charged or pooled",
            f"={at('bill')}+{at('purchases')}+{at('amortization')}",
            billed - purchases + amortization,
            (f"={sum_if('charged', 6)}+" + "+".join(sum_if(b, 6) for b in POOL_BUCKETS), charged_basis + pooled_basis),
        )
        line("to_departments", "  of which charged to departments", f"={sum_if('charged', 6)}", charged_basis)
        for bucket in POOL_BUCKETS:
            line(
                f"pool_{bucket}",
                f"  of which to the pool: {bucket}",
                f"={sum_if(bucket, 6)}",
                of(bucket, "basis_minor"),
            )
        line("markup", "plus markup", f"={sum_of(7)}", sums[7])
        line(
            "charged",
            "= charged to departments and the pool",
            f"={at('basis')}+{at('markup')}",
            charged_basis + pooled_basis + sums[7],
            (f"={sum_of(8)}", sums[8]),
        )
        departments = of("charged", "charged_minor")
        pool = sum(of(b, "charged_minor") for b in POOL_BUCKETS)
        line("departments", "  to departments", f"={sum_if('charged', 8)}", departments)
        line("pool", "  to the pool", "=" + "+".join(sum_if(b, 8) for b in POOL_BUCKETS), pool)
        line(
            "lines",
            "Usage lines posted to departments (each rounded once)",
            f"={from_minor(int(lines_posted), digits)}",
            lines_posted,
        )
        line(
            "rounding",
            "  their rounding against the departments' bucket",
            f"={at('lines')}-{at('departments')}",
            lines_posted - departments,
        )
        if settings is not None:
            line(
                "spread",
                f"Pool {settings.pool} spread by allocation (when posted)",
                f"={from_minor(int(spread), digits)}",
                spread,
                (f"={at('pool')}", pool) if spread else None,
            )
        book.close()
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
