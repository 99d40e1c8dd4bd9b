"""Runs, against the database the settings name (PostgreSQL after a cutover), what the ledger app does with its
data: typed filters, aggregates, unique enforcement, generated fields, sessions and authentication. Exits non-zero
with the failed check's message."""
import datetime
from decimal import Decimal

from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError, transaction
from django.db.models import Sum

from ledger.models import Account, Entry

UTC = datetime.timezone.utc


def check(condition, what):
    if not condition:
        raise CommandError(f"ledger_check failed: {what}")


class Command(BaseCommand):
    help = "check that the ledger works on this database"

    def handle(self, *args, **options):
        self.typed_values()
        self.typed_filters()
        self.new_rows()
        self.unique_number()
        self.sessions_and_users()
        self.stdout.write("ledger_check: all checks passed")

    def typed_values(self):
        account = Account.objects.exclude(wakes=None).exclude(birthday=None).first()
        check(account is not None, "an account with a birthday and a wake-up time")
        check(isinstance(account.opened, datetime.datetime) and account.opened.tzinfo is not None, "opened is an aware datetime")
        check(isinstance(account.birthday, datetime.date), "birthday is a date")
        check(isinstance(account.wakes, datetime.time), "wakes is a time")
        check(isinstance(account.active, bool), "active is a bool")
        check(isinstance(account.balance, Decimal), "balance is a Decimal")
        check(isinstance(account.rate, float), "rate is a float")
        entry = Entry.objects.first()
        check(isinstance(entry.booked, datetime.datetime), "booked is a datetime")

    def typed_filters(self):
        entries = list(Entry.objects.all())
        check(len(entries) > 0, "entries were copied")
        cutoff = datetime.datetime(2024, 1, 1, tzinfo=UTC)
        check(Entry.objects.filter(booked__gte=cutoff).count() == sum(e.booked >= cutoff for e in entries), "datetime filter")
        check(Entry.objects.filter(day__year=2024).count() == sum(e.day.year == 2024 for e in entries), "date __year filter")
        check(Entry.objects.filter(booked__date__lt=datetime.date(2023, 6, 1)).count()
              == sum(e.booked.date() < datetime.date(2023, 6, 1) for e in entries), "datetime __date filter")
        check(Entry.objects.filter(cleared=True).count() == sum(e.cleared for e in entries), "boolean filter")
        check(Entry.objects.filter(amount__gt=Decimal("20.00")).count() == sum(e.amount > Decimal("20.00") for e in entries),
              "decimal filter")
        total = Entry.objects.aggregate(total=Sum("amount"))["total"]
        check(isinstance(total, Decimal) and total == sum(e.amount for e in entries), "decimal sum")
        accounts = list(Account.objects.all())
        morning = datetime.time(6, 5)
        check(Account.objects.filter(wakes__lt=morning).count() == sum(a.wakes is not None and a.wakes < morning for a in accounts),
              "time filter")
        check(Account.objects.filter(opened__month=3).count() == sum(a.opened.month == 3 for a in accounts), "datetime __month filter")
        check(all(a.name_lower == a.name.lower() for a in accounts), "generated name_lower as synced")
        check(all(e.cents == e.amount * 100 for e in entries), "generated cents as synced")

    def new_rows(self):
        account = Account.objects.create(name="Opened After Cutover", balance=Decimal("5.50"), rate=0.25, number="NEW-1")
        account.refresh_from_db()
        check(account.name_lower == "opened after cutover", "PostgreSQL computes the generated name_lower")
        entry = Entry.objects.create(account=account, amount=Decimal("7.25"), booked=datetime.datetime.now(UTC),
                                     day=datetime.date.today())
        entry.refresh_from_db()
        check(entry.cents == Decimal("725.00"), f"PostgreSQL computes the generated cents (got {entry.cents!r})")

    def unique_number(self):
        taken = Account.objects.exclude(number=None).values_list("number", flat=True).first()
        check(taken is not None, "accounts with numbers were copied")
        try:
            with transaction.atomic():
                Account.objects.create(name="Duplicate", number=taken)
        except IntegrityError:
            return
        raise CommandError(f"ledger_check failed: a second account numbered {taken!r} was accepted")

    def sessions_and_users(self):
        check(authenticate(username="ledger1", password="secret") is not None, "a user made on SQLite logs in")
        check(authenticate(username="ledger1", password="wrong") is None, "a wrong password is refused")
        User.objects.create_user("after-cutover", "after@example.com", "secret")
        check(authenticate(username="after-cutover", password="secret") is not None, "a new user logs in")
        session = SessionStore()
        session["after"] = True
        session.create()
        check(SessionStore(session_key=session.session_key).get("after") is True, "a new session loads")
        call_command("clearsessions")
