"""Fetch the UCI Online Retail order lines that the demo shop imports.

Usage (scikit-learn ``fetch_*`` style)::

    from shop_demo.datasets import fetch_online_retail
    paths = fetch_online_retail()   # [2009-12..2010-12 file, 2010-12..2011-12 file]
    # python manage.py shop_recs_import_orders *paths --format online_retail

or from a shell: ``python -m shop_demo.datasets`` prints the two paths.

Where the files come from, first match wins:

1. the shared data folder: ``$SHOP_RECS_DATA_DIR`` when set, else ``../shared/data/online_retail``
   beside the repository, when both gzip CSV files are in it;
2. the cache, ``<data_home>/online_retail/`` where ``data_home`` is the argument, else
   ``$SHOP_RECS_DATA_HOME``, else ``~/shop_recs_data``;
3. a download of UCI "Online Retail II" (dataset 502: one xlsx, one sheet per year) into the
   cache, verified by sha256, then converted to the same gzip CSV layout as the shared files
   (see ``PROVENANCE.md`` there): the 2009-2010 sheet keeps the Online Retail II column names,
   the 2010-2011 sheet gets the names of the original Online Retail release (dataset 352).

Every file is written to a temporary name and renamed into place, so an interrupted fetch never
leaves a partial file under a final name; a download whose sha256 does not match is deleted and
refused with :class:`ChecksumMismatch`. Converting the xlsx needs ``openpyxl``.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import logging
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("shop_demo.datasets")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SHARED_DIR = REPO_ROOT.parent / "shared" / "data" / "online_retail"
DEFAULT_DATA_HOME = Path("~/shop_recs_data")
CACHE_SUBDIR = "online_retail"


@dataclass(frozen=True)
class RemoteFile:
    """A file to download: where from, what it must hash to, and its name in the cache."""

    url: str
    sha256: str
    filename: str


# The sha256 below could not be checked from the sandbox this was written in (no route to
# archive.ics.uci.edu). It is the value published independently by several public projects that
# pin this exact URL (zip of 45,622,418 bytes holding online_retail_II.xlsx). If UCI ever
# repacks the archive, the fetch fails loudly with ChecksumMismatch rather than loading
# something unverified: update the constant after checking the new file by hand.
ONLINE_RETAIL_II = RemoteFile(
    url="https://archive.ics.uci.edu/static/public/502/online+retail+ii.zip",
    sha256="572e36277c2390fbfde10664750731e0a86f55e33470d91919085f0408e67bfb",
    filename="online_retail_ii.zip",
)


@dataclass(frozen=True)
class YearFile:
    """One output file: which xlsx sheet it comes from and the header it is written with."""

    filename: str
    sheet: str
    header: tuple[str, ...]


# Column order is the same in both; names follow each UCI release, as in the shared files.
YEAR_FILES = (
    YearFile(
        "online_retail_ii_2009-12_2010-12.csv.gz",
        "Year 2009-2010",
        ("Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price",
         "Customer ID", "Country"),
    ),
    YearFile(
        "online_retail_2010-12_2011-12.csv.gz",
        "Year 2010-2011",
        ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
         "CustomerID", "Country"),
    ),
)
PRICE_COLUMN = 5  # written with up to 15 significant digits; other numbers are integers


class DatasetError(RuntimeError):
    """The data set could not be found, downloaded or converted."""


class ChecksumMismatch(DatasetError):
    """A downloaded file does not have the expected sha256 (it has been deleted)."""


def get_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """The cache folder: the argument, else $SHOP_RECS_DATA_HOME, else ~/shop_recs_data."""
    if data_home is None:
        data_home = os.environ.get("SHOP_RECS_DATA_HOME") or DEFAULT_DATA_HOME
    return Path(data_home).expanduser()


def fetch_online_retail(
    data_home: str | os.PathLike | None = None,
    *,
    download_if_missing: bool = True,
    shared_dir: str | os.PathLike | None = None,
    use_shared: bool = True,
    remote: RemoteFile = ONLINE_RETAIL_II,
) -> list[Path]:
    """Return the paths of both yearly Online Retail gzip CSV files, oldest first.

    ``shared_dir`` overrides $SHOP_RECS_DATA_DIR / ``../shared/data/online_retail``;
    ``use_shared=False`` skips that folder; ``remote`` replaces the UCI download (tests use a
    ``file://`` URL). Raises :class:`DatasetError` when the files are nowhere and
    ``download_if_missing`` is false, or the download or conversion fails.
    """
    if use_shared:
        found = _find_shared(shared_dir)
        if found:
            logger.info("using shared Online Retail files in %s", found[0].parent)
            return found

    cache = get_data_home(data_home) / CACHE_SUBDIR
    targets = [cache / year.filename for year in YEAR_FILES]
    if all(path.is_file() for path in targets):
        logger.info("using cached Online Retail files in %s", cache)
        return targets
    if not download_if_missing:
        raise DatasetError(
            f"Online Retail files not found in the shared folder or in {cache}, "
            "and download_if_missing is False"
        )

    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / remote.filename
    if archive.is_file() and _sha256(archive) != remote.sha256:
        logger.warning("cached %s has a wrong sha256; downloading it again", archive)
        archive.unlink()
    if not archive.is_file():
        download(remote, archive)
    convert_online_retail_ii(archive, cache)
    archive.unlink()  # the gzip CSVs are the cache; the 45 MB archive is not needed any more
    return targets


def _find_shared(shared_dir: str | os.PathLike | None) -> list[Path] | None:
    explicit = shared_dir is not None or bool(os.environ.get("SHOP_RECS_DATA_DIR"))
    folder = Path(shared_dir or os.environ.get("SHOP_RECS_DATA_DIR") or DEFAULT_SHARED_DIR)
    folder = folder.expanduser()
    paths = [folder / year.filename for year in YEAR_FILES]
    if all(path.is_file() for path in paths):
        return paths
    if explicit:
        # A folder the user named but that lacks the files is a mistake worth reporting.
        missing = ", ".join(p.name for p in paths if not p.is_file())
        raise DatasetError(f"{folder} (SHOP_RECS_DATA_DIR / shared_dir) lacks {missing}")
    return None


def download(remote: RemoteFile, dest: Path, *, timeout: float = 120.0) -> Path:
    """Download ``remote.url`` to ``dest`` atomically; check its sha256 before renaming."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    logger.info("downloading %s", remote.url)
    try:
        # B310: RemoteFile URLs are https:// constants of this module; the sha256 is checked.
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url, timeout=timeout) as resp:  # nosec B310
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if actual != remote.sha256.lower():
            raise ChecksumMismatch(
                f"sha256 mismatch for {remote.url}: expected {remote.sha256}, got {actual}; "
                "the download was deleted (a changed or corrupted file is never used)"
            )
        os.replace(tmp, dest)
    except ChecksumMismatch:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:  # URLError is an OSError
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"could not download {remote.url}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def convert_online_retail_ii(archive: Path, out_dir: Path) -> list[Path]:
    """Convert the UCI Online Retail II zip (one xlsx, a sheet per year) to gzip CSV files."""
    try:
        import openpyxl
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DatasetError("converting the UCI xlsx needs openpyxl: pip install openpyxl") from exc

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".xlsx-") as tmp:
        xlsx = Path(tmp) / "online_retail_II.xlsx"
        try:
            with zipfile.ZipFile(archive) as zf:
                members = [n for n in zf.namelist() if n.lower().endswith(".xlsx")]
                if len(members) != 1:
                    raise DatasetError(f"{archive} should hold one .xlsx file, holds {members}")
                with zf.open(members[0]) as src, open(xlsx, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        except zipfile.BadZipFile as exc:
            raise DatasetError(f"{archive} is not a zip file: {exc}") from exc

        workbook = openpyxl.load_workbook(xlsx, read_only=True, data_only=True)
        try:
            written = []
            for index, year in enumerate(YEAR_FILES):
                if year.sheet in workbook.sheetnames:
                    sheet = workbook[year.sheet]
                elif len(workbook.sheetnames) == len(YEAR_FILES):
                    sheet = workbook.worksheets[index]  # renamed sheets: fall back to order
                else:
                    raise DatasetError(f"{archive}: no sheet {year.sheet!r} in {workbook.sheetnames}")
                written.append(_write_sheet(sheet.iter_rows(values_only=True), year, out_dir))
            return written
        finally:
            workbook.close()


def _write_sheet(rows, year: YearFile, out_dir: Path) -> Path:
    """Write one sheet's rows (header first) to ``out_dir/year.filename`` atomically."""
    rows = iter(rows)
    header = next(rows, None)
    if header is None or len([c for c in header if c is not None]) != len(year.header):
        raise DatasetError(f"sheet {year.sheet!r}: unexpected header {header!r}")
    dest = out_dir / year.filename
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".tmp", dir=out_dir)
    count = 0
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(year.header)
            width = len(year.header)
            for row in rows:
                if row is None or all(cell is None for cell in row[:width]):
                    continue  # trailing empty rows in the sheet
                writer.writerow(_format_row(row[:width]))
                count += 1
                if count % 200_000 == 0:
                    logger.info("%s: %d lines", year.filename, count)
            text.flush()
            text.detach()
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    logger.info("wrote %s (%d lines)", dest, count)
    return dest


def _format_row(row) -> list[str]:
    return [_format_cell(cell, price=(i == PRICE_COLUMN)) for i, cell in enumerate(row)]


def _format_cell(value, *, price: bool = False) -> str:
    """Match the shared files: integers as integer text, prices to 15 significant digits."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if price:
            return format(value, ".15g")
        if value.is_integer():
            return str(int(value))
        return format(value, ".15g")
    return str(value)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """``python -m shop_demo.datasets [DATA_HOME]``: print the two file paths, one a line."""
    logging.basicConfig(level=logging.INFO, format="[datasets] %(message)s", stream=sys.stderr)
    argv = sys.argv[1:] if argv is None else argv
    try:
        paths = fetch_online_retail(argv[0] if argv else None)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
