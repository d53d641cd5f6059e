from __future__ import annotations

from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
    email = models.EmailField()
    confirmation_task = models.CharField(max_length=32, blank=True)
    confirmed = models.BooleanField(default=False)
