"""``StrategyMiddleware``: price the widgets with the request's Oscar strategy.

Add ``"shop_recs.contrib.oscar.middleware.StrategyMiddleware"`` to MIDDLEWARE *after*
``"oscar.apps.basket.middleware.BasketMiddleware"`` when your strategy depends on the
request (the visitor's country, a trade customer's prices), and when you run experiments on
bundle discounts (the offer then gives an anonymous visitor their arm's discount; without
it, only a logged-in basket owner's arm is known). Without it the adapter uses
``Selector().strategy()``, Oscar's default for everyone.
"""

from shop_recs.contrib.oscar.adapter import current_request, current_strategy


class StrategyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = current_strategy.set(getattr(request, "strategy", None))
        # The bundle offer asks shop_recs which discount this visitor's arm gets.
        visitor = current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            current_request.reset(visitor)
            current_strategy.reset(token)
