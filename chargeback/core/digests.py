"""The sha256 of a file, read a piece at a time: recorded with each import, each input
of an audited command, and each document in a period's manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of(path: Path) -> str:
    """The sha256 of the file's bytes, as lowercase hex (journal.csv can be 250 MB: it is
    read a piece at a time)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
