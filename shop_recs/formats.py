"""How shop_recs writes amounts of money, the same for shoppers and for staff.

Usage::

    from shop_recs.formats import money
    money(Decimal("1.625"), "GBP")   # "£1.63"
    money(3, "SEK")                  # "3.00 SEK"
    money(None, "GBP")               # "—"

The storefront widgets (``shop_recs`` template tags), the demo shop's ``money`` filter
and the admin's bundle screens all call :func:`money`, so a price reads the same on the
product page, in the cart and in the review queue.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from shop_recs.conf import recs_settings

CURRENCY_SYMBOLS = {"GBP": "£", "USD": "$", "EUR": "€", "JPY": "¥"}
# ISO 4217 minor units where they are not 2 (a yen price has no pennies).
DECIMALS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0}
MISSING = "—"


def money(amount, currency=None, missing=MISSING):
    """``amount`` rounded half up to the currency's minor unit, with its symbol or code.

    Known symbols go in front (``£1,234.50``, ``-£2.00``); other currencies get their
    code after the number (``3.00 SEK``). ``currency`` defaults to
    ``SHOP_RECS["DEFAULT_CURRENCY"]``. An unknown or non-numeric amount gives ``missing``.
    """
    if amount is None or amount == "":
        return missing
    try:
        amount = Decimal(str(amount).strip())
    except (InvalidOperation, TypeError, ValueError):
        return missing
    if not amount.is_finite():
        return missing
    code = str(currency or recs_settings.DEFAULT_CURRENCY).strip().upper()
    places = DECIMALS.get(code, 2)
    amount = amount.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    number = f"{abs(amount):,.{places}f}"
    symbol = CURRENCY_SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code}"
