"""LibreOffice as the tests run it: headless, with a profile of the run's own (removed
after it), and a skip when it is not installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest

#: Profile settings that make Calc recalculate every formula of an .xlsx on load.
RECALCULATE_ON_LOAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<oor:items xmlns:oor="http://openoffice.org/2001/registry" '
    'xmlns:xs="http://www.w3.org/2001/XMLSchema" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
    '<item oor:path="/org.openoffice.Office.Calc/Formula/Load">'
    '<prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>\n'
    "</oor:items>\n"
)


def soffice() -> str:
    """LibreOffice's command, or a skip saying it is not installed."""
    found = shutil.which("soffice")
    if not found:
        pytest.skip("soffice is not installed")
    return found


def soffice_convert(files: list[Path], to: str, outdir: Path, settings: str = "") -> None:
    """Convert `files` to the format `to` ("pdf", "xlsx") into `outdir`, each keeping its
    name; `settings` is the profile's registrymodifications.xcu, if any."""
    profile = Path(tempfile.mkdtemp(prefix="lo-profile-"))
    if settings:
        (profile / "user").mkdir()
        (profile / "user" / "registrymodifications.xcu").write_text(settings)
    try:
        subprocess.run(
            [
                soffice(),
                f"-env:UserInstallation={profile.as_uri()}",
                "--headless",
                "--convert-to",
                to,
                "--outdir",
                str(outdir),
                *map(str, files),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def soffice_recalculate(files: list[Path], folder: Path) -> dict[Path, Path]:
    """Copies of `files` with every stored formula value set to 0, recalculated by
    LibreOffice on load; returns {original: recalculated copy}."""
    zeroed = folder / "zeroed"
    converted = folder / "converted"
    zeroed.mkdir(parents=True)
    copies = [zeroed / f"{index}-{path.name}" for index, path in enumerate(files)]
    for path, copy in zip(files, copies, strict=True):
        _zero_formula_values(path, copy)
    soffice_convert(copies, "xlsx", converted, settings=RECALCULATE_ON_LOAD)
    return {path: converted / copy.name for path, copy in zip(files, copies, strict=True)}


def _zero_formula_values(source: Path, target: Path) -> None:
    pattern = re.compile(rb"(<f>[^<]*</f>)<v>[^<]*</v>")
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.startswith("xl/worksheets/sheet"):
                data = pattern.sub(rb"\1<v>0</v>", data)
            zout.writestr(info, data)
