"""The package a host installs: ``python -m build`` makes a wheel that ``twine check``
accepts and that installs into a fresh virtualenv with the README's extras.

The fresh virtualenv borrows this environment's site-packages through a ``.pth`` file, so
that pip resolves the dependencies offline and in seconds; shop_recs itself must come
from the wheel (not from this checkout), with its templates and static files.
"""

import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.readme_snippets import snippet

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _run(*args, cwd=ROOT, env=None):
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "shop_recs", source / "shop_recs",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # The README's `python -m build`, with --no-isolation: the build backend (setuptools)
    # is already here, no download.
    assert "python -m build" in snippet("install")
    _run(sys.executable, "-m", "build", "--wheel", "--sdist", "--no-isolation",
         "--outdir", str(out), str(source))
    (built,) = out.glob("shop_recs-*.whl")
    return built


def test_wheel_passes_twine_check_and_carries_templates(wheel):
    out = _run(sys.executable, "-m", "twine", "check", "--strict",
               *map(str, wheel.parent.iterdir()))
    assert out.count("PASSED") == 2
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("shop_recs/templates/shop_recs/frequently_bought_together.html",
                     "shop_recs/static/shop_recs/widget.js",
                     "shop_recs/migrations/0001_initial.py",
                     "shop_recs/contrib/oscar/templates/shop_recs/oscar/product_recs.html"):
        assert expected in names
    assert not any(n.startswith(("tests/", "shop_demo/")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("METADATA"))).decode()
    for extra in ("train", "redis", "oscar"):
        assert f"Provides-Extra: {extra}" in metadata
    assert "torch<3,>=2.5; extra == \"train\"" in metadata


def readme_wheel_installs():
    """The README's ``pip install "<wheel>[extras]"`` lines: (wheel file name, extras)."""
    lines = snippet("install") + snippet("oscar-install")
    return re.findall(r'pip install "(shop_recs-[^"\[]+\.whl)\[([a-z,]+)\]"', lines)


def test_wheel_installs_into_a_fresh_virtualenv(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                     cwd=tmp_path).strip())
    here = [p for p in sys.path if p.endswith("site-packages")]
    (site / "borrowed.pth").write_text("\n".join(here) + "\n")
    # ensurepip's old setuptools would shadow the borrowed one (torch needs a newer one).
    _run(str(python), "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools", cwd=tmp_path)
    # The README's lines, each with the wheel just built (torch is borrowed from this
    # environment: the README's CPU index is beyond this machine's network).
    installs = readme_wheel_installs()
    assert {extras for _, extras in installs} == {"redis", "train,redis", "oscar,redis"}
    for name, extras in installs:
        assert name == wheel.name, "README.md names another wheel than `python -m build` makes"
        _run(str(python), "-m", "pip", "install", "--no-index", "--quiet",
             f"shop-recs[{extras}] @ {wheel.as_uri()}", cwd=tmp_path)
    assert "--index-url https://download.pytorch.org/whl/cpu" in snippet("install")
    settings = tmp_path / "hostsettings.py"
    settings.write_text(
        "SECRET_KEY = 'x' * 50\n"
        "INSTALLED_APPS = ['django.contrib.auth', 'django.contrib.contenttypes', 'shop_recs']\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': 'db.sqlite3'}}\n"
        "MEDIA_ROOT = 'media'\nUSE_TZ = True\n"
        "TEMPLATES = [{'BACKEND': 'django.template.backends.django.DjangoTemplates',"
        " 'APP_DIRS': True}]\n"
    )
    script = (
        "import django, shop_recs, torch, oscar; django.setup();"
        "from django.core.management import call_command;"
        "from django.template.loader import get_template;"
        "call_command('check'); call_command('migrate', verbosity=0);"
        "get_template('shop_recs/frequently_bought_together.html');"
        "print(shop_recs.__file__)"
    )
    out = _run(str(python), "-c", script, cwd=tmp_path,
               env={"DJANGO_SETTINGS_MODULE": "hostsettings", "PYTHONPATH": str(tmp_path)})
    assert out.strip().splitlines()[-1].startswith(str(site)), out  # the wheel's, not ours
