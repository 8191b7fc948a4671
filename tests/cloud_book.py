"""A small book with a cloud provider and FOCUS bills written row by row, for the cloud tests."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from benchmark_scripts import benchmark_script
from conftest import BOOKS

#: The columns of a FOCUS bill, in the order the benchmark's generator writes them.
FOCUS_COLUMNS = benchmark_script("focus").COLUMNS

CLOUD_TOML = """
[cloud]
provider = "CLOUD"
service = "CLOUD-BILL"
pool = "CLOUD-POOL"
basis = "{basis}"

[cloud.markup]
Compute = 10
Storage = 2.5
"""

#: The account the first rule gives to ART.
ART_ACCOUNT = "111111111111"

RULES = [
    ["priority", "match", "value", "consumer"],
    ["10", "SubAccountId", ART_ACCOUNT, "ART"],
    ["20", "tag:team", "math", "MATH"],
    ["30", "ResourceId", "arn:aws:s3:::fleet-", "FLEET"],
    ["40", "ServiceName", "Amazon Route 53", "IT"],
    ["50", "SubAccountName", "library", "EXT-1"],
    ["60", "ServiceCategory", "Databases", "IT"],
    ["70", "RegionId", "eu-west-1", "MATH"],
]


def cloud_book(tmp_path: Path, basis: str = "EffectiveCost") -> Path:
    """The contract's mini book with a cloud provider CLOUD, its service CLOUD-BILL, a pool
    CLOUD-POOL and one rule of each kind."""
    book = tmp_path / "cloudbook"
    shutil.copytree(BOOKS / "mini", book)
    with open(book / "units.csv", "a", encoding="utf-8") as handle:
        handle.write("CLOUD,Cloud Platform Team,internal,COL\n")
    with open(book / "services.csv", "a", encoding="utf-8") as handle:
        handle.write("CLOUD-BILL,CLOUD,Cloud services,USD\n")
    with open(book / "book.toml", "a", encoding="utf-8") as handle:
        handle.write(CLOUD_TOML.format(basis=basis))
    with open(book / "cloud_map.csv", "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(RULES)
    return book


def row(**values: object) -> dict[str, str]:
    """A FOCUS row: a Usage row of 1.00 USD on 2026-03-02 unless told otherwise."""
    cost = str(values.pop("cost", "1.00"))
    tags = values.pop("tags", None)
    base = {
        "BillingAccountId": "999999999999",
        "BillingCurrency": "USD",
        "BilledCost": cost,
        "EffectiveCost": cost,
        "ListCost": cost,
        "ChargeCategory": "Usage",
        "ChargeClass": "",
        "ChargePeriodStart": "2026-03-02T00:00:00Z",
        "ChargePeriodEnd": "2026-03-02T01:00:00Z",
        "CommitmentDiscountId": "",
        "CommitmentDiscountStatus": "",
        "ConsumedQuantity": "1",
        "PricingQuantity": "1",
        "InvoiceId": "INV-2026-03",
        "RegionId": "us-east-1",
        "ResourceId": "i-0abc",
        "ServiceCategory": "Compute",
        "ServiceName": "Amazon Elastic Compute Cloud",
        "SkuId": "SKU-EC2",
        "SubAccountId": "222222222222",
        "SubAccountName": "sandbox",
        "Tags": json.dumps(tags) if tags is not None else "",
    }
    base.update({k: str(v) for k, v in values.items()})
    return base


def write_focus(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, FOCUS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path
