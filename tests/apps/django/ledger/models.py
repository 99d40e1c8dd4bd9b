"""A small bookkeeping app with every field kind a move to PostgreSQL must keep typed. Migration 0002 adds a UNIQUE
account number (SQLite gets it by a table rebuild) and stored generated fields."""
from django.contrib.auth.models import User
from django.db import models
from django.db.models import F
from django.db.models.functions import Lower
from django.utils import timezone


class Account(models.Model):
    name = models.CharField(max_length=100)
    opened = models.DateTimeField(default=timezone.now)
    birthday = models.DateField(null=True)
    wakes = models.TimeField(null=True)
    active = models.BooleanField(default=True)
    balance = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    rate = models.FloatField(default=0.0)
    owner = models.ForeignKey(User, null=True, on_delete=models.SET_NULL)
    number = models.CharField(max_length=20, unique=True, null=True)
    name_lower = models.GeneratedField(
        expression=Lower("name"), output_field=models.CharField(max_length=100), db_persist=True
    )


class Entry(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    booked = models.DateTimeField()
    day = models.DateField()
    cleared = models.BooleanField(default=False)
    weight = models.FloatField(null=True)
    cents = models.GeneratedField(
        expression=F("amount") * 100, output_field=models.DecimalField(max_digits=14, decimal_places=2), db_persist=True
    )
