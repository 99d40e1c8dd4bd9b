from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=100)
    email = models.EmailField()
    nickname = models.CharField(max_length=50, default="anon")
    joined = models.DateTimeField(auto_now_add=True)


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)
    total = models.DecimalField(max_digits=12, decimal_places=2)
    placed = models.DateField()
    paid = models.BooleanField(default=False)
    note = models.TextField(null=True, blank=True)
    status = models.CharField(max_length=10, default="new", db_index=True)
