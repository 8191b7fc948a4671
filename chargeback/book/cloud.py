"""A book's cloud provider: book.toml's `[cloud]` table and `cloud_map.csv`.

`[cloud]` names the unit that recharges the cloud bill (`provider`), the service its
charges are posted under (`service`, one of the provider's), the cost basis
(`EffectiveCost` by default, so commitments are amortized; `BilledCost` or `ListCost`),
the quantity column (`ConsumedQuantity` or `PricingQuantity`), a markup percent per
FOCUS `ServiceCategory` (`[cloud.markup]`) and the pool that takes what no rule maps
(`pool`, spread by each consumer's share of the cloud charges; `order` places it among
the pools of a step-down allocation, last by default).

`cloud_map.csv` holds ordered rules `priority,match,value,consumer`: `match` is a FOCUS
column (`SubAccountId`, `SubAccountName`, `ResourceId` (a prefix), `ServiceName`,
`ServiceCategory`, `RegionId`) or `tag:KEY`; the rule with the lowest priority (then the
first in the file) that matches a row gives its consumer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, StrictInt, ValidationError, field_validator
from sqlalchemy import Connection, delete, insert

from chargeback.core.errors import Problem
from chargeback.core.fields import Code, FileRecord, Text, problems_of
from chargeback.ingest.tabular import Columns, read_rows
from chargeback.store.schema import Allocation, CloudRule, CloudSettings

#: FOCUS columns a rule can match exactly; `ResourceId` matches a prefix.
EXACT_MATCHES = ("SubAccountId", "SubAccountName", "ServiceName", "ServiceCategory", "RegionId")
PREFIX_MATCHES = ("ResourceId",)
TAG_PREFIX = "tag:"
BASES = ("EffectiveCost", "BilledCost", "ListCost")
CLOUD_MAP = Columns(("priority", "match", "value", "consumer"))
MAP_FILE = "cloud_map.csv"


class CloudConfig(FileRecord):
    """book.toml's `[cloud]` table."""

    provider: Code
    service: Code
    pool: Code
    basis: Literal["EffectiveCost", "BilledCost", "ListCost"] = "EffectiveCost"
    quantity: Literal["ConsumedQuantity", "PricingQuantity"] = "ConsumedQuantity"
    markup: dict[str, Decimal] = Field(default_factory=dict)
    order: StrictInt | None = None

    @field_validator("markup", mode="before")
    @classmethod
    def _markup(cls, value: object) -> object:
        if not isinstance(value, dict):
            raise ValueError("write [cloud.markup] as ServiceCategory = percent, e.g. Compute = 5")
        out = {}
        for key, percent in value.items():
            if isinstance(percent, bool) or not isinstance(percent, (int, float, str)):
                raise ValueError(f"markup of {key!r}: write a percent, e.g. {key} = 5")
            number = Decimal(str(percent))
            if not number.is_finite() or number <= -100 or number > 1000 or -number.as_tuple().exponent > 4:  # type: ignore[operator]
                raise ValueError(f"markup of {key!r}: {percent} is not a percent between -100 and 1000 (4 decimals)")
            out[key] = number
        return out


class RuleRow(FileRecord):
    priority: int = Field(ge=0, le=1_000_000)
    match: Text
    value: Text
    consumer: Code

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: object) -> object:
        text = str(value).strip()
        if not text.isdigit():
            raise ValueError(f"{text!r} is not a priority: write a whole number (the lowest wins)")
        return int(text)

    @field_validator("match")
    @classmethod
    def _match(cls, value: str) -> str:
        if value in EXACT_MATCHES or value in PREFIX_MATCHES:
            return value
        key = value[len(TAG_PREFIX) :]
        if value.startswith(TAG_PREFIX) and key.strip() and not set("'\"\\") & set(key):
            return value
        raise ValueError(
            f"{value!r} is not a match: write one of {', '.join(EXACT_MATCHES + PREFIX_MATCHES)} "
            "or tag:KEY (a key without quotes or backslashes)"
        )


@dataclass(frozen=True)
class Rule:
    """A rule of cloud_map.csv, with its line."""

    priority: int
    line: int
    match: str
    value: str
    consumer: str


def read_rules(folder: Path, config: CloudConfig | None, problems: list[Problem]) -> list[Rule]:
    """cloud_map.csv's rules in the order they apply (priority, then line)."""
    path = folder / MAP_FILE
    if not path.exists():
        if config is not None:
            problems.append(
                Problem(MAP_FILE, 0, "-", f"file is missing from the book folder {folder}: book.toml has [cloud]")
            )
        return []
    if config is None:
        problems.append(Problem(MAP_FILE, 0, "-", "book.toml has no [cloud] table: add one, or remove this file"))
        return []
    rules = []
    for line, values in read_rows(path, CLOUD_MAP, problems, MAP_FILE):
        try:
            row = RuleRow.model_validate(values)
        except ValidationError as exc:
            problems.extend(problems_of(exc, MAP_FILE, line))
            continue
        rules.append(Rule(row.priority, line, row.match, row.value, row.consumer))
    return sorted(rules, key=lambda r: (r.priority, r.line))


def check_cloud(
    config: CloudConfig | None,
    rules: list[Rule],
    unit_kind: Mapping[str, str],
    service_provider: Mapping[str, str],
    pools: set[str],
    problems: list[Problem],
) -> None:
    """The `[cloud]` table and the rules against the book: units, service, pool."""
    if config is None:
        return
    if unit_kind.get(config.provider) != "internal":
        problems.append(
            Problem("book.toml", 0, "cloud.provider", f"{config.provider!r} is not an internal unit in units.csv")
        )
    owner = service_provider.get(config.service)
    if owner is None:
        problems.append(
            Problem("book.toml", 0, "cloud.service", f"{config.service!r} is not a service in services.csv")
        )
    elif owner != config.provider:
        problems.append(
            Problem(
                "book.toml",
                0,
                "cloud.service",
                f"{config.service} is a service of {owner}, not of the cloud provider {config.provider}",
            )
        )
    if config.pool in pools:
        problems.append(
            Problem("book.toml", 0, "cloud.pool", f"{config.pool!r} is also a pool in allocations.csv: name another")
        )
    for rule in rules:
        if rule.consumer not in unit_kind:
            problems.append(
                Problem(MAP_FILE, rule.line, "consumer", f"{rule.consumer!r} is not a unit code in units.csv")
            )
        elif rule.consumer == config.provider:
            problems.append(
                Problem(
                    MAP_FILE,
                    rule.line,
                    "consumer",
                    f"{rule.consumer} is the cloud provider: a unit cannot charge itself",
                )
            )


def store_cloud(conn: Connection, config: CloudConfig | None, rules: list[Rule], orders: list[int]) -> None:
    """The cloud settings, rules and pool, replacing what was loaded before (the pool's
    allocation row is made here; `load` has just removed every allocation)."""
    conn.execute(delete(CloudRule))
    conn.execute(delete(CloudSettings))
    if config is None:
        return
    markup = json.dumps({k: str(v) for k, v in sorted(config.markup.items())})
    conn.execute(
        insert(CloudSettings).values(
            id=1,
            provider=config.provider,
            service=config.service,
            basis=config.basis,
            pool=config.pool,
            quantity=config.quantity,
            markup=markup,
        )
    )
    if rules:
        conn.execute(
            insert(CloudRule),
            [
                {"priority": r.priority, "line": r.line, "match": r.match, "value": r.value, "consumer": r.consumer}
                for r in rules
            ],
        )
    order = config.order if config.order is not None else max(orders, default=0) + 1
    conn.execute(
        insert(Allocation).values(
            pool=config.pool,
            provider=config.provider,
            service=config.service,
            driver=f"amount:{config.service}",
            targets="*",
            step_order=order,
        )
    )
