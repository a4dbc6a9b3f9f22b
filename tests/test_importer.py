"""The order import command: counts, idempotency, crash-and-resume, bad files."""

from decimal import Decimal
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from shop_recs import importer
from shop_recs.ingest import pseudonymise
from shop_recs.ml import orders
from shop_recs.models import Interaction, Product

pytestmark = pytest.mark.django_db

GENERIC = [
    "order_id,product_id,timestamp,customer_id,quantity,unit_price,product_name,category",
    "o1,SKU-A,2024-03-01T10:00:00Z,c1,1,10.00,Teapot,kitchen",
    "o1,SKU-B,2024-03-01T10:00:00Z,c1,2,3.50,Tea cosy,kitchen",
    "o2,SKU-A,2024-03-02T11:00:00Z,,1,12.00,Teapot (large),kitchen",
    "o2,SKU-C,2024-03-02T11:00:00Z,,1,1.25,Tea towel,linen",
]


def run(*args):
    out = mock.Mock()
    lines = []
    out.write = lambda text, *a, **k: lines.append(text)
    call_command("shop_recs_import_orders", *map(str, args), stdout=out, stderr=mock.Mock())
    return "\n".join(lines)


def test_import_creates_products_and_purchases(write_csv):
    output = run(write_csv(GENERIC), "--format", "generic")
    assert "Imported 4 purchase lines in 2 orders" in output
    assert Interaction.objects.purchases().count() == 4
    teapot = Product.objects.get(sku="SKU-A")
    # The newest line gives the name and price.
    assert teapot.name == "Teapot (large)" and teapot.price == Decimal("12.00")
    assert Product.objects.get(sku="SKU-C").category == "linen"
    line = Interaction.objects.get(order_id="o1", product__sku="SKU-B")
    assert line.quantity == 2 and line.unit_price == Decimal("3.5")
    assert line.visitor_id == pseudonymise("customer", "c1") != "c1"
    assert Interaction.objects.get(order_id="o2", product=teapot).visitor_id == ""


def test_reimporting_the_same_file_adds_nothing(write_csv):
    path = write_csv(GENERIC, "orders.csv.gz")
    run(path)
    output = run(path)
    assert "Imported 0 purchase lines" in output and "4 already imported" in output
    assert Interaction.objects.count() == 4 and Product.objects.count() == 3


def test_a_crash_midway_resumes_without_duplicates(write_csv):
    path = write_csv(GENERIC)
    real_write = importer._Importer.write
    calls = []

    def crash_on_second_chunk(self, chunk):
        calls.append(len(chunk))
        if len(calls) == 2:
            real_write(self, chunk.iloc[:1])
            raise RuntimeError("worker killed")
        return real_write(self, chunk)

    with mock.patch.object(importer._Importer, "write", crash_on_second_chunk):
        with pytest.raises(RuntimeError):
            run(path, "--chunk-size", "2")
    # The first chunk was committed; the half-written second one rolled back.
    assert Interaction.objects.count() == 2
    output = run(path, "--chunk-size", "2")
    assert "Imported 2 purchase lines" in output and "2 already imported" in output
    assert Interaction.objects.count() == 4
    assert Interaction.objects.values("line_key").distinct().count() == 4


def test_missing_columns_fail_at_once_and_store_nothing(write_csv):
    run(write_csv(GENERIC, "good.csv"))
    bad = write_csv(["order_id,sku,when", "1,2,3"], "bad.csv")
    with pytest.raises(CommandError, match="product_id, timestamp"):
        run(write_csv(GENERIC, "more.csv"), bad)
    assert Interaction.objects.count() == 4


def test_bad_lines_are_skipped_and_reported(write_csv):
    lines = GENERIC + [f"o3,SKU-D,yesterday-{n},,1,1.00,Mug,kitchen" for n in range(25)]
    output = run(write_csv(lines))
    assert "bad_timestamp" in output and "25" in output
    assert output.count(": bad_timestamp") == 20  # first 20 shown
    assert "orders.csv:6: bad_timestamp" in output
    assert Interaction.objects.count() == 4


def test_online_retail_cleaning_counts_are_printed(write_csv):
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    output = run(write_csv([
        header,
        "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850,UK",
        "C536379,85123A,WHITE HANGING HEART,-1,2010-12-01 09:41:00,2.55,14527,UK",
        "536370,POST,POSTAGE,3,2010-12-01 08:45:00,18.0,12583,France",
    ]), "--format", "online_retail")
    assert "cancellation" in output and "non_product_code" in output
    assert "lines/s" in output
    assert list(Product.objects.values_list("sku", flat=True)) == ["85123A"]


def test_html_in_product_names_is_stored_as_text(write_csv):
    run(write_csv(["order_id,product_id,timestamp,product_name",
                   'o1,X1,2024-01-01T00:00:00,"<script>alert(1)</script> Mug"']))
    assert Product.objects.get(sku="X1").name == "<script>alert(1)</script> Mug"


def test_command_rejects_nonsense_arguments(write_csv, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        run(tmp_path / "nope.csv")
    with pytest.raises(CommandError, match="chunk-size"):
        run(write_csv(GENERIC), "--chunk-size", "0")


def test_extra_non_product_codes_from_settings_are_dropped(write_csv, settings):
    settings.SHOP_RECS = {**settings.SHOP_RECS, "NON_PRODUCT_CODES": ["SKU-C"]}
    output = run(write_csv(GENERIC))
    assert "non_product_code" in output
    assert not Product.objects.filter(sku="SKU-C").exists()
    assert Interaction.objects.count() == 3


def test_codes_differing_only_in_case_are_one_product(write_csv):
    """The UCI file writes 85123A and 85123a for one product (issue #16)."""
    output = run(write_csv([
        "order_id,product_id,timestamp,quantity,unit_price,product_name",
        "o1,85123A,2024-03-01T10:00:00Z,1,2.55,WHITE HANGING HEART T-LIGHT HOLDER",
        "o2,85123a,2024-03-02T10:00:00Z,2,2.55,WHITE HANGING HEART T-LIGHT HOLDER",
        "o2,22423,2024-03-02T10:00:00Z,1,12.75,REGENCY CAKESTAND 3 TIER",
    ]))
    assert list(Product.objects.filter(sku__iexact="85123a").values_list("sku", flat=True)) \
        == ["85123A"]
    assert Interaction.objects.filter(product__sku="85123A").count() == 2
    assert "1 lines wrote their product code in lower case" in output


def test_own_catalogue_can_be_left_untouched(write_csv):
    Product.objects.create(sku="SKU-A", name="Our teapot", price=Decimal("9.00"))
    output = run(write_csv(GENERIC), "--no-create-products", "--no-update-products")
    teapot = Product.objects.get(sku="SKU-A")
    assert teapot.name == "Our teapot" and teapot.price == Decimal("9.00")
    assert list(Product.objects.values_list("sku", flat=True)) == ["SKU-A"]
    assert Interaction.objects.purchases().count() == 2
    assert "2 product codes are not in the catalogue; their 2 lines were skipped" in output
    assert "unknown_product" in output


def test_the_readme_import_commands_run(write_csv):
    """README.md's ``import`` snippet, each command with files of the format it names."""
    import shlex

    from tests.readme_snippets import snippet

    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    files = {
        "orders.csv.gz": write_csv(GENERIC, "orders.csv.gz"),
        "2010.csv.gz": write_csv([header, "536365,85123A,WHITE HANGING HEART,6,"
                                  "2010-12-01 08:26:00,2.55,17850,UK"], "2010.csv.gz"),
        "2011.csv.gz": write_csv([header, "581587,22138,BAKING SET,3,2011-12-09 12:50:00,"
                                  "4.95,12680,France"], "2011.csv.gz"),
    }
    commands = [shlex.split(line.split("#")[0]) for line in snippet("import").splitlines()
                if line.strip()]
    assert len(commands) == 3
    for command in commands:
        assert command[:3] == ["python", "manage.py", "shop_recs_import_orders"]
        output = run(*(files.get(arg, arg) for arg in command[3:]))
        assert "Import finished." in output
    assert set(Product.objects.values_list("sku", flat=True)) >= {"85123A", "22138", "SKU-A"}


def test_repeated_lines_are_counted_from_the_database_not_a_set_in_memory(write_csv):
    """Issue 15: the reader keeps no set of every line (flat memory at 20M lines); a line
    read twice in one file, across chunks, or in two files is written once and counted as
    the in-memory set counted it."""
    head, *lines = GENERIC
    first = write_csv([head, *lines, lines[0], lines[3], lines[0]], "first.csv")
    second = write_csv([head, lines[1], "o9,SKU-D,2024-03-03T09:00:00Z,c2,1,2.00,Mug,kitchen"],
                       "second.csv")
    real = orders._drop_seen
    with mock.patch("shop_recs.ml.orders._drop_seen", wraps=real) as drop:
        result = importer.import_orders([first, second], "generic", chunk_size=2)
    assert all(call.args[1] is None for call in drop.call_args_list)  # no set of keys kept
    assert result.imported == 5 and Interaction.objects.count() == 5
    report = result.report
    assert report.skipped == {"duplicate_line": 3, "in_earlier_file": 1}
    assert report.kept == 5 and result.already_imported == 0
    again = importer.import_orders([first, second], "generic", chunk_size=2)
    # a re-import adds nothing; a line stored before this run counts as already imported
    # however often the files repeat it (the run keeps no set to tell copies apart)
    assert again.imported == 0 and Interaction.objects.count() == 5
    assert again.already_imported == 9


def test_the_order_count_comes_from_the_database_not_a_set_of_order_ids(write_csv):
    """Issue 15: no set of every order id in memory (5M orders at 20M lines). The count is the
    distinct orders this import wrote lines of: an order split across chunks counts once, a
    re-import counts none, and orders stored by other means are not counted."""
    head, *lines = GENERIC
    product = Product.objects.create(sku="LIVE", name="Live", price=Decimal("1.00"))
    Interaction.objects.create(product=product, kind=Interaction.Kind.PURCHASE, order_id="live-1",
                               timestamp=timezone.now())
    path = write_csv([head, *lines, "o3,SKU-D,2024-03-03T09:00:00Z,c2,1,2.00,Mug,kitchen"])
    result = importer.import_orders([path], "generic", chunk_size=2)  # o1 | o2 | o3 chunks
    assert isinstance(result.orders, int) and result.orders == 3
    again = importer.import_orders([path], "generic", chunk_size=2)
    assert again.orders == 0 and again.already_imported == 5


def test_codes_are_matched_without_scanning_the_catalogue_per_batch(write_csv):
    """Issue 15: UPPER(code) IN (...) cannot use an index, so a query per batch of codes
    scanned the catalogue (quadratic at 10^6 products). The catalogue's codes are read once;
    stored codes in any case still match, and a product the shop saves while the import runs
    is found (by an indexed lookup) instead of being created twice."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    Product.objects.create(sku="sku-a", name="Teapot", price=Decimal("9.00"))  # lower case
    head, *lines = GENERIC
    later = "o3,SKU-E,2024-03-03T09:00:00Z,c2,1,2.00,Kettle,kitchen"

    def shop_saves_a_product(result):
        if result.report.read >= 2 and not Product.objects.filter(sku="SKU-E").exists():
            Product.objects.create(sku="SKU-E", name="Kettle", price=Decimal("2.00"))

    with CaptureQueriesContext(connection) as queries:
        result = importer.import_orders([write_csv([head, *lines, later])], "generic",
                                        chunk_size=2, progress=shop_saves_a_product)
    assert not [q["sql"] for q in queries if "UPPER(" in q["sql"].upper()]
    assert result.imported == 5 and result.products_created == 2  # SKU-B, SKU-C
    assert Product.objects.filter(sku__iexact="sku-a").count() == 1
    assert Product.objects.filter(sku="SKU-E").count() == 1
    assert Interaction.objects.filter(product__sku="sku-a").count() == 2
    assert Interaction.objects.get(order_id="o3").product.sku == "SKU-E"
    assert Product.objects.get(sku="sku-a").name == "Teapot (large)"  # the newest line's
