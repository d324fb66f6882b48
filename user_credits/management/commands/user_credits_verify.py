import json
import sys

from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext

from ...services import verify_ledger


class Command(BaseCommand):
    help = (
        "Verify the ledger: recompute every account's hash chain, balance, overdraft, lot "
        "remainders and held tokens. Exits 1 on any disagreement, listing each one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--account", type=int, metavar="PK", help="Verify one account.")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print the report as JSON."
        )
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Accounts read per batch (default 500)."
        )

    def handle(self, *args, account=None, as_json=False, batch_size=500, **options):
        if batch_size < 1:
            raise CommandError(gettext("--batch-size must be a positive integer."), returncode=2)
        report = verify_ledger(account=account, batch_size=batch_size, progress=self._progress)
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), default=str, indent=2))
        else:
            for p in report.problems:
                where = gettext("account %(account)s (%(holder)s, %(group)s)") % {
                    "account": p.account,
                    "holder": p.holder,
                    "group": p.offer_group,
                }
                if p.entry is not None:
                    where += gettext(", entry %(entry)s") % {"entry": p.entry}
                self.stdout.write(
                    gettext("%(where)s: %(problem)s: expected %(expected)s, found %(found)s")
                    % {
                        "where": where,
                        "problem": p.problem,
                        "expected": p.expected,
                        "found": p.found,
                    }
                )
            self.stdout.write(
                gettext(
                    "%(accounts)s account(s), %(entries)s entr(y/ies) verified, "
                    "%(problems)s problem(s)."
                )
                % {
                    "accounts": report.accounts,
                    "entries": report.entries,
                    "problems": len(report.problems),
                }
            )
        if report.problems:
            raise CommandError(
                gettext("The ledger has %(count)s problem(s).") % {"count": len(report.problems)}
            )

    def _progress(self, done, total):
        # On stderr, so that --json output stays parseable: a line redrawn on a terminal, a
        # line per tenth of the work otherwise (cron mails, CI logs).
        if sys.stderr.isatty():
            end = "\n" if done == total else ""
            sys.stderr.write(
                "\r"
                + gettext("verified %(done)s/%(total)s accounts") % {"done": done, "total": total}
                + end
            )
        elif done == total or done * 10 // total != (done - 1) * 10 // total:
            sys.stderr.write(
                gettext("verified %(done)s/%(total)s accounts") % {"done": done, "total": total}
                + "\n"
            )
