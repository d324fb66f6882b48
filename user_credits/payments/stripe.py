"""Stripe through dj-stripe (written with the payments issue)."""
