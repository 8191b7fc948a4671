"""The `chargeback` command: parse arguments, call one engine function, print.

Exit codes: 0 done; 1 refused (bad data, closed period, unbalanced books), with the
reason on stderr and nothing changed; 2 bad usage.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Protocol

import click
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from chargeback import api
from chargeback.api import (
    ImportResult,
    InputRefused,
    MeasurementResult,
    Refused,
    check_period,
    database_url,
    percent,
    redact,
    without_secrets,
)


class PeriodType(click.ParamType):
    """A period argument: `YYYY-MM` within the calendar chargeback keeps. Anything else is
    bad usage (exit 2), as every malformed argument is."""

    name = "YYYY-MM"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return check_period(str(value))
        except Refused as exc:
            self.fail(str(exc), param, ctx)


PERIOD = PeriodType()


class Context:
    def __init__(self, db: str | None, debug: bool, quiet: bool) -> None:
        self.url = database_url(db)
        self.debug = debug
        self.quiet = quiet


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


class ChargebackGroup(click.Group):
    """Turns refusals and database errors into one clear line and exit code 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except InputRefused as exc:
            for line in exc.shown():
                click.echo(line, err=True)
            _fail(str(exc))
        except Refused as exc:
            _fail(f"refused: {exc}")
        except IntegrityError as exc:
            if _debug(ctx):
                traceback.print_exc()
            _fail(
                "refused: another command changed the same data at the same time; "
                f"nothing was changed, run the command again ({type(exc.orig).__name__})"
            )
        except SQLAlchemyError as exc:
            if _debug(ctx):
                traceback.print_exc()
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            url = ctx.obj.url if isinstance(ctx.obj, Context) else ""
            reason = without_secrets(detail[0], url) if detail else type(exc).__name__
            if "readonly" in reason:
                _fail(
                    f"refused: the database ({redact(url)}) is read-only: {reason}; reading commands "
                    "(verify, reconcile, audit, export) work, this one needs write access to the "
                    "database file and its folder"
                )
            _fail(
                f"database error ({redact(url)}): {reason}; "
                "the command did not complete: check that the database server is running and "
                "reachable, then run the command again"
            )
        except BrokenPipeError:  # the reader went away (`chargeback audit | head -1`): a normal end
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 a bug: one line for the user, the traceback with --debug
            if _debug(ctx):
                traceback.print_exc()
            url = ctx.obj.url if isinstance(ctx.obj, Context) else ""
            _fail(
                f"error: {type(exc).__name__}: {without_secrets(str(exc), url)} "
                "(run with --debug for details; nothing was changed)"
            )
        return None


def _debug(ctx: click.Context) -> bool:
    return isinstance(ctx.obj, Context) and ctx.obj.debug


@click.group(cls=ChargebackGroup)
@click.option("--db", "db", metavar="URL", help="Database URL (default: $CHARGEBACK_DB or sqlite:///chargeback.db).")
@click.option("--debug", is_flag=True, help="Show a traceback when something unexpected fails.")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors.")
@click.version_option(package_name="chargeback")
@click.pass_context
def main(ctx: click.Context, db: str | None, debug: bool, quiet: bool) -> None:
    """Chargeback and internal billing: load a book, import usage, close the month."""
    ctx.obj = Context(db, debug, quiet)


#: `--out DIR` of the commands that write a period's files.
out_option = click.option(
    "--out", "out_dir", default="out", show_default=True, type=click.Path(file_okay=False, path_type=Path)
)
#: `--json` of the commands whose result the contract gives as a JSON object.
json_option = click.option("--json", "as_json", is_flag=True, help="Print the contract's JSON object.")


def _print_json(value: object) -> None:
    """What a command prints with `--json`, indented by one."""
    click.echo(json.dumps(value, indent=1))


class Printed(Protocol):
    """A command's result that prints itself, in lines of text."""

    def lines(self) -> list[str]: ...


class Shown(Printed, Protocol):
    """A command's result that prints itself as the contract's JSON too."""

    def as_json(self) -> Any: ...


def _show(found: Shown, as_json: bool) -> None:
    """`found` as its JSON (`--json`) or its lines."""
    if as_json:
        _print_json(found.as_json())
    else:
        for line in found.lines():
            click.echo(line)


def _written(ctx: Context, made: tuple[Printed, Path]) -> None:
    """A workbook a command wrote: what it holds, then where it is."""
    found, path = made
    _say(ctx, *found.lines(), f"written to {path}")


def _say(ctx: Context, *lines: str) -> None:
    """Print `lines`, one a line, unless --quiet."""
    if not ctx.quiet:
        for line in lines:
            click.echo(line)


@main.command()
@click.pass_obj
def init(ctx: Context) -> None:
    """Create or upgrade the database schema (safe to repeat)."""
    api.init(ctx.url)
    _say(ctx, f"database ready: {redact(ctx.url)}")


@main.command()
@click.argument("book", type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def load(ctx: Context, book: Path) -> None:
    """Load or update the reference data of BOOK (a folder)."""
    result = api.load(ctx.url, book)
    stored = result.book
    pools = (
        f", {len(stored.allocations)} allocation pools ({len(stored.costs)} costs, {len(stored.drivers)} driver values)"
        if stored.allocations
        else ""
    )
    _say(
        ctx,
        f"loaded {result.name}: {result.units_added + result.units_updated} units "
        f"({result.units_added} new), {len(stored.services)} services, {len(stored.rates)} rates, "
        f"{len(stored.recurring)} recurring fees{pools}"
        + (f", {len(stored.budgets)} budgets" if stored.budgets else ""),
    )


def _import_summary(result: ImportResult) -> str:
    lines = [
        f"{result.file} -> {result.period}: {result.lines_read} lines read, "
        f"{result.imported} imported, {result.duplicates} duplicates skipped, "
        f"{result.late} late, {result.credits} credits"
    ]
    for provider, amount in result.by_provider.items():
        lines.append(f"  {provider:<20} {amount:>16} {result.currency}")
    return "\n".join(lines)


@main.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--period", required=True, type=PERIOD, help="The open period to import into.")
@click.pass_obj
def import_(ctx: Context, file: Path, period: str) -> None:
    """Import a usage FILE (CSV or XLSX) into an open period."""
    _say(ctx, _import_summary(api.import_file(ctx.url, file, period, progress=not ctx.quiet)))


fiscal_year_option = click.option(
    "--fiscal-year",
    "fiscal_year",
    required=True,
    type=click.IntRange(1000, 9999),
    metavar="YYYY",
    help="The fiscal year, named by the year it ends in.",
)


@main.group()
def sla() -> None:
    """Service levels: import measurements, report attainment and credits."""


@sla.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--period", required=True, type=PERIOD, help="The open period the values were measured in.")
@click.pass_obj
def sla_import(ctx: Context, file: Path, period: str) -> None:
    """Import service-level measurements (CSV or XLSX: service,metric,value[,consumer][,note])."""
    _say(ctx, _sla_import_summary(api.sla_import(ctx.url, file, period)))


def _sla_import_summary(result: MeasurementResult) -> str:
    return f"{result.file} -> {result.period}: {result.outcome()}"


@sla.command(name="report")
@fiscal_year_option
@out_option
@click.pass_obj
def sla_report(ctx: Context, fiscal_year: int, out_dir: Path) -> None:
    """Service levels of a fiscal year: attainment per service and month, and the credits given."""
    _written(ctx, api.sla_report(ctx.url, fiscal_year, out_dir))


@main.command(name="import-cloud")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--period", required=True, type=PERIOD, help="The open period the bill is of.")
@click.pass_obj
def import_cloud(ctx: Context, file: Path, period: str) -> None:
    """Import a cloud bill FILE (a FOCUS export: CSV, gzip CSV or Parquet) into an open period."""
    result = api.import_cloud_bill(ctx.url, file, period)
    if result.already_imported:
        _say(ctx, f"{result.file} -> {period}: imported before ({result.rows} rows): nothing changed")
        return
    lines = [
        f"{result.file} -> {period}: {result.rows} rows read, {result.lines} usage lines, "
        f"bill {result.billed} {result.currency} (BilledCost), charged at {result.basis}"
    ]
    for bucket, (rows, amount) in sorted(result.buckets.items()):
        lines.append(f"  {bucket:<10} {rows:>10} rows {amount:>16} {result.currency}")
    _say(ctx, "\n".join(lines))


@main.command()
@click.argument("period", type=PERIOD)
@click.option("--service", default=None, help="Required unless --against names the charge.")
@click.option("--consumer", default=None, help="Required unless --against names the charge.")
@click.option("--amount", required=True, help="Positive for a charge, negative for a credit.")
@click.option("--reason", required=True, help="Why (internal: kept in the database and the audit log).")
@click.option("--memo", default=None, help='What documents show (default "Adjustment").')
@click.option("--reference", default=None)
@click.option(
    "--against",
    default=None,
    metavar="SERVICE:REFERENCE",
    help="Link to the posted charge this corrects (it may be in a closed period).",
)
@click.pass_obj
def adjust(
    ctx: Context,
    period: str,
    service: str | None,
    consumer: str | None,
    amount: str,
    reason: str,
    memo: str | None,
    reference: str | None,
    against: str | None,
) -> None:
    """Record a manual charge or credit in an open period."""
    if against is None and (service is None or consumer is None):
        raise click.UsageError("--service and --consumer are required unless --against is given")
    result = api.adjust(ctx.url, period, service, consumer, amount, reason, reference, against, memo)
    link = f" against {result.against}" if result.against else ""
    _say(
        ctx,
        f"adjustment {result.id} recorded in {result.period}: {result.service} -> "
        f"{result.consumer} {result.amount} {result.currency}{link}",
    )


@main.command()
@click.argument("kind", type=click.Choice(["import", "adjustment"]))
@click.argument("target", metavar="ID", type=click.IntRange(min=1))
@click.option("--reason", required=True, help="Why (kept in the void and the audit log).")
@click.pass_obj
def void(ctx: Context, kind: str, target: int, reason: str) -> None:
    """Void an import or an adjustment that no close has posted yet."""
    result = api.void(ctx.url, kind, target, reason)
    what = (
        f"{result.lines} usage lines of {result.label} left out"
        if kind == "import"
        else f"{result.label} {result.amount} {result.currency} left out"
    )
    _say(ctx, f"void {result.id}: {kind} {target} in {result.period} voided: {what}")


@main.command()
@click.argument("period", type=PERIOD)
@out_option
@click.option("--no-documents", is_flag=True, help="Close without writing documents (write them later with `report`).")
@click.pass_obj
def close(ctx: Context, period: str, out_dir: Path, no_documents: bool) -> None:
    """Price, post, check net zero, lock the period and write its documents."""
    result = api.close(ctx.url, period, out_dir, documents=not no_documents, progress=not ctx.quiet)
    where = "no documents written" if no_documents else f"documents in {out_dir / period}"
    _say(ctx, f"closed {period}: {result.posted} entries posted; {result.reconciliation.totals_text()}; {where}")
    if result.review is not None:
        _review(ctx, result.review, result.budget_warnings)


def _review(ctx: Context, review: api.Review, warnings: list[api.BudgetStatus]) -> None:
    """The variance review and the budget warnings, as preview and close print them."""
    _say(ctx, *api.report_lines(review))
    for status in warnings:
        _say(ctx, api.warning_text(status, review.digits, review.currency))


@main.command()
@click.argument("period", type=PERIOD)
@out_option
@click.pass_obj
def preview(ctx: Context, period: str, out_dir: Path) -> None:
    """Everything close does, kept nowhere: draft documents and the variance review."""
    result = api.preview(ctx.url, period, out_dir)
    _say(
        ctx,
        f"preview of {period}: {result.posted} charges priced; {result.reconciliation.totals_text()}; "
        f"nothing was posted; draft documents in {result.folder}",
    )
    _review(ctx, result.review, result.budget_warnings)


@main.command(name="budgets")
@fiscal_year_option
@out_option
@click.pass_obj
def budgets_(ctx: Context, fiscal_year: int, out_dir: Path) -> None:
    """Each unit's budget, spend to date, remaining, percent used and year-end projection."""
    _written(ctx, api.budgets(ctx.url, fiscal_year, out_dir))


@main.command()
@click.argument("period", type=PERIOD)
@json_option
@click.pass_obj
def reconcile(ctx: Context, period: str, as_json: bool) -> None:
    """The net-zero reconciliation; exit 0 when balanced, 1 when not."""
    rec = api.reconcile(ctx.url, period)
    _show(rec, as_json)
    if not rec.balanced:
        sys.exit(1)


@main.command()
@click.argument("period", type=PERIOD, required=False)
@out_option
@json_option
@click.pass_obj
def status(ctx: Context, period: str | None, out_dir: Path, as_json: bool) -> None:
    """Every period (or PERIOD): state, what waits, the last close and seal, documents."""
    found = api.status(ctx.url, period, out_dir)
    if as_json:
        _print_json({"periods": [s.as_json() for s in found]})
        return
    if not found:
        click.echo("no periods yet: import usage or adjust to open one")
    for state in found:
        for line in state.lines():
            click.echo(line)


@main.command()
@click.argument("period", type=PERIOD)
@json_option
@click.pass_obj
def imports(ctx: Context, period: str, as_json: bool) -> None:
    """Each import of PERIOD: id, file, sha256, lines, amount, when, who."""
    _show(api.imports(ctx.url, period), as_json)


@main.command()
@click.option("--unit", required=True, metavar="CODE", help="The unit charged (the consumer).")
@click.option("--period", type=PERIOD, default=None, help="One period.")
@click.option(
    "--fiscal-year", "fiscal_year", type=click.IntRange(1000, 9999), metavar="YYYY", default=None, help="A fiscal year."
)
@json_option
@click.option("--xlsx", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write them to a workbook.")
@click.pass_obj
def charges(
    ctx: Context, unit: str, period: str | None, fiscal_year: int | None, as_json: bool, xlsx: Path | None
) -> None:
    """One unit's posted charges: service, quantity, rate, amount, period."""
    if (period is None) == (fiscal_year is None):
        raise click.UsageError("give one of --period YYYY-MM and --fiscal-year YYYY")
    if as_json and xlsx is not None:
        raise click.UsageError("give --json or --xlsx, not both")
    result = api.charges(ctx.url, unit, period, fiscal_year, xlsx)
    if as_json:
        _print_json(result.as_json())
        return
    if xlsx is not None:
        _say(
            ctx,
            f"{len(result.charges)} charges to {unit}, {result.money(result.total_minor)} {result.currency}: {xlsx}",
        )
        return
    for c in result.charges:
        rate = "" if c.rate is None else f"@ {c.rate}"
        click.echo(
            f"{c.period}  {c.entry:>7}  {c.service:<10} {c.reference or '':<14} {c.quantity:>10} "
            f"{c.unit_of_measure:<8} {rate:<12} {result.money(c.amount_minor):>14}  {c.memo or ''}".rstrip()
        )
    click.echo(f"total {len(result.charges)} charges to {unit}: {result.money(result.total_minor)} {result.currency}")


@main.command()
@click.argument("period", type=PERIOD)
@out_option
@click.pass_obj
def report(ctx: Context, period: str, out_dir: Path) -> None:
    """Write a closed period's documents again."""
    folder = api.report(ctx.url, period, out_dir, progress=not ctx.quiet)
    _say(ctx, f"documents of {period} written to {folder}")


def _server(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        api.parse_server(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@main.command()
@click.argument("period", type=PERIOD)
@out_option
@click.option(
    "--smtp",
    default="localhost:25",
    show_default=True,
    envvar="CHARGEBACK_SMTP",
    metavar="HOST:PORT",
    callback=_server,
    help="The mail server (or $CHARGEBACK_SMTP).",
)
@click.option(
    "--from",
    "sender",
    default="chargeback@localhost",
    show_default=True,
    envvar="CHARGEBACK_FROM",
    metavar="ADDRESS",
    help="The sender's address (or $CHARGEBACK_FROM).",
)
@click.option("--dry-run", is_flag=True, help="Write the messages as .eml files instead of sending them.")
@click.pass_obj
def deliver(ctx: Context, period: str, out_dir: Path, smtp: str, sender: str, dry_run: bool) -> None:
    """Mail each unit its statement and invoice of a closed period (once)."""
    result = api.deliver(ctx.url, period, out_dir, smtp, sender, dry_run)
    if result.rewritten:
        _say(ctx, f"documents of {period} written again to {result.folder}")
    for sent in result.sent:
        _say(ctx, f"sent {sent.unit} to {sent.to}: {', '.join(path for path, _ in sent.files)}")
        if sent.refused:
            click.echo(f"warning: {sent.unit}: the mail server refused {sent.refused}", err=True)
    if result.sent_before:
        _say(ctx, f"sent before, not again: {', '.join(result.sent_before)}")
    for recipient in result.no_email:
        problem = (
            f"its email {recipient.email!r} is not an address" if recipient.email else "it has no email in units.csv"
        )
        click.echo(f"warning: {recipient.unit} not sent: {problem}", err=True)
    if result.outbox is not None:
        _say(ctx, f"dry run: {result.written} messages written to {result.outbox}; nothing sent or recorded")
    else:
        _say(
            ctx,
            f"delivered {period}: {len(result.sent)} sent, {len(result.sent_before)} sent before, "
            f"{len(result.no_email)} without an address, {len(result.failed)} refused by the server",
        )
    for failed in result.failed:
        click.echo(f"not sent: {failed.unit} to {failed.to}: {failed.reason}", err=True)
    if result.failed:
        _fail(
            f"refused: the mail server refused {len(result.failed)} messages; the others were sent; "
            "fix the addresses and run deliver again"
        )


@main.command()
@click.argument("period", type=PERIOD)
@click.option("--reason", required=True, help="Why the period is reopened (recorded).")
@click.pass_obj
def reopen(ctx: Context, period: str, reason: str) -> None:
    """Reopen a closed period; its posted entries stay."""
    api.reopen(ctx.url, period, reason)
    _say(ctx, f"reopened {period}: new activity will be posted at the next close")


@main.command()
@click.argument("period", type=PERIOD, required=False)
@click.option("--from", "first", type=PERIOD, default=None, help="First period of a multi-period export.")
@click.option("--through", type=PERIOD, default=None, help="Last period of a multi-period export.")
@click.option(
    "--fiscal-year", "fiscal_year", type=click.IntRange(1000, 9999), default=None, help="Export a whole fiscal year."
)
@click.option("--format", "fmt", required=True, type=click.Choice(["csv", "hledger", "beancount"]))
@click.option("--out", "out_file", default=None, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def export(
    ctx: Context,
    period: str | None,
    first: str | None,
    through: str | None,
    fiscal_year: int | None,
    fmt: str,
    out_file: Path | None,
) -> None:
    """The journal of a period (or of the closed periods --from --through, or of
    --fiscal-year) for a general ledger or a plain-text accounting tool."""
    ranges = (first is not None or through is not None) + (fiscal_year is not None) + (period is not None)
    if ranges != 1 or (first is None) != (through is None):
        raise click.UsageError("give one of: PERIOD, --from YYYY-MM --through YYYY-MM, --fiscal-year YYYY")
    text = api.export(ctx.url, period, fmt, out_file, first=first, through=through, fiscal_year=fiscal_year)
    if text is not None:
        click.echo(text, nl=False)


@main.command()
@click.option(
    "--seals",
    "seals_files",
    multiple=True,
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Seals kept outside the database: a list as `seals --json` prints it, or manifest.json "
    "files (repeat the option for several).",
)
@click.option(
    "--public-key",
    default=None,
    metavar="PEM",
    envvar="CHARGEBACK_SEAL_PUBLIC_KEY",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The seal key's public key: every seal checked must be signed by it (or $CHARGEBACK_SEAL_PUBLIC_KEY).",
)
@click.pass_obj
def verify(ctx: Context, seals_files: tuple[Path, ...], public_key: Path | None) -> None:
    """Check the journal: balanced entries, hash chain intact, closed periods untouched."""
    result = api.verify(ctx.url, list(seals_files) or None, public_key)
    if not result.ok:
        for problem in result.problems:
            click.echo(problem, err=True)
        _fail(f"verify failed: {result.problems[0]}")
    sealed = ""
    if result.seals_checked:
        signed = f", {result.signatures_checked} signatures valid" if result.signatures_checked else ""
        sealed = f", {_counted(result.seals_checked, 'seal')} still held by the journal{signed}"
    _say(
        ctx,
        f"journal verified: {result.entries} entries, hash chain intact, "
        f"{result.periods} closed periods match their totals, "
        f"{result.audit_records} audit records chained, "
        f"{result.period_events} closes and reopens chained{sealed}",
    )


@main.command(name="seals")
@click.option("--json", "as_json", is_flag=True, help="Print the seals as a JSON list (what `verify --seals` reads).")
@click.pass_obj
def seals_(ctx: Context, as_json: bool) -> None:
    """Every close's seal: the journal head after it, for auditors to keep."""
    found = api.seals(ctx.url)
    if as_json:
        _print_json([seal.as_json() for seal in found])
        return
    for seal in found:
        signed = (
            f"signed by key {seal.key[:16]}..."
            if seal.signature and seal.key
            else "signed"
            if seal.signature
            else "not signed"
        )
        click.echo(f"{seal.period}  closed {seal.as_json()['closed_at']}  entry {seal.entry}  {seal.hash}  {signed}")
    _say(ctx, f"{_counted(len(found), 'seal')}")


@main.command(name="audit")
@click.option("--period", default=None, type=PERIOD, help="Only the records of this period.")
@click.option("--json", "as_json", is_flag=True, help="Print the records as a JSON list.")
@click.pass_obj
def audit_(ctx: Context, period: str | None, as_json: bool) -> None:
    """The audit log: every command that wrote, who ran it, its input files and outcome."""
    records, (count, problems, last_hash) = api.audit_log(ctx.url, period)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in records], indent=1, ensure_ascii=False))
    else:
        for record in records:
            click.echo(record.line())
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        _fail(f"audit log damaged: {problems[0]}")
    if not as_json:
        _say(ctx, f"audit log: {len(records)} of {count} records shown, hash chain intact, head {last_hash}")


@main.command()
@fiscal_year_option
@click.option(
    "--out", "out_file", default="recovery.xlsx", show_default=True, type=click.Path(dir_okay=False, path_type=Path)
)
@click.pass_obj
def recovery(ctx: Context, fiscal_year: int, out_file: Path) -> None:
    """Cost recovery: does each provider's billing break even over the fiscal year?"""
    rec = api.recovery(ctx.url, fiscal_year, out_file)
    m = rec.money
    _say(
        ctx,
        f"cost recovery FY{rec.fiscal_year} ({rec.periods_of_year[0]} to {rec.periods_of_year[-1]}), {rec.currency}",
    )
    if not rec.providers:
        _say(ctx, "  no provider has costs or revenue in this fiscal year")
    for p in rec.providers:
        ratio = "" if p.ratio is None else percent(p.ratio)
        flag = f"  [{p.flag}]" if p.flag else ""
        _say(
            ctx,
            f"  {p.provider:<12} cost {m(p.cost) or '-':>14}  revenue {m(p.revenue):>14}  "
            f"surplus {m(p.surplus) or '-':>14}  recovery {ratio:>7}{flag}",
        )
        if p.sla_credits:
            _say(ctx, f"  {'':<12} SLA credits given {m(p.sla_credits)} (revenue is net of them)")
    for s in rec.services:
        if s.break_even_rate is not None:
            current = "-" if s.current_rate is None else f"{s.current_rate}"
            _say(
                ctx,
                f"  {s.service:<12} break-even rate {s.break_even_rate} per "
                f"{s.unit_of_measure}, current rate {current}, billed on average {s.average_rate}",
            )
    _say(ctx, f"written {out_file}")


def _run_summary(ctx: Context, result: api.RunResult) -> None:
    _say(ctx, f"loaded {result.load.name}")
    for imported in result.imports:
        _say(ctx, _import_summary(imported))
    for measured in result.measurements:
        _say(ctx, _sla_import_summary(measured))
    for period in result.skipped:
        _say(ctx, f"{period} is closed already: left as it is")
    for closed in result.closes:
        _say(ctx, f"closed {closed.period}: {closed.posted} entries posted; {closed.reconciliation.totals_text()}")
        if closed.review is not None:
            _say(ctx, *closed.review.service_levels)
    _say(ctx, f"documents in {result.out_dir}")
    lines = sum(i.lines_read for i in result.imports)
    times = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in result.seconds.items())
    _say(
        ctx,
        f"{_counted(lines, 'usage line')} read in {_counted(len(result.imports), 'file')}, "
        f"{_counted(len(result.closes), 'period')} closed; time: {times}",
    )


def _counted(number: int, noun: str) -> str:
    """`1 file`, `2 files`: a count with its noun, as the summaries print it."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


@main.command()
@click.argument("book", type=click.Path(file_okay=False, path_type=Path))
@out_option
@click.option("--through", default=None, type=PERIOD, help="Import and close periods up to this one only.")
@click.pass_obj
def run(ctx: Context, book: Path, out_dir: Path, through: str | None) -> None:
    """The monthly job: load BOOK, import BOOK/usage/* and BOOK/measurements/*, close the periods in order."""
    _run_summary(ctx, api.run(ctx.url, book, out_dir, through, progress=not ctx.quiet))


@main.command()
@out_option
@click.pass_obj
def demo(ctx: Context, out_dir: Path) -> None:
    """Run the bundled demo book with a fresh database in the --out folder."""
    result, url = api.demo(out_dir)
    _run_summary(ctx, result)
    last = result.closes[-1].period if result.closes else "YYYY-MM"
    _say(ctx, f"demo database: {url}\n  try: chargeback --db {url} reconcile {last}")


if __name__ == "__main__":  # pragma: no cover
    main()
