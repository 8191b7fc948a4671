"""Builders of broken and hostile input files: CSV bytes, and XLSX workbooks whose XML
is written by hand (formulas without a saved value, merged cells, declared sizes,
XML entity attacks, zip bombs)."""

from __future__ import annotations

import io
import zipfile

HEADER = "date,service,consumer,quantity,reference,description"
GOOD = "2026-03-02,HELP,ART,1,R-1,fine"
OLE2 = bytes.fromhex("d0cf11e0a1b11ae1")

NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PACKAGE_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"


def csv_bytes(*lines: str, encoding: str = "utf-8") -> bytes:
    return ("\n".join(lines) + "\n").encode(encoding)


def usage_csv(*rows: str, encoding: str = "utf-8") -> bytes:
    return csv_bytes(HEADER, *rows, encoding=encoding)


def _cell(ref: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<c r="{ref}"><v>{value}</v></c>'
    if isinstance(value, str) and value.startswith("<"):
        return value.replace("REF", ref)  # a raw cell, e.g. '<c r="REF"><f>1+1</f></c>'
    text = str(value).replace("&", "&amp;").replace("<", "&lt;")
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'


def sheet_xml(
    rows: list[list[object]],
    dimension: str | None = None,
    merged: list[str] = (),
    doctype: str = "",
    extra_rows: str = "",
) -> str:
    """A worksheet's XML: `rows` from row 1, a cell value per column from A."""
    letters = "ABCDEFGHIJ"
    body = "".join(
        f'<row r="{r}">' + "".join(_cell(f"{letters[c]}{r}", v) for c, v in enumerate(row)) + "</row>"
        for r, row in enumerate(rows, start=1)
    )
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    merge = (
        (f'<mergeCells count="{len(merged)}">' + "".join(f'<mergeCell ref="{m}"/>' for m in merged) + "</mergeCells>")
        if merged
        else ""
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{doctype}<worksheet xmlns="{NS}">{dim}'
        f"<sheetData>{body}{extra_rows}</sheetData>{merge}</worksheet>"
    )


def workbook(sheet: str, shared_strings: str | None = None, pad: int = 0) -> bytes:
    """A minimal valid XLSX package around one sheet's XML (`pad` bytes of spaces are
    appended inside the sheet to make a highly compressible member)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            + (
                '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
                if shared_strings is not None
                else ""
            )
            + "</Types>",
        )
        z.writestr(
            "_rels/.rels",
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PACKAGE_RELS}">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>",
        )
        z.writestr(
            "xl/workbook.xml",
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{NS}" xmlns:r="{RELS}">'
            '<sheets><sheet name="Usage" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PACKAGE_RELS}">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
            + (
                '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
                if shared_strings is not None
                else ""
            )
            + "</Relationships>",
        )
        if pad:
            sheet = sheet.replace("<sheetData>", "<sheetData>" + " " * pad, 1)
        z.writestr("xl/worksheets/sheet1.xml", sheet)
        if shared_strings is not None:
            z.writestr("xl/sharedStrings.xml", shared_strings)
    return buffer.getvalue()


USAGE_HEADER = ["date", "service", "consumer", "quantity", "reference", "description"]


def usage_workbook(*rows: list[object], pad: int = 0, **options: object) -> bytes:
    return workbook(sheet_xml([USAGE_HEADER, *rows], **options), pad=pad)


LAUGHS = (
    '<!DOCTYPE worksheet [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]>"
)
EXTERNAL = '<!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


def billion_laughs() -> bytes:
    return workbook(
        sheet_xml([USAGE_HEADER, ["2026-03-02", "HELP", "ART", 1, "R-1", "&lol9;"]], doctype=LAUGHS).replace(
            "&amp;lol9;", "&lol9;"
        )
    )


def external_entity() -> bytes:
    strings = (
        f'<?xml version="1.0" encoding="UTF-8"?>{EXTERNAL}<sst xmlns="{NS}" count="1" uniqueCount="1">'
        "<si><t>&xxe;</t></si></sst>"
    )
    sheet = sheet_xml([USAGE_HEADER, ["2026-03-02", "HELP", "ART", 1, "R-1", '<c r="REF" t="s"><v>0</v></c>']])
    return workbook(sheet, shared_strings=strings)
