"""URLs of the host shop: README.md's ``host-urls`` snippet, executed verbatim, and the
shop's own cart view that takes the widget's "Add all to cart" form."""

from django.urls import include, path

from tests.hostshop.views import add_many
from tests.readme_snippets import snippet

exec(snippet("host-urls"))  # noqa: S102  # nosec B102 # our own README, by design

cart_patterns = ([path("add-many/", add_many, name="add-many")], "cart")
urlpatterns += [path("cart/", include(cart_patterns))]  # noqa: F821 (from the snippet)
