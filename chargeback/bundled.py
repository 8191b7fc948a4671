"""Files shipped with the package (templates, the demo book): inside the installed
wheel, else at the top of a source checkout."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled(*parts: str) -> Path:
    packaged = Path(str(resources.files("chargeback"))).joinpath(*parts)
    if packaged.exists():
        return packaged
    return Path(__file__).resolve().parent.parent.joinpath(*parts)
