"""A team that buys credits: the holder model of the example's "workspaces" mode."""

from django.conf import settings
from django.db import models


class Workspace(models.Model):
    """Owns credits (``USER_CREDITS_HOLDER_MODEL = "workspaces.Workspace"``); its members
    spend them, each within their spending limit if the owner set one."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_workspaces"
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="workspaces", blank=True
    )

    def __str__(self):
        return self.name

    @property
    def email(self) -> str:
        """The address of the team's Stripe customer (dj-stripe's subscriber model needs one):
        its owner's."""
        return self.owner.email

    def has_member(self, user) -> bool:
        return user.pk == self.owner_id or self.members.filter(pk=user.pk).exists()
