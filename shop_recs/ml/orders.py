"""Read order-line CSV files into clean, de-duplicated lines (pandas only, no torch).

Two layouts are understood:

* ``online_retail``: the UCI Online Retail files. Both yearly releases are read; their
  headers differ (``InvoiceNo``/``UnitPrice``/``CustomerID`` against
  ``Invoice``/``Price``/``Customer ID``).
* ``generic``: a header with ``order_id``, ``product_id`` and ``timestamp`` (ISO 8601);
  ``customer_id``, ``quantity``, ``unit_price``, ``product_name`` and ``category`` are
  optional.

Usage::

    report = CleaningReport()
    for path, chunk in iter_clean_chunks([path], "online_retail", report=report):
        ...  # chunk: DataFrame with the columns in ``COLUMNS``
    frame = read_orders([path])  # everything at once

The same cleaning rules feed the Django import command and the benchmark CLI, so the
figures of both describe the same baskets. Each line dropped is counted by reason.
"""

from __future__ import annotations

import gzip
import hashlib
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

FORMATS = ("online_retail", "generic")

COLUMNS = (
    "order_id", "product_id", "timestamp", "customer_id", "quantity",
    "unit_price", "product_name", "category", "line_key", "line_no",
)

GENERIC_REQUIRED = ("order_id", "product_id", "timestamp")
GENERIC_OPTIONAL = ("customer_id", "quantity", "unit_price", "product_name", "category")

# Each UCI release spells its columns its own way; both map onto the generic names.
ONLINE_RETAIL_LAYOUTS = (
    {"InvoiceNo": "order_id", "StockCode": "product_id", "Description": "product_name",
     "Quantity": "quantity", "InvoiceDate": "timestamp", "UnitPrice": "unit_price",
     "CustomerID": "customer_id"},
    {"Invoice": "order_id", "StockCode": "product_id", "Description": "product_name",
     "Quantity": "quantity", "InvoiceDate": "timestamp", "Price": "unit_price",
     "Customer ID": "customer_id"},
)

# Stock codes of the UCI shop that are fees, postage or manual entries, not products.
NON_PRODUCT_CODES = frozenset({
    "POST", "DOT", "M", "D", "C2", "C3", "S", "B", "CRUK", "PADS", "BANK CHARGES",
    "AMAZONFEE", "ADJUST", "ADJUST2", "TEST001", "TEST002", "GIFT", "SP1002",
})
NON_PRODUCT_PREFIXES = ("gift_0001_",)

BAD_LINES_KEPT = 1000


class OrderFileError(ValueError):
    """The file cannot be read as orders at all (unreadable, or required columns missing)."""


@dataclass
class CleaningReport:
    """Counts of lines read, kept and skipped (by reason), with the first bad lines."""

    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    bad_lines: list[tuple[str, int, str]] = field(default_factory=list)

    def skip(self, reason: str, count: int) -> None:
        if count:
            self.skipped[reason] += int(count)

    def bad(self, path: Path | str, line_nos: Iterable[int], reason: str) -> None:
        line_nos = list(line_nos)
        self.skip(reason, len(line_nos))
        room = BAD_LINES_KEPT - len(self.bad_lines)
        self.bad_lines.extend((str(path), int(n), reason) for n in line_nos[:max(room, 0)])


def _open_text(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def read_header(path: Path) -> list[str]:
    try:
        with _open_text(path) as fh:
            header = pd.read_csv(fh, nrows=0, dtype=str).columns
    except (OSError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise OrderFileError(f"{path}: cannot read a CSV header ({exc})") from exc
    return [str(c).strip().lstrip("\ufeff") for c in header]


def column_map(header: list[str], fmt: str, path: Path) -> dict[str, str]:
    """Map the file's column names onto the generic names, or fail naming what is missing."""
    if fmt not in FORMATS:
        raise OrderFileError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    present = set(header)
    if fmt == "generic":
        missing = [c for c in GENERIC_REQUIRED if c not in present]
        if missing:
            raise OrderFileError(
                f"{path}: missing required column(s): {', '.join(missing)} "
                f"(the generic format needs {', '.join(GENERIC_REQUIRED)})"
            )
        return {c: c for c in GENERIC_REQUIRED + GENERIC_OPTIONAL if c in present}
    best = min(ONLINE_RETAIL_LAYOUTS, key=lambda lay: len(set(lay) - present))
    missing = [c for c in best if c not in present]
    if missing:
        raise OrderFileError(
            f"{path}: missing required column(s) for the online_retail format: "
            f"{', '.join(missing)}"
        )
    return dict(best)


def _line_keys(frame: pd.DataFrame) -> np.ndarray:
    """Stable 63-bit keys of the fields that identify a line (same line in two files = same key)."""
    parts = zip(*(column.tolist() for column in (  # lists: iterating a Series boxes each value
        frame["order_id"], frame["product_id"], frame["quantity"].astype(str),
        frame["unit_price"].map(repr), frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S"),
        frame["customer_id"])))
    blake = hashlib.blake2b
    return np.fromiter(
        (int.from_bytes(blake("\x1f".join(f).encode(), digest_size=8).digest(), "big") >> 1
         for f in parts), dtype=np.int64, count=len(frame))


def _normalise(raw: pd.DataFrame, mapping: dict[str, str], first_line: int) -> pd.DataFrame:
    frame = raw[list(mapping)].rename(columns=mapping)
    for name in ("order_id", "product_id", "customer_id", "product_name", "category"):
        if name in frame:
            frame[name] = frame[name].astype(str).str.strip()
        else:
            frame[name] = ""
    # Excel exports write customer ids as floats ("17850.0").
    frame["customer_id"] = frame["customer_id"].str.replace(r"\.0+$", "", regex=True)
    frame["timestamp"] = pd.to_datetime(
        frame["timestamp"].str.strip(), format="ISO8601", errors="coerce", utc=True
    )
    # Before year 1 in UTC ("0000-…", or year 1 with a positive offset) no Python or
    # database datetime can hold it: a bad timestamp like any unparseable one.
    frame["timestamp"] = frame["timestamp"].where(frame["timestamp"].dt.year >= 1)
    frame["quantity"] = (
        pd.to_numeric(frame["quantity"], errors="coerce") if "quantity" in mapping.values()
        else 1.0
    )
    if "unit_price" in mapping.values():
        text = frame["unit_price"].astype(str).str.strip()
        frame["unit_price"] = pd.to_numeric(text.where(text != "", None), errors="coerce")
        frame["_price_given"] = text != ""
    else:
        frame["unit_price"] = np.nan
        frame["_price_given"] = False
    frame["line_no"] = np.arange(first_line, first_line + len(frame), dtype=np.int64)
    return frame


def _clean(frame: pd.DataFrame, fmt: str, path: Path, report: CleaningReport,
           extra_codes: frozenset = frozenset()) -> pd.DataFrame:
    """Drop bad and non-basket lines, counting each by reason, in a fixed order."""
    checks = [
        ("missing_order_id", frame["order_id"] == "", True),
        ("missing_product_id", frame["product_id"] == "", True),
        ("bad_timestamp", frame["timestamp"].isna(), True),
        ("bad_quantity", frame["quantity"].isna()
         | (frame["quantity"] % 1 != 0) | (frame["quantity"].abs() > 1e9), True),
        ("bad_unit_price", frame["_price_given"] & frame["unit_price"].isna(), True),
    ]
    code = frame["product_id"]
    non_product = code.isin(extra_codes)
    if fmt == "online_retail":
        non_product |= (code.str.upper().isin(NON_PRODUCT_CODES)
                        | code.str.startswith(NON_PRODUCT_PREFIXES))
        checks += [
            ("cancellation", frame["order_id"].str.startswith("C"), False),
            ("bad_debt_adjustment", frame["order_id"].str.startswith("A"), False),
        ]
    checks.append(("non_product_code", non_product, False))
    checks += [
        ("nonpositive_quantity", frame["quantity"] <= 0, False),
        ("nonpositive_price", frame["unit_price"] <= 0, False),
    ]
    keep = pd.Series(True, index=frame.index)
    for reason, mask, is_bad_line in checks:
        hit = mask.fillna(False) & keep
        if is_bad_line:
            report.bad(path, frame.loc[hit, "line_no"], reason)
        else:
            report.skip(reason, hit.sum())
        keep &= ~hit
    frame = frame[keep].drop(columns="_price_given")
    frame["quantity"] = frame["quantity"].astype(np.int64)
    frame["unit_price"] = frame["unit_price"].astype(np.float64)
    return frame


def _drop_seen(frame: pd.DataFrame, seen: dict[int, int] | None, file_no: int,
               report: CleaningReport) -> pd.DataFrame:
    """Drop exact duplicates within a file and lines already read from an earlier file.

    ``seen`` maps each line key to the number of the file it was first read from. None:
    only the duplicates inside this chunk are dropped here; the caller finds the others
    (the importer, in the database), so memory stays flat however many lines are read.
    """
    keys = _line_keys(frame)
    if seen is None:
        status = pd.Series(keys).duplicated().to_numpy().astype(np.int8)
    else:
        status = np.zeros(len(keys), dtype=np.int8)  # 0 new, 1 duplicate, 2 earlier file
        for i, key in enumerate(keys.tolist()):
            first = seen.get(key)
            if first is None:
                seen[key] = file_no
            else:
                status[i] = 1 if first == file_no else 2
    report.skip("in_earlier_file", int((status == 2).sum()))
    report.skip("duplicate_line", int((status == 1).sum()))
    return frame.assign(line_key=keys)[status == 0]


def iter_clean_chunks(
    paths: Iterable[Path | str],
    fmt: str = "generic",
    chunksize: int = 100_000,
    report: CleaningReport | None = None,
    non_product_codes: Iterable[str] = (),
    remember_lines: bool = True,
) -> Iterator[tuple[Path, pd.DataFrame]]:
    """Yield ``(path, clean_chunk)`` for every file in order, updating ``report``.

    ``remember_lines=False`` drops repeated lines only within a chunk and keeps no set of
    every line read (flat memory at any size); the caller must then skip the lines it has
    already stored (``shop_recs.importer`` asks the database) and count them.

    ``non_product_codes`` are product ids to drop as fees or postage, in any format
    (``online_retail`` also drops the UCI shop's own list).

    Headers of all files are checked before any line is read, so a file with missing
    columns fails at once with :class:`OrderFileError`.
    """
    report = report if report is not None else CleaningReport()
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.is_file():
            raise OrderFileError(f"{path}: no such file")
    mappings = [column_map(read_header(p), fmt, p) for p in paths]
    extra = frozenset(str(c) for c in non_product_codes)
    seen: dict[int, int] | None = {} if remember_lines else None
    for file_no, (path, mapping) in enumerate(zip(paths, mappings)):
        with _open_text(path) as fh, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            reader = pd.read_csv(
                fh, dtype=str, keep_default_na=False, chunksize=chunksize,
                on_bad_lines="warn", skipinitialspace=False,
            )
            first_line = 2  # line 1 is the header
            try:
                for raw in reader:
                    raw.columns = [str(c).strip().lstrip("\ufeff") for c in raw.columns]
                    report.read += len(raw)
                    frame = _normalise(raw, mapping, first_line)
                    first_line += len(raw)
                    frame = _clean(frame, fmt, path, report, extra)
                    frame = _drop_seen(frame, seen, file_no, report)
                    report.kept += len(frame)
                    yield path, frame[list(COLUMNS)].reset_index(drop=True)
            except pd.errors.ParserError as exc:
                raise OrderFileError(f"{path}: unreadable CSV ({exc})") from exc
            for warning in caught:
                _record_malformed(str(warning.message), path, report)


def _record_malformed(message: str, path: Path, report: CleaningReport) -> None:
    # pandas reports rows with the wrong number of fields as "Skipping line N: ...".
    for part in message.split("Skipping line ")[1:]:
        number = part.split(":", 1)[0]
        if number.isdigit():
            report.read += 1
            report.bad(path, [int(number)], "wrong_field_count")


def read_orders(
    paths: Iterable[Path | str], fmt: str = "generic", report: CleaningReport | None = None,
    non_product_codes: Iterable[str] = (),
) -> pd.DataFrame:
    """All clean lines of ``paths`` in one frame (columns as in ``COLUMNS``).

    Product codes are folded to upper case, as ``shop_recs_import_orders`` folds them
    (the UCI files write some codes in two cases for one product), so that a benchmark on
    the file and a training run on the imported orders see the same catalogue.
    """
    chunks = [chunk for _, chunk in iter_clean_chunks(
        paths, fmt, report=report, non_product_codes=non_product_codes)]
    if not chunks:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    frame = pd.concat(chunks, ignore_index=True)
    frame["product_id"] = frame["product_id"].astype(str).str.upper()
    return frame
