import json
import sys

from django.core.management.base import BaseCommand, CommandError

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
            raise CommandError("--batch-size must be a positive integer.", returncode=2)
        report = verify_ledger(account=account, batch_size=batch_size, progress=self._progress)
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), default=str, indent=2))
        else:
            for p in report.problems:
                where = f"account {p.account} ({p.holder}, {p.offer_group})"
                if p.entry is not None:
                    where += f", entry {p.entry}"
                self.stdout.write(f"{where}: {p.problem}: expected {p.expected}, found {p.found}")
            self.stdout.write(
                f"{report.accounts} account(s), {report.entries} entr(y/ies) verified, "
                f"{len(report.problems)} problem(s)."
            )
        if report.problems:
            raise CommandError(f"The ledger has {len(report.problems)} problem(s).")

    def _progress(self, done, total):
        # On stderr, so that --json output stays parseable: a line redrawn on a terminal, a
        # line per tenth of the work otherwise (cron mails, CI logs).
        if sys.stderr.isatty():
            end = "\n" if done == total else ""
            sys.stderr.write(f"\rverified {done}/{total} accounts{end}")
        elif done == total or done * 10 // total != (done - 1) * 10 // total:
            sys.stderr.write(f"verified {done}/{total} accounts\n")
