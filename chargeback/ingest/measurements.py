"""Importing service-level measurements (`chargeback sla import FILE --period YYYY-MM`).

A file (CSV or XLSX, read by `tabular.read_rows`) of `service,metric,value[,consumer]
[,note]`: a value for all the service's consumers, or for one (which wins over the value
for all). Every line is checked against the book (a service and metric with an SLA in
force in the period, a known consumer, a percentage between 0 and 100) and against the
others (one value per service, metric and consumer); any problem refuses the file whole.

Importing the same values again changes nothing (they are counted as unchanged); a
different value for a (service, metric, consumer) already measured in the open period
replaces it, as a corrected measurement, and the next close posts the difference.
A measurement file has a line per service and metric, not per usage line: it is checked
row by row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import Connection, insert, select, update

from chargeback.close.periods import lock_open_period
from chargeback.core.errors import InputRefused, Problem, Refused
from chargeback.core.fields import Code, FileRecord, MeasuredValue, OptionalCode, OptionalText, problems_of
from chargeback.core.money import to_micro
from chargeback.ingest.tabular import Columns, FileImport, read_rows
from chargeback.ledger.service_levels import levels_in_force
from chargeback.store.schema import Service, SlaMeasurement, Unit

MEASUREMENTS = Columns(("service", "metric", "value"), ("consumer", "note"))


class MeasurementRow(FileRecord):
    service: Code
    metric: Code
    value: MeasuredValue
    consumer: OptionalCode = None
    note: OptionalText = None


@dataclass
class MeasurementResult(FileImport):
    """What `sla import` did, for the command's summary."""

    corrected: int = 0
    unchanged: int = 0

    def outcome(self) -> str:
        """The audit log's line for this import."""
        return (
            f"{self.lines_read} measurements read, {self.imported} imported, "
            f"{self.corrected} corrected, {self.unchanged} unchanged"
        )


def import_measurements(conn: Connection, path: Path, period: str, now: dt.datetime) -> MeasurementResult:
    """Import the measurements at `path` into the open `period`; refuses the file whole
    on any problem."""
    name = path.name
    if not path.is_file():
        raise Refused(f"{path}: no such file")
    lock_open_period(conn, period, create=True)
    problems: list[Problem] = []
    rows: list[tuple[int, MeasurementRow]] = []
    for line, values in read_rows(path, MEASUREMENTS, problems, name):
        try:
            rows.append((line, MeasurementRow.model_validate(values)))
        except ValidationError as exc:
            problems.extend(problems_of(exc, name, line))
    services = set(conn.execute(select(Service.code)).scalars())
    units = set(conn.execute(select(Unit.code)).scalars())
    slas = {(service, metric): level for (service, metric, _), level in levels_in_force(conn, period).items()}
    seen: dict[tuple[str, str, str], int] = {}
    for line, row in rows:
        if row.service not in services:
            problems.append(Problem(name, line, "service", f"{row.service!r} is not a service code in services.csv"))
            continue
        level = slas.get((row.service, row.metric))
        if level is None:
            problems.append(
                Problem(
                    name,
                    line,
                    "metric",
                    f"{row.service} has no SLA for {row.metric!r} in force in {period}: "
                    "check slas.csv or the metric's name",
                )
            )
        elif level.unit == "percent" and not 0 <= row.value <= 100:
            problems.append(Problem(name, line, "value", f"{row.value} is not a percentage between 0 and 100"))
        elif row.value < 0:
            problems.append(Problem(name, line, "value", f"{row.value} is negative: a measurement is 0 or more"))
        if row.consumer is not None and row.consumer not in units:
            problems.append(Problem(name, line, "consumer", f"{row.consumer!r} is not a unit code in units.csv"))
        key = (row.service, row.metric, row.consumer or "")
        if key in seen:
            whom = row.consumer or "all consumers"
            problems.append(
                Problem(
                    name,
                    line,
                    "value",
                    f"{row.service} {row.metric} for {whom} is already measured on line {seen[key]}",
                )
            )
        else:
            seen[key] = line
    if problems:
        raise InputRefused(sorted(set(problems)))
    stored = {
        (m.service, m.metric, m.consumer): (m.value_micro, m.note)
        for m in conn.execute(select(SlaMeasurement.__table__).where(SlaMeasurement.period == period))
    }
    result = MeasurementResult(name, period, lines_read=len(rows))
    table = SlaMeasurement.__table__
    fresh = []
    for _, row in rows:
        key = (row.service, row.metric, row.consumer or "")
        value = to_micro(row.value)
        if key not in stored:
            fresh.append(
                {
                    "period": period,
                    "service": row.service,
                    "metric": row.metric,
                    "consumer": key[2],
                    "value_micro": value,
                    "note": row.note,
                    "imported_at": now,
                }
            )
        elif stored[key] == (value, row.note):
            result.unchanged += 1
        else:
            conn.execute(
                update(table)
                .where(
                    table.c.period == period,
                    table.c.service == key[0],
                    table.c.metric == key[1],
                    table.c.consumer == key[2],
                )
                .values(value_micro=value, note=row.note, imported_at=now)
            )
            result.corrected += 1
    if fresh:
        conn.execute(insert(table), fresh)
    result.imported = len(fresh)
    return result
