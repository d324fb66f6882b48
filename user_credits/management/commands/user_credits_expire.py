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
from django.utils.translation import gettext

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
        raise ValueError(
            gettext("%(value)r is not a duration such as 90m, 12h, 7d or 2w") % {"value": text}
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def threshold(text):
    group, sep, minimum = text.partition("=")
    if not sep or not group or not minimum.isdigit():
        raise ValueError(gettext("%(value)r is not GROUP=MIN (e.g. calls=10)") % {"value": text})
    return group, int(minimum)


def positive(text):
    if not text.isdigit() or int(text) < 1:
        raise ValueError(gettext("%(value)r is not a positive integer") % {"value": text})
    return int(text)


def to_second(moment):
    """``moment`` in the current time zone, rounded to the second."""
    return (timezone.localtime(moment) + timedelta(microseconds=500_000)).replace(microsecond=0)


def listing(names, total=None):
    total = len(names) if total is None else total
    shown = ", ".join(names[:LISTED])
    if total > LISTED:
        shown += gettext(" … (%(count)s more)") % {"count": total - LISTED}
    return shown


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
            stream.write(gettext("%(count)s due lot(s) to expire.") % {"count": f"{total:,}"})

    def __call__(self, report):
        done = min(report.expired_lots, self.total)
        if done == self.done:  # a batch of holds, orders or warnings
            return
        self.done = done
        if self.tty:
            filled = self.WIDTH * done // self.total
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.stream.write(
                f"\r[{bar}] "
                + gettext("%(done)s/%(total)s lots %(percent)s%%")
                % {
                    "done": f"{done:,}",
                    "total": f"{self.total:,}",
                    "percent": 100 * done // self.total,
                },
                ending="",
            )
            self.stream.flush()
            self.drawn = True
        elif 10 * done // self.total > self.tenths:
            self.tenths = 10 * done // self.total
            self.stream.write(
                gettext("%(done)s/%(total)s lots expired (%(percent)s%%).")
                % {"done": f"{done:,}", "total": f"{self.total:,}", "percent": 10 * self.tenths}
            )

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
            raise CommandError(gettext("Give --holder or --user, not both."), returncode=USAGE)
        if user is None:
            return None if holder is None else self.find(holder, "--holder")
        if not holder_is_user():
            raise CommandError(
                gettext(
                    "--user names a user, but holders are %(model)s "
                    "(USER_CREDITS_HOLDER_MODEL): use --holder."
                )
                % {"model": get_holder_model()._meta.label},
                returncode=USAGE,
            )
        self.stderr.write(gettext("--user is deprecated: use --holder (the same value)."))
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
                gettext("%(option)s %(value)s: no %(noun)s has this primary key.")
                % {"option": option, "value": value, "noun": Holder._meta.verbose_name},
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
            if names:
                known = gettext("%(nouns)s: %(names)s.") % {
                    "nouns": f"{noun.capitalize()}s",
                    "names": listing(names),
                }
            else:
                known = gettext("There are no %(nouns)s.") % {"nouns": f"{noun}s"}
        else:
            close = list(
                users.filter(**{f"{field}__icontains": value})
                .order_by(field)
                .values_list(field, flat=True)[:LISTED]
            )
            args = {"total": f"{total:,}", "nouns": f"{noun}s", "field": field, "value": value}
            if close:
                known = gettext(
                    "%(total)s %(nouns)s; %(field)ss containing %(value)r: %(names)s."
                ) % {
                    **args,
                    "names": listing(close),
                }
            else:
                known = gettext("%(total)s %(nouns)s; no %(field)s contains %(value)r.") % args
        raise CommandError(
            gettext(
                "%(option)s %(value)s: no %(noun)s has this primary key or %(field)s. %(known)s"
            )
            % {"option": option, "value": value, "noun": noun, "field": field, "known": known},
            returncode=USAGE,
        )

    def check_groups(self, low):
        keys = {group for group, _ in low}
        known = set(OfferGroup.objects.filter(key__in=keys).values_list("key", flat=True))
        unknown = sorted(keys - known)
        if unknown:
            names = list(OfferGroup.objects.order_by("key").values_list("key", flat=True))
            if names:
                existing = gettext("Offer groups: %(names)s.") % {"names": listing(names)}
            else:
                existing = gettext("There are no offer groups yet.")
            raise CommandError(
                gettext("--low: unknown offer group(s) %(keys)s; nothing was done. %(existing)s")
                % {"keys": ", ".join(unknown), "existing": existing},
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
        counts = {
            "lots": report.expired_lots,
            "tokens": report.expired_tokens,
            "orders": report.expired_orders,
        }
        if report.dry_run:
            done = gettext(
                "Would expire %(lots)s lot(s), %(tokens)s token(s); %(orders)s order(s) ended."
            )
        else:
            done = gettext(
                "Expired %(lots)s lot(s), %(tokens)s token(s); %(orders)s order(s) ended."
            )
        self.stdout.write(done % counts)
        self.stdout.write(
            gettext("Warnings: %(expiring)s expiring lot(s), %(low)s low balance(s).")
            % {"expiring": report.expiring_lots, "low": report.low_accounts}
        )
        for item in expiring:
            self.stdout.write(
                gettext(
                    "  expiring: holder %(holder)s %(offer_group)s: %(remaining)s token(s) of lot "
                    "%(lot)s on %(when)s"
                )
                % {**item, "when": item["expires"].replace("T", " ")}
            )
        for item in low:
            self.stdout.write(
                gettext(
                    "  low: holder %(holder)s %(offer_group)s: %(balance)s token(s), "
                    "minimum %(minimum)s"
                )
                % item
            )
