"""Cloud bills: a FOCUS export imported, charged to departments, its pool spread and the
bill reconciled in cloud.xlsx, on SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
import shutil
from decimal import Decimal
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from cloud_book import ART_ACCOUNT, FOCUS_COLUMNS, cloud_book, row, write_focus
from sqlalchemy import func, select

from chargeback import api
from chargeback.core.errors import InputRefused
from chargeback.store import db
from chargeback.store.schema import CloudBucket, Entry, Usage

PERIOD = "2026-03"
#: A row of ART's that the commitment ri-1 covered: nothing billed, its cost amortized.
COVERED_BY_RI_1 = {
    "SubAccountId": ART_ACCOUNT,
    "CommitmentDiscountId": "ri-1",
    "CommitmentDiscountStatus": "Used",
    "BilledCost": "0",
}


@pytest.fixture
def book(tmp_path: Path) -> Path:
    return cloud_book(tmp_path)


@pytest.fixture
def loaded_cloud(db_url: str, book: Path) -> str:
    api.load(db_url, book)
    return db_url


def charged(url: str, period: str = PERIOD) -> dict[str, Decimal]:
    """The usage charges of the cloud service per consumer after a close, in dollars."""
    with db.reading(db.connect(url)) as conn:
        rows = conn.execute(
            select(Entry.consumer, func.sum(Entry.amount_minor))
            .where(Entry.period == period, Entry.service == "CLOUD-BILL", Entry.kind == "usage")
            .group_by(Entry.consumer)
        ).all()
    return {consumer: Decimal(int(total)) / 100 for consumer, total in rows}


def allocated(url: str, period: str = PERIOD) -> dict[str, Decimal]:
    with db.reading(db.connect(url)) as conn:
        rows = conn.execute(
            select(Entry.consumer, func.sum(Entry.amount_minor))
            .where(Entry.period == period, Entry.kind == "allocation")
            .group_by(Entry.consumer)
        ).all()
    return {consumer: Decimal(int(total)) / 100 for consumer, total in rows}


def close(url: str, tmp_path: Path) -> Path:
    api.close(url, PERIOD, tmp_path / "out")
    return tmp_path / "out" / PERIOD


def test_each_mapping_kind_gives_its_consumer_first_rule_wins(loaded_cloud: str, tmp_path: Path) -> None:
    bill = write_focus(
        tmp_path / "bill.csv",
        [
            row(SubAccountId=ART_ACCOUNT, cost="1.00"),  # SubAccountId -> ART
            row(tags={"team": "math", "env": "prod"}, cost="2.00"),  # tag:team -> MATH
            row(ResourceId="arn:aws:s3:::fleet-photos", ServiceCategory="Other", cost="4.00"),  # prefix -> FLEET
            row(ServiceName="Amazon Route 53", ServiceCategory="Networking", cost="8.00"),  # ServiceName -> IT
            row(SubAccountName="library", ServiceCategory="Other", cost="16.00"),  # SubAccountName -> EXT-1
            row(ServiceCategory="Databases", cost="32.00"),  # ServiceCategory -> IT
            row(RegionId="eu-west-1", ServiceCategory="Other", cost="64.00"),  # RegionId -> MATH
            # matches SubAccountId (10) and tag (20): the lower priority wins
            row(SubAccountId=ART_ACCOUNT, tags={"team": "math"}, ServiceCategory="Other", cost="128.00"),
        ],
    )
    result = api.import_cloud_bill(loaded_cloud, bill, PERIOD)
    assert result.rows == 8
    assert result.buckets["charged"][0] == 8
    close(loaded_cloud, tmp_path)
    # Compute carries a 10% markup, Other and Networking none, Databases none
    assert charged(loaded_cloud) == {
        "ART": Decimal("1.10") + Decimal("128.00"),
        "MATH": Decimal("2.20") + Decimal("64.00"),
        "FLEET": Decimal("4.00"),
        "IT": Decimal("8.00") + Decimal("32.00"),
        "EXT-1": Decimal("16.00"),
    }
    assert allocated(loaded_cloud) == {}  # nothing went to the pool


def test_markup_per_service_category_on_the_exact_sum(loaded_cloud: str, tmp_path: Path) -> None:
    bill = write_focus(
        tmp_path / "bill.csv",
        [
            # two rows of one (day, consumer, service, sku): summed exactly, then marked up and rounded once
            row(SubAccountId=ART_ACCOUNT, cost="0.004"),
            row(SubAccountId=ART_ACCOUNT, cost="0.004"),
            row(SubAccountId=ART_ACCOUNT, ServiceCategory="Storage", ServiceName="S3", SkuId="S3-STD", cost="10.00"),
        ],
    )
    api.import_cloud_bill(loaded_cloud, bill, PERIOD)
    with db.reading(db.connect(loaded_cloud)) as conn:
        lines = conn.execute(
            select(Usage.description, Usage.amount_minor, Usage.source_rows, Usage.quantity_micro).order_by(
                Usage.description
            )
        ).all()
    # 0.008 x 1.10 = 0.0088 -> 0.01; 10.00 x 1.025 = 10.25
    assert lines == [
        ("Amazon Elastic Compute Cloud SKU-EC2 (2 rows)", 1, 2, 2_000_000),
        ("S3 S3-STD (1 row)", 1025, 1, 1_000_000),
    ]


def _commitment_bill(path: Path) -> Path:
    return write_focus(
        path,
        [
            # the commitment bought this month: billed, not amortized
            row(ChargeCategory="Purchase", CommitmentDiscountId="ri-1", BilledCost="300.00", EffectiveCost="0"),
            # used by ART: nothing billed, 20.00 amortized
            row(**COVERED_BY_RI_1, EffectiveCost="20.00", ListCost="50.00"),
            # on demand by MATH
            row(tags={"team": "math"}, cost="10.00"),
            # unused part of the commitment: to the pool
            row(CommitmentDiscountId="ri-1", CommitmentDiscountStatus="Unused", BilledCost="0", EffectiveCost="5.00"),
        ],
    )


def test_amortized_basis_charges_used_commitments_and_pools_the_unused(loaded_cloud: str, tmp_path: Path) -> None:
    result = api.import_cloud_bill(loaded_cloud, _commitment_bill(tmp_path / "bill.csv"), PERIOD)
    assert result.buckets["purchase"] == (1, Decimal("0.00"))
    assert result.buckets["unused"] == (1, Decimal("5.50"))
    close(loaded_cloud, tmp_path)
    assert charged(loaded_cloud) == {"ART": Decimal("22.00"), "MATH": Decimal("11.00")}
    # the pool (5.50) spread by each consumer's share of the cloud charges: 22:11
    assert allocated(loaded_cloud) == {"ART": Decimal("3.67"), "MATH": Decimal("1.83")}


def test_billed_basis_charges_what_was_billed(db_url: str, tmp_path: Path) -> None:
    api.load(db_url, cloud_book(tmp_path, basis="BilledCost"))
    api.import_cloud_bill(db_url, _commitment_bill(tmp_path / "bill.csv"), PERIOD)
    close(db_url, tmp_path)
    # the commitment's rows cost nothing billed; its purchase is charged to no one
    assert charged(db_url) == {"ART": Decimal("0.00"), "MATH": Decimal("11.00")}
    assert allocated(db_url) == {}


def test_credits_and_refunds_reduce_the_charge(loaded_cloud: str, tmp_path: Path) -> None:
    bill = write_focus(
        tmp_path / "bill.csv",
        [
            row(SubAccountId=ART_ACCOUNT, cost="100.00"),
            row(SubAccountId=ART_ACCOUNT, ChargeCategory="Credit", cost="-12.00", ConsumedQuantity=""),
            row(
                SubAccountId=ART_ACCOUNT, ChargeClass="Correction", cost="-8.00", ConsumedQuantity="-1"
            ),  # ChargeCategory Usage, as row() makes it
            row(tags={"team": "math"}, ChargeCategory="Adjustment", cost="-1.00", ServiceCategory="Other"),
            row(tags={"team": "math"}, cost="5.00", ServiceCategory="Other"),
        ],
    )
    api.import_cloud_bill(loaded_cloud, bill, PERIOD)
    close(loaded_cloud, tmp_path)
    # (100 - 12 - 8) x 1.10 = 88.00; 5 - 1 = 4.00
    assert charged(loaded_cloud) == {"ART": Decimal("88.00"), "MATH": Decimal("4.00")}


def test_unmatched_and_untagged_rows_go_to_the_pool(loaded_cloud: str, tmp_path: Path) -> None:
    bill = write_focus(
        tmp_path / "bill.csv",
        [
            row(SubAccountId=ART_ACCOUNT, cost="30.00", ServiceCategory="Other"),
            row(tags={"team": "math"}, cost="10.00", ServiceCategory="Other"),
            row(tags={"team": "unknown"}, cost="7.00", ServiceCategory="Other"),  # unmatched
            row(cost="3.00", ServiceCategory="Other"),  # untagged
        ],
    )
    result = api.import_cloud_bill(loaded_cloud, bill, PERIOD)
    assert result.buckets["unmatched"] == (1, Decimal("7.00"))
    assert result.buckets["untagged"] == (1, Decimal("3.00"))
    close(loaded_cloud, tmp_path)
    assert charged(loaded_cloud) == {"ART": Decimal("30.00"), "MATH": Decimal("10.00")}
    assert allocated(loaded_cloud) == {"ART": Decimal("7.50"), "MATH": Decimal("2.50")}
    assert api.verify(loaded_cloud).problems == []
    # downstream, a cloud charge is a charge: the journal export carries it
    exported = api.export(loaded_cloud, PERIOD, "csv") or ""
    # 2 charges and 2 pool shares, two journal lines each
    assert sum("CLOUD-BILL" in line for line in exported.splitlines()) == 8


def test_the_same_bill_twice_changes_nothing(loaded_cloud: str, tmp_path: Path) -> None:
    bill = _commitment_bill(tmp_path / "bill.csv")
    first = api.import_cloud_bill(loaded_cloud, bill, PERIOD)
    again = api.import_cloud_bill(loaded_cloud, bill, PERIOD)
    assert (first.already_imported, again.already_imported) == (False, True)
    with db.reading(db.connect(loaded_cloud)) as conn:
        assert conn.execute(select(func.count()).select_from(Usage)).scalar() == first.lines == 2
        # one invoice: purchase, charged and unused
        assert conn.execute(select(func.count()).select_from(CloudBucket)).scalar() == 3


def test_parquet_and_gzip_csv_import_as_the_csv(db_url: str, tmp_path: Path) -> None:
    csv_bill = _commitment_bill(tmp_path / "bill.csv")
    gz_bill = tmp_path / "bill.csv.gz"
    with open(csv_bill, "rb") as source, gzip.open(gz_bill, "wb") as target:
        shutil.copyfileobj(source, target)
    parquet_bill = tmp_path / "bill.parquet"
    frame = pl.read_csv(csv_bill, infer_schema=False)
    frame.with_columns(
        pl.col("BilledCost", "EffectiveCost", "ListCost").cast(pl.Decimal(20, 6)),
        pl.col("ChargePeriodStart").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC"),
    ).write_parquet(parquet_bill)
    results = {}
    for name, bill in (("csv", csv_bill), ("gz", gz_bill), ("parquet", parquet_bill)):
        folder = tmp_path / name
        folder.mkdir()
        url = db_url if name == "csv" else f"sqlite:///{folder / 'db.sqlite'}"
        api.load(url, cloud_book(folder))
        result = api.import_cloud_bill(url, bill, PERIOD)
        close(url, folder)
        results[name] = (result.rows, result.buckets, charged(url), allocated(url))
    assert results["csv"] == results["gz"] == results["parquet"]
    assert results["csv"][2] == {"ART": Decimal("22.00"), "MATH": Decimal("11.00")}


def test_a_bad_bill_is_refused_whole_with_file_line_column(loaded_cloud: str, tmp_path: Path) -> None:
    bill = write_focus(
        tmp_path / "bill.csv",
        [
            row(cost="1.00"),
            row(BilledCost="1e-5"),  # line 3
            row(ChargePeriodStart="2026-04-01T00:00:00Z"),  # line 4
            row(BillingCurrency="EUR"),  # line 5
            row(ChargeCategory="Discount"),  # line 6
            row(EffectiveCost="12,50"),  # line 7
        ],
    )
    with pytest.raises(InputRefused) as refused:
        api.import_cloud_bill(loaded_cloud, bill, PERIOD)
    shown = [str(p) for p in refused.value.problems]
    assert shown == [
        "bill.csv:3: BilledCost: 1e-5 is not a plain decimal: write digits with an optional - and . "
        "(at most 16 decimals)",
        "bill.csv:4: ChargePeriodStart: 2026-04-01T00:00:00Z is outside the period 2026-03: "
        "import the bill of that month into its own period",
        "bill.csv:5: BillingCurrency: EUR is not the book's currency USD: export the bill in USD",
        "bill.csv:6: ChargeCategory: Discount is not a FOCUS charge category: one of Usage, Purchase, Tax, Credit, "
        "Adjustment",
        "bill.csv:7: EffectiveCost: 12,50 is not a plain decimal: write digits with an optional - and . "
        "(at most 16 decimals)",
    ]
    with db.reading(db.connect(loaded_cloud)) as conn:
        assert conn.execute(select(func.count()).select_from(Usage)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(CloudBucket)).scalar() == 0


def test_a_bill_without_a_required_column_is_refused(loaded_cloud: str, tmp_path: Path) -> None:
    path = tmp_path / "bill.csv"
    frame = pl.DataFrame([row()], schema=dict.fromkeys(FOCUS_COLUMNS, pl.String)).drop("EffectiveCost")
    frame.write_csv(path)
    with pytest.raises(InputRefused) as refused:
        api.import_cloud_bill(loaded_cloud, path, PERIOD)
    assert [str(p) for p in refused.value.problems] == [
        "bill.csv:1: EffectiveCost: column is missing: a FOCUS export has it (see the FOCUS specification)"
    ]


def test_load_refuses_an_unknown_consumer_in_cloud_map(db_url: str, book: Path) -> None:
    with open(book / "cloud_map.csv", "a", encoding="utf-8") as handle:
        handle.write("80,tag:team,physics,PHYS\n90,Account,x,ART\n")
    with pytest.raises(InputRefused) as refused:
        api.load(db_url, book)
    shown = [str(p) for p in refused.value.problems]
    assert "cloud_map.csv:9: consumer: 'PHYS' is not a unit code in units.csv" in shown
    assert any(s.startswith("cloud_map.csv:10: match: 'Account' is not a match") for s in shown)


def test_cloud_xlsx_proves_the_bill_to_the_cent(loaded_cloud: str, tmp_path: Path) -> None:
    bill = write_focus(
        tmp_path / "bill.csv",
        [
            row(ChargeCategory="Purchase", CommitmentDiscountId="ri-1", BilledCost="300.00", EffectiveCost="0"),
            row(**COVERED_BY_RI_1, EffectiveCost="20.005"),
            row(SubAccountId=ART_ACCOUNT, SkuId="SKU-2", cost="0.3333"),
            row(tags={"team": "math"}, cost="10.00", InvoiceId="INV-B"),
            row(CommitmentDiscountId="ri-1", CommitmentDiscountStatus="Unused", BilledCost="0", EffectiveCost="5.00"),
            row(cost="3.00", ServiceCategory="Other"),
            row(tags={"x": "y"}, cost="7.00", ServiceCategory="Other", InvoiceId="INV-B"),
        ],
    )
    api.import_cloud_bill(loaded_cloud, bill, PERIOD)
    folder = close(loaded_cloud, tmp_path)
    values = openpyxl.load_workbook(folder / "cloud.xlsx", data_only=True)["Bill"]
    formulas = openpyxl.load_workbook(folder / "cloud.xlsx")["Bill"]
    proof = {
        values.cell(r, 1).value.strip(): (values.cell(r, 2).value, values.cell(r, 4).value, formulas.cell(r, 2).value)
        for r in range(1, values.max_row + 1)
        if isinstance(values.cell(r, 1).value, str) and isinstance(values.cell(r, 2).value, (int, float))
    }
    rows_read = proof["Rows of the bills (read)"]
    assert rows_read[:2] == (7, "OK")
    assert Decimal(str(proof["Vendor bill (BilledCost)"][0])) == Decimal("320.33")
    assert proof["Vendor bill (BilledCost)"][2].startswith("=SUM(")
    assert Decimal(str(proof["bill of InvoiceId INV-2026-03 (BilledCost)"][0])) == Decimal("303.33")
    assert Decimal(str(proof["bill of InvoiceId INV-B (BilledCost)"][0])) == Decimal("17.00")
    assert Decimal(str(proof["less commitment purchases (BilledCost)"][0])) == Decimal("-300.00")
    assert Decimal(str(proof["plus amortization and other cost basis differences"][0])) == Decimal("25.01")
    basis = proof["= cost basis charged or pooled"]
    assert (Decimal(str(basis[0])), basis[1]) == (Decimal("45.34"), "OK")
    total = proof["= charged to departments and the pool"]
    # ART 20.005 + 0.3333 at 10% = 22.37 (bucket, exact sum), MATH 11.00; pool 5.50 + 3.00 + 7.00
    assert (Decimal(str(total[0])), total[1]) == (Decimal("48.87"), "OK")
    assert Decimal(str(proof["to departments"][0])) == Decimal("33.37")
    assert Decimal(str(proof["to the pool"][0])) == Decimal("15.50")
    # the lines are rounded one by one: 22.01 + 0.37 + 11.00
    assert Decimal(str(proof["Usage lines posted to departments (each rounded once)"][0])) == Decimal("33.38")
    assert Decimal(str(proof["their rounding against the departments' bucket"][0])) == Decimal("0.01")
    spread = proof["Pool CLOUD-POOL spread by allocation (when posted)"]
    assert (Decimal(str(spread[0])), spread[1]) == (Decimal("15.50"), "OK")
    assert sum(charged(loaded_cloud).values()) + sum(allocated(loaded_cloud).values()) == Decimal("48.88")
    assert "at cost" in (folder / "invoices" / "ART.html").read_text(encoding="utf-8")
