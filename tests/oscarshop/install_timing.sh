#!/usr/bin/env bash
# Time "pip install -> widget on an Oscar product page" following README.md literally:
# build the wheel, pip install it with the [oscar,redis] extras into a fresh virtualenv
# (downloads from PyPI; no torch), a Django project with Oscar's documented settings plus
# README's oscar-settings / oscar-urls / oscar-detail-template snippets, migrate, a 150
# product Oscar catalogue, the README's order import, and the product page. No training:
# the widget shows products bought together in the imported orders until a run publishes.
#   bash tests/oscarshop/install_timing.sh        (prints the seconds of each step)
set -euo pipefail
DATA="${SHOP_RECS_DATA_DIR:-$(dirname "$0")/../../../shared/data/online_retail}/online_retail_2010-12_2011-12.csv.gz"
DATA="$(realpath "$DATA")"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
W="${WORK:-$(mktemp -d /tmp/oscar_timing.XXXXXX)}"; mkdir -p "$W"; cd "$W"
stamp() { echo "$1 $(date +%s.%N)" >> "$W/times"; }
stamp start
# README "install": python -m build in a checkout (copy), then pip install the wheel.
mkdir src && cp -r "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/shop_recs" src/
(cd src && /usr/bin/python3.11 -m venv ../buildenv && ../buildenv/bin/pip install -q build && ../buildenv/bin/python -m build -q --wheel >/dev/null)
stamp built
/usr/bin/python3.11 -m venv venv
venv/bin/pip install -q "$(ls src/dist/*.whl)[oscar,redis]" sorl-thumbnail
stamp installed
venv/bin/django-admin startproject myshop .
# Oscar's own "Building your own shop" settings, then README's oscar-settings snippet.
venv/bin/python - "$REPO" <<'PY'
import re, sys
readme = open(sys.argv[1] + "/README.md").read()
snip = dict(re.findall(r"<!-- snippet: ([\w-]+) -->\s*```\w*\n(.*?)```", readme, re.S))
oscar = open(sys.argv[1] + "/tests/oscarshop/settings.py").read()
# The Oscar part of the test shop's settings is Oscar's documented set-up.
start = oscar.index("INSTALLED_APPS = [")
end = oscar.index("TMP = Path")
settings = open("myshop/settings.py").read()
settings = settings.replace("from pathlib import Path", "from pathlib import Path\nfrom oscar.defaults import *")
settings += "\n" + oscar[start:end].replace("BASE_DIR / \"templates\"", "BASE_DIR / \"templates\"") + "\n"
settings += "MEDIA_ROOT = BASE_DIR / 'media'\n" + snip["oscar-settings"]
open("myshop/settings.py", "w").write(settings)
urls = snip["oscar-urls"]
open("myshop/urls.py", "w").write(urls)
import os
os.makedirs("templates/oscar/catalogue", exist_ok=True)
open("templates/oscar/catalogue/detail.html", "w").write(snip["oscar-detail-template"])
PY
venv/bin/python manage.py migrate -v0
venv/bin/python manage.py check
stamp migrated
# The shop's own catalogue (what an Oscar shop already has): the slice's 150 top products.
venv/bin/python -c "import pandas as pd; pd.read_csv('$DATA', nrows=20000, dtype=str).to_csv('orders.csv', index=False)"
cat > catalogue.py <<'PY'
from decimal import Decimal
import pandas as pd
from oscar.core.loading import get_model
Product, ProductClass = get_model("catalogue", "Product"), get_model("catalogue", "ProductClass")
StockRecord, Partner = get_model("partner", "StockRecord"), get_model("partner", "Partner")
f = pd.read_csv("orders.csv", dtype=str)
f = f[~f.InvoiceNo.str.startswith("C") & f.StockCode.str[0].str.isdigit()]
top = f.groupby("StockCode").InvoiceNo.nunique().nlargest(150).index
last = f.drop_duplicates("StockCode", keep="last").set_index("StockCode")
pc = ProductClass.objects.create(name="Gifts", track_stock=True)
partner = Partner.objects.create(name="Warehouse")
for code in top:
    p = Product.objects.create(upc=code, title=last.loc[code].Description.strip().title(),
                               product_class=pc, structure="standalone")
    StockRecord.objects.create(product=p, partner=partner, partner_sku=code,
                               price=Decimal(last.loc[code].UnitPrice), num_in_stock=100)
print(top[0])
PY
venv/bin/python manage.py shell -c "exec(open('catalogue.py').read())" > top_code.txt
stamp catalogue
# README: import past orders (no training: the widget shows co-occurrence until a run).
venv/bin/python manage.py shop_recs_import_orders orders.csv --format online_retail | tail -4
stamp imported
venv/bin/python manage.py shell -c "
from django.test import Client
from oscar.core.loading import get_model
p = get_model('catalogue', 'Product').objects.get(upc=open('top_code.txt').read().split()[-1])
r = Client().get(p.get_absolute_url(), HTTP_HOST='localhost')
html = r.content.decode()
print(r.status_code, 'widget' if 'data-shop-recs-widget=\"fbt\"' in html else 'NO WIDGET', html.count('data-product-id='), 'items')
"
stamp page
venv/bin/python - <<'PY'
t = [l.split() for l in open("times")]
t = [(n, float(s)) for n, s in t]
for (a, x), (b, y) in zip(t, t[1:]):
    print(f"{b:10s} {y - x:7.1f} s")
print(f"{'total':10s} {t[-1][1] - t[0][1]:7.1f} s")
PY
