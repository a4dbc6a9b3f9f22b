"""Forms of the demo storefront: add to cart, change a cart line, check out.

``AddToCartForm`` is also the target of the recommendation widget's "Add all to
cart" button: it takes ``product`` repeated, an optional ``quantity`` (1 when
absent, applied to each product) and the optional attribution fields ``widget``,
``bundle`` and ``run``.
"""

from django import forms
from django.db import connections, models
from django.utils.translation import gettext_lazy as _

from shop_demo.cart import MAX_QUANTITY
from shop_recs.products import get_adapter, get_product_model

# Most products one POST may add (an "Add all to cart" bundle is a handful).
MAX_PRODUCTS_PER_ADD = 20
MAX_REF = 2**63 - 1


def purchasable_products():
    """Active, in-stock products that have a price."""
    adapter = get_adapter()
    queryset = get_product_model()._default_manager.filter(adapter.available_q())
    if adapter.fields["price"] and "__" not in adapter.fields["price"]:
        queryset = queryset.exclude(**{f"{adapter.fields['price']}__isnull": True})
    return queryset


class ProductsField(forms.ModelMultipleChoiceField):
    """Products chosen by primary key, one query for all of them.

    An integer key the database cannot hold is rejected as an unknown product
    (``pk__in`` with such a value makes SQLite raise ``OverflowError``).
    """

    def clean(self, value):
        pk_field = self.queryset.model._meta.pk
        if isinstance(pk_field, models.IntegerField):
            ops = connections[self.queryset.db].ops
            low, high = ops.integer_field_range(pk_field.get_internal_type())
            for raw in value or ():
                try:
                    number = int(str(raw).strip())
                except ValueError:
                    continue  # Reported by the parent class as an invalid value.
                if (low is not None and number < low) or (high is not None and number > high):
                    raise forms.ValidationError(
                        self.error_messages["invalid_choice"], code="invalid_choice",
                        params={"value": raw},
                    )
        return super().clean(value)


class AttributionForm(forms.Form):
    """Which widget, bundle and training run led the shopper here, if any."""

    widget = forms.CharField(label=_("widget"), max_length=40, required=False)
    bundle = forms.IntegerField(label=_("bundle"), min_value=1, max_value=MAX_REF,
                                required=False)
    run = forms.IntegerField(label=_("training run"), min_value=1, max_value=MAX_REF,
                             required=False)

    def attribution(self):
        """Keyword arguments for ``record_event`` and ``Cart.add`` (empty when invalid)."""
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        return {"widget": data["widget"], "bundle_ref": data["bundle"],
                "run_ref": data["run"]}


class AddToCartForm(AttributionForm):
    product = ProductsField(
        label=_("product"),
        queryset=None,
        widget=forms.MultipleHiddenInput,
        error_messages={
            "invalid_choice": _("That product is not available."),
            "invalid_pk_value": _("That product is not available."),
        },
    )
    quantity = forms.IntegerField(
        label=_("Quantity"), min_value=1, max_value=MAX_QUANTITY, initial=1, required=False,
    )

    field_order = ["product", "quantity"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["product"].queryset = purchasable_products()

    def clean_product(self):
        products = self.cleaned_data["product"]
        if len(products) > MAX_PRODUCTS_PER_ADD:
            raise forms.ValidationError(
                _("At most %(limit)d products can be added at once."),
                code="too_many", params={"limit": MAX_PRODUCTS_PER_ADD},
            )
        return products

    def clean_quantity(self):
        return self.cleaned_data["quantity"] or 1


class CartLineForm(forms.Form):
    """Change (``quantity``, 0 removes) or remove one line of the cart."""

    product = forms.CharField(max_length=64)
    quantity = forms.IntegerField(label=_("Quantity"), min_value=0, max_value=MAX_QUANTITY,
                                  required=False)


class CheckoutForm(forms.Form):
    """No payment in the demo: a name and an email address, both optional."""

    name = forms.CharField(label=_("Name"), max_length=100, required=False,
                           widget=forms.TextInput(attrs={"autocomplete": "name"}))
    email = forms.EmailField(label=_("Email"), required=False,
                             widget=forms.EmailInput(attrs={"autocomplete": "email"}))
