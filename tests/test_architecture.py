"""The dependency rules of ARCHITECTURE.md, enforced: import-linter contracts and torch-free imports."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_hold():
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_ml_contract_forbids_every_module_outside_ml():
    """A new shop_recs module is added to the ml contract's forbidden list too."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = config["tool"]["importlinter"]["contracts"][0]
    assert contract["source_modules"] == ["shop_recs.ml"]
    siblings = {f"shop_recs.{p.stem}" for p in (ROOT / "shop_recs").iterdir()
                if p.name != "ml" and not p.name.startswith("_") and p.name != "templates"
                and p.name != "static" and (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert siblings <= set(contract["forbidden_modules"]), siblings - set(contract["forbidden_modules"])


def test_collecting_and_importing_orders_does_not_load_torch():
    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'\n"
        "import django; django.setup()\n"
        "import shop_recs.models, shop_recs.ingest, shop_recs.importer, shop_recs.checks\n"
        "from django.core.management import call_command; call_command('check')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
