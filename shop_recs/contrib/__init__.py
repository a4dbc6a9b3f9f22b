"""Integrations of shop_recs with shop frameworks (optional apps; core never imports them)."""
