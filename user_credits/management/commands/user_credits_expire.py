"""``manage.py user_credits_expire``: the cron job that expires lots and sends the warnings.

Every argument is checked before any work: a typo in ``--low`` or ``--holder`` is an error
(exit 2) that lists what exists, and nothing is expired, rather than a run that skips part of
its work.

``--holder`` names a holder (``USER_CREDITS_HOLDER_MODEL``) by primary key, else by natural key
(a username with the default holder model). ``--user`` is its deprecated alias, kept for the
default holder model (holders are users); with a custom holder model it is a usage error.
"""

import json
import re
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from ...conf import app_settings
from ...exceptions import UserCreditsError
from ...holders import get_holder_model, holder_is_user
from ...models import CreditLot, LotStatus, OfferGroup
from ...services import expire_credits

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: At most this many names in an error message.
LISTED = 20
#: Exit code of a usage error (argparse's).
USAGE = 2


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


def positive(text):
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} is not a positive integer")
    return int(text)


def to_second(moment):
    """``moment`` in the current time zone, rounded to the second."""
    return (timezone.localtime(moment) + timedelta(microseconds=500_000)).replace(microsecond=0)


def listing(names, total=None):
    total = len(names) if total is None else total
    shown = ", ".join(names[:LISTED])
    return shown + (f" … ({total - LISTED} more)" if total > LISTED else "")


def natural_field(model):
    """The field that names a holder on the command line: the user model's ``USERNAME_FIELD``,
    else a unique ``slug`` field (the example's ``Workspace``), else ``None`` (primary keys)."""
    if model is get_user_model():
        return model.USERNAME_FIELD
    try:
        slug = model._meta.get_field("slug")
    except FieldDoesNotExist:
        return None
    return "slug" if slug.unique else None


class Progress:
    """Lots expired so far: a bar redrawn in place on a terminal, otherwise a line at each
    tenth of the due lots (cron mail and log files stay short)."""

    WIDTH = 30

    def __init__(self, stream, total):
        self.stream, self.total = stream, total
        self.tty = stream.isatty()
        self.done = self.tenths = 0
        self.drawn = False
        if not self.tty:
            stream.write(f"{total:,} due lot(s) to expire.")

    def __call__(self, report):
        done = min(report.expired_lots, self.total)
        if done == self.done:  # a batch of holds, orders or warnings
            return
        self.done = done
        if self.tty:
            filled = self.WIDTH * done // self.total
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.stream.write(
                f"\r[{bar}] {done:,}/{self.total:,} lots {100 * done // self.total}%", ending=""
            )
            self.stream.flush()
            self.drawn = True
        elif 10 * done // self.total > self.tenths:
            self.tenths = 10 * done // self.total
            self.stream.write(f"{done:,}/{self.total:,} lots expired ({10 * self.tenths}%).")

    def close(self):
        if self.drawn:
            self.stream.write("")


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
            help="Warn about accounts of offer group GROUP (its key) holding MIN tokens or "
            "fewer (repeatable).",
        )
        parser.add_argument(
            "--holder",
            metavar="HOLDER",
            help="Only this holder's lots and accounts: a primary key, else a natural key "
            "(a username when holders are users).",
        )
        parser.add_argument(
            "--user",
            metavar="USER",
            help="Deprecated alias of --holder, for holders that are users.",
        )
        parser.add_argument(
            "--batch-size", type=positive, metavar="N", help="Rows per transaction."
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args, **options):
        user = self.find_holder(options)
        low = self.check_groups(options["low"])
        batch_size = options["batch_size"] or app_settings.EXPIRE_BATCH_SIZE
        now = timezone.now()
        progress = None
        if options["verbosity"] >= 1:
            due = CreditLot.objects.filter(
                status=LotStatus.ACTIVE, remaining__gt=0, expires__lte=now
            )
            if user is not None:
                due = due.filter(account__holder=user)
            total = due.count()
            if total > batch_size:  # more than one batch: show how far it is
                progress = Progress(self.stderr, total)
        try:
            report = expire_credits(
                holder=user,
                now=now,
                warn_before=options["warn_before"],
                low=low,
                batch_size=batch_size,
                dry_run=options["dry_run"],
                collect=False,
                progress=progress,
            )
        except (UserCreditsError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if progress is not None:
                progress.close()
        self.report(report, as_json=options["json"])

    def find_holder(self, options):
        """The holder that ``--holder`` (or its deprecated alias ``--user``) names, else
        ``None`` (every holder)."""
        holder, user = options["holder"], options["user"]
        if holder is not None and user is not None:
            raise CommandError("Give --holder or --user, not both.", returncode=USAGE)
        if user is None:
            return None if holder is None else self.find(holder, "--holder")
        if not holder_is_user():
            raise CommandError(
                f"--user names a user, but holders are {get_holder_model()._meta.label} "
                "(USER_CREDITS_HOLDER_MODEL): use --holder.",
                returncode=USAGE,
            )
        self.stderr.write("--user is deprecated: use --holder (the same value).")
        return self.find(user, "--user")

    def find(self, value, option):
        """A holder by primary key, else by natural key (a username for users)."""
        Holder = get_holder_model()
        holders = Holder._default_manager
        try:
            return holders.get(pk=value)
        except (Holder.DoesNotExist, ValueError, ValidationError):
            pass
        field = natural_field(Holder)
        if field is None:
            raise CommandError(
                f"{option} {value}: no {Holder._meta.verbose_name} has this primary key.",
                returncode=USAGE,
            )
        try:
            return holders.get(**{field: value})
        except Holder.DoesNotExist:
            pass
        users = holders
        noun = "user" if holder_is_user() else Holder._meta.verbose_name
        total = users.count()
        if total <= LISTED:
            names = list(users.order_by(field).values_list(field, flat=True))
            known = (
                f"{noun.capitalize()}s: {listing(names)}." if names else f"There are no {noun}s."
            )
        else:
            close = list(
                users.filter(**{f"{field}__icontains": value})
                .order_by(field)
                .values_list(field, flat=True)[:LISTED]
            )
            known = f"{total:,} {noun}s; " + (
                f"{field}s containing {value!r}: {listing(close)}."
                if close
                else f"no {field} contains {value!r}."
            )
        raise CommandError(
            f"{option} {value}: no {noun} has this primary key or {field}. {known}",
            returncode=USAGE,
        )

    def check_groups(self, low):
        keys = {group for group, _ in low}
        known = set(OfferGroup.objects.filter(key__in=keys).values_list("key", flat=True))
        unknown = sorted(keys - known)
        if unknown:
            names = list(OfferGroup.objects.order_by("key").values_list("key", flat=True))
            existing = (
                f"Offer groups: {listing(names)}." if names else "There are no offer groups yet."
            )
            raise CommandError(
                f"--low: unknown offer group(s) {', '.join(unknown)}; nothing was done. {existing}",
                returncode=USAGE,
            )
        return low

    def report(self, report, *, as_json):
        Holder = get_holder_model()
        user_ids = {lot.account.holder_id for lot in report.expiring} | {
            account.holder_id for account in report.low
        }
        field = natural_field(Holder) or "pk"
        names = dict(Holder._default_manager.filter(pk__in=user_ids).values_list("pk", field))
        expiring = [
            {
                "holder": names.get(lot.account.holder_id),
                "holder_id": lot.account.holder_id,
                # The keys before holders (the same values), kept for existing readers.
                "user": names.get(lot.account.holder_id),
                "user_id": lot.account.holder_id,
                "offer_group": lot.account.offer_group.key,
                "lot": lot.pk,
                "remaining": lot.remaining,
                "expires": to_second(lot.expires).isoformat(),
            }
            for lot in report.expiring
        ]
        low = [
            {
                "holder": names.get(account.holder_id),
                "holder_id": account.holder_id,
                "user": names.get(account.holder_id),
                "user_id": account.holder_id,
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
        if as_json:
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
                "  expiring: holder {holder} {offer_group}: {remaining} token(s) of lot {lot} "
                "on {when}".format(**item, when=item["expires"].replace("T", " "))
            )
        for item in low:
            self.stdout.write(
                "  low: holder {holder} {offer_group}: {balance} token(s), "
                "minimum {minimum}".format(**item)
            )
