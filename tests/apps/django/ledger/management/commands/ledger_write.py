"""Writes like the ledger would at one stage: `manage.py ledger_write STAGE`, through the ORM, with the models as of
the newest applied migration. Inserts, updates and deletes; datetimes and times with and without microseconds."""
import datetime
from decimal import Decimal

from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from staged import StageCommand, models_as_migrated

UTC = datetime.timezone.utc


class Command(StageCommand):
    help = "write one stage of ledger data"

    def write(self, stage):
        (Account, Entry), newest = models_as_migrated("ledger", "Account", "Entry")
        numbered = newest >= "0002"
        user = User.objects.create_user(f"ledger{stage}", f"ledger{stage}@example.com", "secret")
        session = SessionStore()
        session["stage"] = stage
        session.create()
        for n in range(10):
            fields = {
                "name": f"Account {stage}-{n}",
                "opened": datetime.datetime(2024, 1 + n, 1 + stage, 8, n, 30, 123456 * (n % 2), tzinfo=UTC),
                "birthday": datetime.date(1990 + n, 1 + stage, 1 + n) if n % 3 else None,
                "wakes": datetime.time(6, n, 15, 500000 * (n % 2)) if n % 4 else None,
                "active": n % 2 == 0,
                "balance": Decimal("1000.25") * n + Decimal(stage),
                "rate": 0.1 * n + stage,
                "owner_id": user.id if n % 2 else None,
            }
            if numbered:
                fields["number"] = f"A-{stage}-{n}" if n % 5 else None
            account = Account.objects.create(**fields)
            for k in range(4):
                Entry.objects.create(
                    account=account,
                    amount=Decimal("12.34") * (k + 1) + Decimal(n),
                    booked=datetime.datetime(2023 + k % 2, 1 + n, 1 + k, 12, 0, 0, 250000 * k, tzinfo=UTC),
                    day=datetime.date(2023 + k % 2, 1 + n, 10 + k),
                    cleared=k % 2 == 1,
                    weight=None if k == 3 else 0.5 * k,
                )
        # Updates and deletes through the ORM, as the app does.
        Account.objects.filter(name__startswith=f"Account {stage}-", active=False).update(rate=1.5)
        Entry.objects.filter(account__name=f"Account {stage}-3").delete()
        Entry.objects.filter(account__name=f"Account {stage}-1", cleared=False).update(cleared=True)
