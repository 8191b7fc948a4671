"""Output safety: input text never runs as a formula, unit codes never escape a folder."""

from __future__ import annotations

from pathlib import Path

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def neutralize(text: str | None) -> str | None:
    """Text from input files as a spreadsheet or CSV reader will show, never run, it
    (OWASP CSV injection: a leading `'` before `=`, `+`, `-`, `@`, tab, CR, LF)."""
    if text and text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def file_in(folder: Path, code: str, suffix: str) -> Path:
    """The path of `<code><suffix>` inside `folder`, refusing any code that would leave it."""
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in code)
    if not name or name.startswith(".") or name in (".", ".."):
        name = "_" + name
    path = (folder / f"{name}{suffix}").resolve()
    if path.parent != folder.resolve():
        raise ValueError(f"unit code {code!r} cannot be used as a file name")
    return path
