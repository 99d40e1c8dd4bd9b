"""Writes like the shop would at each stage of its migrations: `manage.py shop_write STAGE`.

Every stage inserts, updates and deletes through the ORM, with values that only the schema of that stage allows
(NULL nicknames once nullable, duplicate emails once not unique), so a stale constraint in PostgreSQL shows.
"""
import datetime
from decimal import Decimal

from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.db.migrations.recorder import MigrationRecorder
from staged import StageCommand, models_as_migrated


def applied(migration):
    return MigrationRecorder.Migration.objects.filter(app="shop", name__startswith=migration).exists()


class Command(StageCommand):
    help = "write one stage of shop data"

    def write(self, stage):
        (Customer, Order), _ = models_as_migrated("shop", "Customer", "Order")
        User.objects.create_user(f"user{stage}", f"user{stage}@example.com", "secret")
        session = SessionStore()
        session["stage"] = stage
        session.create()
        nullable = applied("0002") and not applied("0005")
        unique_email = not applied("0004")
        for n in range(20):
            email = f"c{stage}-{n}@example.com" if unique_email or n % 2 else "shared@example.com"
            kwargs = {"name": f"customer {stage}-{n}", "email": email}
            if nullable and n % 3 == 0:
                kwargs["nickname"] = None
            elif n % 3 == 1:
                kwargs["nickname"] = f"nick{n}"
            customer = Customer.objects.create(**kwargs)
            for k in range(3):
                fields = {
                    "customer": customer,
                    "total": Decimal("12.34") * (k + 1) + Decimal(n),
                    "placed": datetime.date(2024, 1 + k, 1 + n),
                    "paid": k % 2 == 0,
                }
                if applied("0003"):
                    fields["note"] = None if k == 0 else f"note {k} — ünïcode"
                Order.objects.create(**fields)
        Customer.objects.filter(name__endswith="-3").update(name="renamed")
        Order.objects.filter(paid=False, total__lt=Decimal("20")).update(paid=True)
        Customer.objects.filter(name__endswith="-5").delete()  # the ORM deletes their orders first
        Order.objects.filter(placed__month=3, total__gt=Decimal("50")).delete()
