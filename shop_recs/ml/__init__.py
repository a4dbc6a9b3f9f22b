"""Pure PyTorch + numpy learning core of shop_recs; imports no Django and no other shop_recs module."""
