"""The README's month-end walk-through, command by command, as a finance user runs it:
preview, read the variance review, fix a refused file, void a wrong one, see the status,
preview again, close, deliver, revise after a late ticket, hand over the fiscal year."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner
from conftest import usage_file
from test_deliver import CONSUMERS, Inbox, documents_for, smtp, with_emails  # noqa: F401 (smtp: a fixture)

from chargeback.cli import main


def test_the_month_end_walk_through(db_url: str, mini_book: Path, tmp_path: Path, smtp: tuple[Inbox, str]) -> None:  # noqa: F811
    inbox, server = smtp
    out = tmp_path / "out"

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(main, ["--db", db_url, *args])
        return result.exit_code, result.stdout, result.stderr

    with_emails(mini_book, {"ART": "art@uni.example", "MATH": "math@uni.example", "EXT-1": "billing@library.example"})
    assert run("load", str(mini_book))[0] == 0
    assert run("import", str(mini_book / "usage" / "2026-03.csv"), "--period", "2026-03")[0] == 0
    assert run("close", "2026-03", "--out", str(out))[0] == 0

    # April: the help desk's file has a bad line and is refused whole
    april = [
        ["2026-04-02", "HELP", "ART", "2", "T-10", "Printer setup"],
        ["2026-04-03", "HELP", "MATHS", "1", "T-11", "Projector"],
    ]
    bad = usage_file(tmp_path, "2026-04-help.csv", april)
    code, stdout, stderr = run("import", str(bad), "--period", "2026-04")
    assert code == 1 and stderr.splitlines() == [
        "2026-04-help.csv:3: consumer: 'MATHS' is not a unit of the book",
        "import refused: 1 error, nothing imported",
    ]

    # preview: the variance review calls out both services, whose files are not in yet
    code, stdout, _ = run("preview", "2026-04", "--out", str(out))
    assert code == 0 and "nothing was posted" in stdout.splitlines()[0]
    assert "  no usage of VAN (FLEET) in 2026-04: 140.13 in 2026-03; is a usage file missing?" in stdout
    assert "  no usage of HELP (IT) in 2026-04: 285.00 in 2026-03; is a usage file missing?" in stdout

    # fix the file, import it and the fleet's; a manual credit; preview again
    april[1][2] = "MATH"
    assert run("import", str(usage_file(tmp_path, "2026-04-help.csv", april)), "--period", "2026-04")[0] == 0
    # the fleet's file comes in with 30 days for 3; status shows it waiting, void takes it back
    wrong = usage_file(tmp_path, "2026-04-fleet.csv", [["2026-04-06", "VAN", "ART", "30", "V-10", "Exhibit"]])
    assert run("import", str(wrong), "--period", "2026-04")[0] == 0
    code, stdout, _ = run("status", "2026-04", "--out", str(out))
    assert code == 0 and stdout.splitlines()[:2] == [
        "2026-04  open",
        "  waiting: 3 usage lines (1605.00 USD), 0 adjustments (0.00 USD)",
    ]
    code, stdout, _ = run("imports", "2026-04")
    assert "2026-04-fleet.csv  1/1 lines (0 duplicates)  1425.00 USD  pending" in stdout.splitlines()[2]
    code, stdout, _ = run("void", "import", "3", "--reason", "30 days keyed for 3")
    assert (code, stdout) == (0, "void 1: import 3 in 2026-04 voided: 1 usage lines of 2026-04-fleet.csv left out\n")
    fleet = usage_file(tmp_path, "2026-04-fleet.csv", [["2026-04-06", "VAN", "ART", "3", "V-10", "Exhibit"]])
    code, stdout, _ = run("import", str(fleet), "--period", "2026-04")
    assert code == 0 and "1 imported, 0 duplicates skipped" in stdout
    assert (
        run(
            "adjust",
            "2026-04",
            "--service",
            "HELP",
            "--consumer",
            "ART",
            "--amount",
            "-10.00",
            "--reason",
            "Duplicate ticket",
            "--memo",
            "Ticket T-10 credited",
        )[0]
        == 0
    )
    code, stdout, _ = run("preview", "2026-04", "--out", str(out))
    assert code == 0 and "no usage of" not in stdout
    preview_lines = stdout.splitlines()
    art = next(line for line in preview_lines if line.lstrip("! ").startswith("ART "))
    assert art.split()[:6] == ["!", "ART", "252.50", "185.00", "+67.50", "36.5%"]
    draft = json.loads((out / "2026-04-draft" / "manifest.json").read_text())
    assert draft["draft"] is True and draft["status"] == "open"

    # close: the same figures as the last preview
    code, stdout, _ = run("close", "2026-04", "--out", str(out))
    assert code == 0 and stdout.splitlines()[1:] == preview_lines[1:]
    final = json.loads((out / "2026-04" / "manifest.json").read_text())
    assert final["totals"] == draft["totals"] and final["status"] == "closed"

    # deliver: a dry run first, then the real thing, then nothing more to send
    documents_for(out / "2026-04", CONSUMERS)
    code, stdout, stderr = run("deliver", "2026-04", "--out", str(out), "--dry-run")
    assert code == 0 and f"dry run: 2 messages written to {out / '2026-04-outbox'}" in stdout
    assert "warning: FLEET not sent" not in stderr  # FLEET has no charges in April
    code, stdout, _ = run("deliver", "2026-04", "--out", str(out), "--smtp", server, "--from", "finance@uni.example")
    assert code == 0 and stdout.splitlines()[-1].startswith("delivered 2026-04: 2 sent")
    assert sorted(rcpt[0] for rcpt, _ in inbox.messages) == ["art@uni.example", "math@uni.example"]
    code, stdout, _ = run("deliver", "2026-04", "--out", str(out), "--smtp", server)
    assert code == 0 and "sent before, not again: ART, MATH" in stdout and len(inbox.messages) == 2

    # a late ticket after the close: reopen, import, close again; the invoice is revised
    assert run("reopen", "2026-04", "--reason", "Late ticket T-12")[0] == 0
    late = usage_file(tmp_path, "2026-04-late.csv", [["2026-04-28", "HELP", "ART", "1", "T-12", "Scanner"]])
    assert run("import", str(late), "--period", "2026-04")[0] == 0
    assert run("close", "2026-04", "--out", str(out))[0] == 0
    revised = (out / "2026-04" / "invoices" / "ART.html").read_text(encoding="utf-8")
    first = (out / "2026-04" / "revisions" / "1" / "invoices" / "ART.html").read_text(encoding="utf-8")
    assert re.search(r'id="number">ICN-202604-ART-R2<', revised) and 'id="replaces">ICN-202604-ART<' in revised
    assert "Total 252.50 before, 312.50 now (USD)" in revised  # + 1 h at 60.00
    assert re.search(r'id="number">ICN-202604-ART<', first)

    # hand over the fiscal year (July 2025 to June 2026) in one file, for beancount
    code, _, _ = run("export", "--fiscal-year", "2026", "--format", "beancount", "--out", str(tmp_path / "FY2026.bean"))
    text = (tmp_path / "FY2026.bean").read_text(encoding="utf-8")
    assert code == 0 and text.count("open Expenses:Internal:ART USD") == 1
    assert 'period: "2026-03"' in text and 'period: "2026-04"' in text
