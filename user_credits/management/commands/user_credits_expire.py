import json
import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from ...exceptions import UserCreditsError
from ...services import expire_credits

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text):
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 90m, 12h, 7d or 2w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def threshold(text):
    group, sep, minimum = text.partition("=")
    if not sep or not group or not minimum.isdigit():
        raise ValueError(f"{text!r} is not GROUP=MIN (e.g. calls=10)")
    return group, int(minimum)


class Command(BaseCommand):
    help = (
        "Expire unused tokens whose lots are past their expiry, then warn once about lots "
        "expiring soon and accounts at or under a minimum. Safe to run from cron at any rate."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Report, write nothing.")
        parser.add_argument(
            "--warn-before",
            type=duration,
            metavar="DURATION",
            help="Warn about lots expiring within this window (e.g. 7d, 12h).",
        )
        parser.add_argument(
            "--low",
            type=threshold,
            action="append",
            default=[],
            metavar="GROUP=MIN",
            help="Warn about accounts of GROUP holding MIN tokens or fewer (repeatable).",
        )
        parser.add_argument("--user", help="Only this user's lots (primary key).")
        parser.add_argument("--batch-size", type=int, help="Rows per transaction.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, **options):
        try:
            report = expire_credits(
                user=options["user"],
                warn_before=options["warn_before"],
                low=options["low"],
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                collect=False,
            )
        except (UserCreditsError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        expiring = [
            {
                "user": lot.account.user_id,
                "offer_group": lot.account.offer_group.key,
                "lot": lot.pk,
                "remaining": lot.remaining,
                "expires": lot.expires.isoformat(),
            }
            for lot in report.expiring
        ]
        low = [
            {
                "user": account.user_id,
                "offer_group": account.offer_group.key,
                "balance": account.balance,
                "minimum": account.low_warned_threshold,
            }
            for account in report.low
        ]
        summary = {
            "dry_run": report.dry_run,
            "expired_lots": report.expired_lots,
            "expired_tokens": report.expired_tokens,
            "expired_orders": report.expired_orders,
            "expiring_warnings": report.expiring_lots,
            "low_balance_warnings": report.low_accounts,
            "expiring": expiring,
            "low": low,
        }
        if options["json"]:
            self.stdout.write(json.dumps(summary))
            return
        prefix = "Would expire" if report.dry_run else "Expired"
        self.stdout.write(
            f"{prefix} {report.expired_lots} lot(s), {report.expired_tokens} token(s); "
            f"{report.expired_orders} order(s) ended."
        )
        self.stdout.write(
            f"Warnings: {report.expiring_lots} expiring lot(s), "
            f"{report.low_accounts} low balance(s)."
        )
        for item in expiring:
            self.stdout.write(
                "  expiring: user {user} {offer_group}: {remaining} token(s) of lot {lot} "
                "on {expires}".format(**item)
            )
        for item in low:
            self.stdout.write(
                "  low: user {user} {offer_group}: {balance} token(s), minimum {minimum}".format(
                    **item
                )
            )
