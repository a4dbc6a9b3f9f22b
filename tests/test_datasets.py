"""shop_demo.datasets: shared folder lookup, cache, verified download, xlsx conversion."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import urllib.request
import zipfile
from pathlib import Path

import pytest

from shop_demo import datasets
from shop_demo.datasets import (
    YEAR_FILES,
    ChecksumMismatch,
    DatasetError,
    RemoteFile,
    fetch_online_retail,
)

NAMES = [year.filename for year in YEAR_FILES]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("SHOP_RECS_DATA_DIR", raising=False)
    monkeypatch.delenv("SHOP_RECS_DATA_HOME", raising=False)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_year_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for year in YEAR_FILES:
        path = folder / year.filename
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(",".join(year.header) + "\n")
        paths.append(path)
    return paths


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("fetch_online_retail must not download here")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _make_uci_zip(folder: Path) -> Path:
    """A tiny stand-in for online+retail+ii.zip: one xlsx, one sheet per year, UCI headers."""
    import openpyxl  # a requirement: the real UCI archive is an xlsx
    ii_header = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price",
                 "Customer ID", "Country"]
    wb = openpyxl.Workbook()
    first = wb.active
    first.title = "Year 2009-2010"
    first.append(ii_header)
    first.append([489434, 85048, "15CM CHRISTMAS GLASS BALL 20 LIGHTS", 12,
                  dt.datetime(2009, 12, 1, 7, 45), 6.95, 13085.0, "United Kingdom"])
    first.append(["C489449", "22087", 'PAPER BUNTING, "WHITE" LACE', -12,
                  dt.datetime(2009, 12, 1, 10, 33), 2.95, 16321.0, "Australia"])
    first.append([489450, "79323P", None, 1, dt.datetime(2009, 12, 1, 10, 40), 1.0, None,
                  "United Kingdom"])
    second = wb.create_sheet("Year 2010-2011")
    second.append(ii_header)
    second.append([536365, "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 6,
                   dt.datetime(2010, 12, 1, 8, 26), 2.55, 17850.0, "United Kingdom"])
    xlsx = io.BytesIO()
    wb.save(xlsx)
    archive = folder / "online+retail+ii.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("online_retail_II.xlsx", xlsx.getvalue())
    return archive


def _read_gz_csv(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def test_shared_folder_is_used_first(tmp_path, monkeypatch):
    shared = _write_year_files(tmp_path / "shared")
    _write_year_files(tmp_path / "home" / "online_retail")  # a cache that must lose
    _no_network(monkeypatch)

    assert fetch_online_retail(tmp_path / "home", shared_dir=tmp_path / "shared") == shared

    monkeypatch.setenv("SHOP_RECS_DATA_DIR", str(tmp_path / "shared"))
    assert fetch_online_retail(tmp_path / "home") == shared


def test_named_shared_folder_without_files_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("SHOP_RECS_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="lacks"):
        fetch_online_retail(tmp_path / "home")


def test_default_shared_folder_found_when_present(monkeypatch):
    if not all((datasets.DEFAULT_SHARED_DIR / name).is_file() for name in NAMES):
        pytest.skip(f"no shared data at {datasets.DEFAULT_SHARED_DIR}")
    _no_network(monkeypatch)
    paths = fetch_online_retail("/nonexistent/data-home")
    assert paths == [datasets.DEFAULT_SHARED_DIR / name for name in NAMES]
    assert _read_gz_csv(paths[0])[0][:3] == ["Invoice", "StockCode", "Description"]


def test_cache_hit_skips_download(tmp_path, monkeypatch):
    cached = _write_year_files(tmp_path / "home" / "online_retail")
    _no_network(monkeypatch)
    assert fetch_online_retail(tmp_path / "home", use_shared=False) == cached

    monkeypatch.setenv("SHOP_RECS_DATA_HOME", str(tmp_path / "home"))
    assert fetch_online_retail(use_shared=False) == cached


def test_missing_everywhere_without_download_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        fetch_online_retail(tmp_path, use_shared=False, download_if_missing=False)


def test_checksum_mismatch_is_refused_and_deleted(tmp_path):
    source = tmp_path / "remote.zip"
    source.write_bytes(b"not what was expected")
    remote = RemoteFile(source.as_uri(), "0" * 64, "online_retail_ii.zip")
    home = tmp_path / "home"

    with pytest.raises(ChecksumMismatch, match="sha256 mismatch"):
        fetch_online_retail(home, use_shared=False, remote=remote)

    # Nothing left behind: no archive, no partial download, no converted files.
    assert list((home / "online_retail").iterdir()) == []


def test_unreachable_url_is_a_clear_error(tmp_path):
    remote = RemoteFile((tmp_path / "nothing-here.zip").as_uri(), "0" * 64, "x.zip")
    with pytest.raises(DatasetError, match="could not download"):
        fetch_online_retail(tmp_path / "home", use_shared=False, remote=remote)
    assert list((tmp_path / "home" / "online_retail").iterdir()) == []


def test_file_url_download_converts_to_shared_layout(tmp_path, monkeypatch):
    archive = _make_uci_zip(tmp_path)
    remote = RemoteFile(archive.as_uri(), _sha256(archive.read_bytes()), "online_retail_ii.zip")
    home = tmp_path / "home"

    paths = fetch_online_retail(home, use_shared=False, remote=remote)

    assert paths == [home / "online_retail" / name for name in NAMES]
    older, newer = (_read_gz_csv(p) for p in paths)
    assert older == [
        ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price",
         "Customer ID", "Country"],
        ["489434", "85048", "15CM CHRISTMAS GLASS BALL 20 LIGHTS", "12", "2009-12-01 07:45:00",
         "6.95", "13085", "United Kingdom"],
        ["C489449", "22087", 'PAPER BUNTING, "WHITE" LACE', "-12", "2009-12-01 10:33:00",
         "2.95", "16321", "Australia"],
        ["489450", "79323P", "", "1", "2009-12-01 10:40:00", "1", "", "United Kingdom"],
    ]
    assert newer == [
        ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
         "CustomerID", "Country"],
        ["536365", "85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "6", "2010-12-01 08:26:00",
         "2.55", "17850", "United Kingdom"],
    ]
    # Only the final files remain (archive removed, no temporary names).
    assert sorted(p.name for p in (home / "online_retail").iterdir()) == sorted(NAMES)

    # A second call is a cache hit.
    _no_network(monkeypatch)
    assert fetch_online_retail(home, use_shared=False, remote=remote) == paths


def test_bad_cached_archive_is_downloaded_again(tmp_path):
    archive = _make_uci_zip(tmp_path)
    remote = RemoteFile(archive.as_uri(), _sha256(archive.read_bytes()), "online_retail_ii.zip")
    cache = tmp_path / "home" / "online_retail"
    cache.mkdir(parents=True)
    (cache / remote.filename).write_bytes(b"truncated")

    paths = fetch_online_retail(tmp_path / "home", use_shared=False, remote=remote)
    assert all(p.is_file() for p in paths)
