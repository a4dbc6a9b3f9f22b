"""shop_recs: "frequently bought together" recommendations and bundles for Django shops."""

__version__ = "0.1.0"
