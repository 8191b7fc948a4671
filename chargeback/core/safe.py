"""Output safety: input text never runs as a formula, unit codes never escape a folder."""

from __future__ import annotations

from pathlib import Path

#: What makes a spreadsheet treat a cell as a formula (OWASP CSV injection), including the
#: full-width signs that some locales of Excel also accept.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
#: File names Windows reserves in every folder, whatever the extension.
RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}


def neutralize(text: str | None) -> str | None:
    """Text from input files as a spreadsheet or CSV reader will show, never run, it.

    A leading `'` is put before text that starts (after spaces, which some readers trim)
    with `=`, `+`, `-`, `@`, tab, CR or LF."""
    if text and text.lstrip(" \u00a0").startswith(FORMULA_STARTS):
        return "'" + text
    return text


def one_line(text: str | None) -> str:
    """`text` on one line: every run of white space (line breaks included) as one space,
    for a header, a title or a quoted string that a line break would end or forge."""
    return " ".join((text or "").split())


def file_in(folder: Path, code: str, suffix: str) -> Path:
    """The path of `<code><suffix>` inside `folder`, refusing any code that would leave it."""
    name = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in code)
    if not name or name.startswith(".") or name.split(".")[0].upper() in RESERVED_NAMES:
        name = "_" + name
    path = (folder / f"{name}{suffix}").resolve()
    if path.parent != folder.resolve():
        raise ValueError(f"unit code {code!r} cannot be used as a file name")
    return path
