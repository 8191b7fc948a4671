"""A seeded generator of FOCUS cloud bills, and the import measured on one.

    python benchmarks/focus.py DIR --rows 10000000 [--seed 1] [--period 2026-03]
                               [--format csv|gz|parquet] [--measure] [--db URL]

writes DIR/book/ (a book with 60 departments under 6 divisions, a cloud provider CLOUD,
its service CLOUD-BILL, a pool and cloud_map.csv: one rule per sub-account, one per
`team` tag, a few ResourceId prefixes and a RegionId) and DIR/focus-PERIOD.csv (or
.csv.gz, .parquet): a month of FOCUS 1.x rows, hourly, from 40 sub-accounts, 24 services
in 8 ServiceCategories and 600 SKUs, with tag skew as clouds have it: a few teams have
most of the spend, about 8% of the rows have no tags and 4% a team no rule knows; about
12% of the compute rows are covered by a commitment (BilledCost 0, EffectiveCost
amortized), a few rows a day are its unused part, two Purchase rows buy it, and credits,
refunds (ChargeClass Correction) and tax rows are sprinkled in.

Rows are made with Polars expressions over a row index (hashes seeded by `--seed`), a
million at a time, so ten million need no more memory than one million.

`--measure` loads the book into a fresh SQLite database (or `--db`) and imports the bill
in a child process, then prints the wall and CPU seconds and the child's peak RSS.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

CHUNK = 1_000_000
CATEGORIES = ["Compute", "Storage", "Databases", "Networking", "Analytics", "AI and Machine Learning", "Other", "Web"]
SERVICES = [
    ("Amazon Elastic Compute Cloud", "Compute"),
    ("AWS Lambda", "Compute"),
    ("Amazon Elastic Kubernetes Service", "Compute"),
    ("Amazon Simple Storage Service", "Storage"),
    ("Amazon Elastic Block Store", "Storage"),
    ("Amazon Elastic File System", "Storage"),
    ("Amazon Relational Database Service", "Databases"),
    ("Amazon DynamoDB", "Databases"),
    ("Amazon ElastiCache", "Databases"),
    ("Amazon Virtual Private Cloud", "Networking"),
    ("Amazon CloudFront", "Networking"),
    ("Amazon Route 53", "Networking"),
    ("Elastic Load Balancing", "Networking"),
    ("Amazon Athena", "Analytics"),
    ("Amazon Redshift", "Analytics"),
    ("AWS Glue", "Analytics"),
    ("Amazon SageMaker", "AI and Machine Learning"),
    ("Amazon Bedrock", "AI and Machine Learning"),
    ("AWS CloudTrail", "Other"),
    ("Amazon CloudWatch", "Other"),
    ("AWS Key Management Service", "Other"),
    ("AWS Support", "Other"),
    ("Amazon API Gateway", "Web"),
    ("AWS Amplify", "Web"),
]
REGIONS = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]
DIVISIONS = 6
TEAMS = 60
ACCOUNTS = 40
SKUS = 240
COLUMNS = [
    "BillingAccountId",
    "BillingCurrency",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ChargeCategory",
    "ChargeClass",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "CommitmentDiscountId",
    "CommitmentDiscountStatus",
    "ConsumedQuantity",
    "PricingQuantity",
    "InvoiceId",
    "RegionId",
    "ResourceId",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
]


def team(i: int) -> str:
    return f"T{i:03d}"


def write_book(folder: Path) -> Path:
    """The benchmark's book: departments (one a team), the cloud provider and its rules."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "book.toml").write_text(
        'name = "FOCUS Benchmark"\ncurrency = "USD"\n\n[cloud]\nprovider = "CLOUD"\nservice = "CLOUD-BILL"\n'
        'pool = "CLOUD-POOL"\n\n[cloud.markup]\nCompute = 3\nStorage = 1.5\n',
        encoding="utf-8",
    )
    with open(folder / "units.csv", "w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["code", "name", "kind", "parent"])
        out.writerow(["ROOT", "Benchmark Org", "internal", ""])
        out.writerow(["CLOUD", "Cloud Platform", "internal", "ROOT"])
        for d in range(DIVISIONS):
            out.writerow([f"D{d}", f"Division {d}", "internal", "ROOT"])
        for t in range(TEAMS):
            out.writerow([team(t), f"Team {t}", "internal", f"D{t % DIVISIONS}"])
    (folder / "services.csv").write_text(
        "code,provider,name,unit_of_measure\nCLOUD-BILL,CLOUD,Cloud services,USD\n", encoding="utf-8"
    )
    (folder / "rates.csv").write_text("service,effective_from,rate\n", encoding="utf-8")
    with open(folder / "cloud_map.csv", "w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["priority", "match", "value", "consumer"])
        for a in range(0, ACCOUNTS, 4):  # every fourth account belongs to one team whatever its tags
            out.writerow([10, "SubAccountId", f"{100000000000 + a}", team(a)])
        for t in range(TEAMS - 5):  # the last five teams' tags are unknown: those rows go to the pool
            out.writerow([20, "tag:team", f"team-{t}", team(t)])
        out.writerow([30, "ResourceId", "arn:aws:s3:::shared-data-", team(1)])
        out.writerow([40, "RegionId", "ap-southeast-2", team(2)])
    return folder


def _u(seed: int, salt: int) -> pl.Expr:
    """A uniform number in [0, 1) per row, from a seeded hash of the row index."""
    return (pl.col("i").hash(seed * 1_000 + salt) % 1_000_003).cast(pl.Float64) / 1_000_003


def _pick(values: list[str], u: pl.Expr, skew: float = 1.0) -> pl.Expr:
    """One of `values` per row; `skew` > 1 favours the first ones (a power of the uniform)."""
    index = (u.pow(skew) * len(values)).floor().cast(pl.UInt32).clip(0, len(values) - 1)
    return pl.lit(pl.Series(values)).gather(index)


def chunk(start: int, rows: int, seed: int, period: str) -> pl.DataFrame:
    """Rows `start`..`start + rows` of the bill (independent of the chunk size)."""
    year, month = map(int, period.split("-"))
    days = 28 if month == 2 else 30 if month in (4, 6, 9, 11) else 31
    names = [s for s, _ in SERVICES]
    categories = dict(SERVICES)
    base = pl.DataFrame({"i": pl.int_range(start, start + rows, eager=True)})
    frame = (
        base.with_columns(
            day=(_u(seed, 1) * days).floor().cast(pl.Int32) + 1,
            hour=(_u(seed, 2) * 24).floor().cast(pl.Int32),
            service_n=(_u(seed, 3).pow(2.0) * len(names)).floor().cast(pl.Int64).clip(0, len(names) - 1),
            account=(_u(seed, 4).pow(1.6) * ACCOUNTS).floor().cast(pl.Int64),
            team_n=(_u(seed, 5).pow(2.2) * TEAMS).floor().cast(pl.Int64),
            tag_u=_u(seed, 6),
            kind_u=_u(seed, 7),
            cost=(_u(seed, 8).pow(3) * 40 * 1_000_000).floor().cast(pl.Int64) + 1,  # micro-dollars, most rows cheap
            quantity=(_u(seed, 9) * 1000).floor().cast(pl.Int64) + 1,
            sku_n=(_u(seed, 10).pow(1.5) * (SKUS // len(names))).floor().cast(pl.Int64),
            resource=(_u(seed, 11).pow(1.3) * 200_000).floor().cast(pl.Int64),
            region=_pick(REGIONS, _u(seed, 12), 1.8),
        )
        .with_columns(
            service=pl.lit(pl.Series(names)).gather(pl.col("service_n")),
            sku=pl.col("service_n") * (SKUS // len(names)) + pl.col("sku_n"),  # each service its own SKUs
        )
        .with_columns(category=pl.col("service").replace_strict(categories))
    )
    start_text = pl.format(
        f"{year:04d}-{month:02d}-{{}}T{{}}:00:00Z",
        pl.col("day").cast(pl.String).str.zfill(2),
        pl.col("hour").cast(pl.String).str.zfill(2),
    )
    end_text = pl.format(
        f"{year:04d}-{month:02d}-{{}}T{{}}:59:59Z",
        pl.col("day").cast(pl.String).str.zfill(2),
        pl.col("hour").cast(pl.String).str.zfill(2),
    )
    money = pl.col("cost")
    # kinds: most Usage; compute rows under a commitment; unused commitment; credit; refund; tax; purchase
    covered = (pl.col("category") == "Compute") & (pl.col("kind_u") < 0.12)
    unused = pl.col("i") % 250_000 == 7
    credit = (pl.col("kind_u") >= 0.995) & (pl.col("kind_u") < 0.997)
    refund = (pl.col("kind_u") >= 0.997) & (pl.col("kind_u") < 0.998)
    tax = pl.col("kind_u") >= 0.998
    purchase = pl.col("i").is_in([3, 5_000_003])

    def dollars(micro: pl.Expr) -> pl.Expr:
        sign = pl.when(micro < 0).then(pl.lit("-")).otherwise(pl.lit(""))
        whole = (micro.abs() // 1_000_000).cast(pl.String)
        part = (micro.abs() % 1_000_000).cast(pl.String).str.zfill(6)
        return sign + whole + "." + part

    billed = (
        pl.when(purchase)
        .then(pl.lit(250_000_000_000))
        .when(covered | unused)
        .then(0)
        .when(credit | refund)
        .then(-money)
        .otherwise(money)
    )
    effective = (
        pl.when(purchase)
        .then(0)
        .when(covered)
        .then(money * 7 // 10)
        .when(unused)
        .then(money * 50)
        .when(credit | refund)
        .then(-money)
        .otherwise(money)
    )
    tags = (
        pl.when(pl.col("tag_u") < 0.08)
        .then(pl.lit(""))
        .when(pl.col("tag_u") < 0.12)
        .then(pl.format('{{"team":"team-{}","env":"dev"}}', pl.lit(TEAMS - 1) - (pl.col("team_n") % 5)))
        .otherwise(pl.format('{{"team":"team-{}","env":"prod","app":"app-{}"}}', pl.col("team_n"), pl.col("sku") % 37))
    )
    return frame.select(
        pl.lit("999900000001").alias("BillingAccountId"),
        pl.lit("USD").alias("BillingCurrency"),
        dollars(billed).alias("BilledCost"),
        dollars(effective).alias("EffectiveCost"),
        dollars(pl.when(purchase).then(billed).when(credit | refund).then(-money).otherwise(money * 13 // 10)).alias(
            "ListCost"
        ),
        pl.when(purchase)
        .then(pl.lit("Purchase"))
        .when(credit)
        .then(pl.lit("Credit"))
        .when(tax)
        .then(pl.lit("Tax"))
        .otherwise(pl.lit("Usage"))
        .alias("ChargeCategory"),
        pl.when(refund).then(pl.lit("Correction")).otherwise(pl.lit("")).alias("ChargeClass"),
        start_text.alias("ChargePeriodStart"),
        end_text.alias("ChargePeriodEnd"),
        pl.when(covered | unused | purchase)
        .then(pl.lit("arn:aws:ec2:us-east-1:999900000001:reserved-instances/ri-1"))
        .otherwise(pl.lit(""))
        .alias("CommitmentDiscountId"),
        pl.when(covered)
        .then(pl.lit("Used"))
        .when(unused)
        .then(pl.lit("Unused"))
        .otherwise(pl.lit(""))
        .alias("CommitmentDiscountStatus"),
        pl.col("quantity").cast(pl.String).alias("ConsumedQuantity"),
        pl.col("quantity").cast(pl.String).alias("PricingQuantity"),
        pl.format("INV-{}-{}", pl.lit(period), pl.col("account") % 2).alias("InvoiceId"),
        pl.col("region").alias("RegionId"),
        pl.when(pl.col("resource") % 50 == 0)
        .then(pl.format("arn:aws:s3:::shared-data-{}", pl.col("resource")))
        .otherwise(
            pl.format("arn:aws:ec2:{}:{}:instance/i-{}", pl.col("region"), pl.col("account"), pl.col("resource"))
        )
        .alias("ResourceId"),
        pl.col("category").alias("ServiceCategory"),
        pl.col("service").alias("ServiceName"),
        pl.format("SKU{}", pl.col("sku")).alias("SkuId"),
        (pl.col("account") + 100000000000).cast(pl.String).alias("SubAccountId"),
        pl.format("account-{}", pl.col("account")).alias("SubAccountName"),
        tags.alias("Tags"),
    )


def generate(path: Path, rows: int, seed: int = 1, period: str = "2026-03") -> Path:
    """Write a bill of `rows` rows to `path` (.csv, .csv.gz or .parquet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        frames = [chunk(s, min(CHUNK, rows - s), seed, period).lazy() for s in range(0, rows, CHUNK)]
        pl.concat(frames).sink_parquet(path)
        return path
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as handle:  # type: ignore[operator]
        for number, start in enumerate(range(0, rows, CHUNK)):
            chunk(start, min(CHUNK, rows - start), seed, period).write_csv(handle, include_header=number == 0)
    return path


def measure(folder: Path, bill: Path, period: str, url: str | None) -> dict[str, float]:
    """Load the book and import the bill in a child process: wall, CPU seconds, peak RSS."""
    url = url or f"sqlite:///{folder / 'focus.db'}"
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).unlink(missing_ok=True)
    code = (
        "import sys, time, resource; from pathlib import Path; from chargeback import api\n"
        "api.load(sys.argv[1], Path(sys.argv[2]))\n"
        "started = time.perf_counter(); cpu = time.process_time()\n"
        "r = api.import_cloud_bill(sys.argv[1], Path(sys.argv[3]), sys.argv[4])\n"
        "print(time.perf_counter() - started, time.process_time() - cpu, r.rows, r.lines)\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-c", code, url, str(folder / "book"), str(bill), period],
        check=True,
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, cpu, rows, lines = done.stdout.split()
    return {
        "rows": int(rows),
        "lines": int(lines),
        "import_wall_s": round(float(wall), 1),
        "import_cpu_s": round(float(cpu), 1),  # the import's own process time (Polars' threads included)
        "process_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "peak_rss_mb": round(after.ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--period", default="2026-03")
    parser.add_argument("--format", choices=["csv", "gz", "parquet"], default="csv")
    parser.add_argument("--measure", action="store_true")
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    write_book(args.dir / "book")
    suffix = {"csv": ".csv", "gz": ".csv.gz", "parquet": ".parquet"}[args.format]
    bill = args.dir / f"focus-{args.period}{suffix}"
    started = time.perf_counter()
    generate(bill, args.rows, args.seed, args.period)
    print(f"{bill}: {args.rows} rows, {bill.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - started:.1f} s")
    if args.measure:
        print(json.dumps(measure(args.dir, bill, args.period, args.db)))


if __name__ == "__main__":
    main()
