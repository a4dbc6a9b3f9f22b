"""``manage.py shop_recs_erase_user (--user-id ID | --username NAME | --customer-id CID |
--session-key KEY | --visitor-id VID) [--retire-runs]``: erase one shopper's data.

Deletes their interactions under the account and every pseudonym (see ``shop_recs.privacy``),
flags the training runs that had read them, and with ``--retire-runs`` takes a flagged serving
run off. Prints counts only.
"""

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from shop_recs import privacy

SELECTORS = ("user_id", "username", "customer_id", "session_key", "visitor_id")


class Command(BaseCommand):
    help = "Erase a shopper's interactions and pseudonyms; optionally retire runs trained on them."

    def add_arguments(self, parser):
        parser.add_argument("--user-id", help="Primary key of the user account.")
        parser.add_argument("--username", help="Username of the user account.")
        parser.add_argument("--customer-id", help="The shop's own customer number.")
        parser.add_argument("--session-key", help="A session key the shopper used.")
        parser.add_argument("--visitor-id", help="A stored visitor id (keyed hash).")
        parser.add_argument("--retire-runs", action="store_true",
                            help="Also take a serving run trained on erased data off serving.")

    def handle(self, *args, **options):
        if not any(options.get(name) for name in SELECTORS):
            raise CommandError("Give one of --user-id, --username, --customer-id, "
                               "--session-key or --visitor-id.")
        user = self._user(options)
        report = privacy.erase_user(user=user, customer_id=options.get("customer_id"),
                                    session_key=options.get("session_key"),
                                    visitor_id=options.get("visitor_id"))
        self.stdout.write(f"Erased {report.interactions} interactions ({report.purchases} "
                          f"purchases) under {report.pseudonyms} pseudonym(s).")
        flagged = ", ".join(map(str, report.runs_flagged)) or "none"
        self.stdout.write(f"Training runs flagged as trained on erased data: {flagged}.")
        if options["retire_runs"]:
            self.stdout.write(privacy.retire_runs_with_erased_data().message)

    @staticmethod
    def _user(options):
        model = get_user_model()
        if options.get("user_id") and options.get("username"):
            raise CommandError("Give --user-id or --username, not both.")
        try:
            if options.get("user_id"):
                pk = model._meta.pk.to_python(options["user_id"])
                return model._default_manager.get(pk=pk)
            if options.get("username"):
                return model._default_manager.get_by_natural_key(options["username"])
        except (model.DoesNotExist, ValidationError, ValueError, TypeError):
            raise CommandError("No such user.") from None
        return None
