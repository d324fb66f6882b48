import pytest
from django.test import override_settings

from user_credits.models import OrderStatus
from user_credits.payments import get_provider
from user_credits.payments.manual import ManualProvider

from .factories import make_offer

pytestmark = pytest.mark.django_db


def test_manual_validation_pays_with_a_message(holder):
    from user_credits import services

    order = services.create_order(holder, make_offer(token_count=9))
    provider = get_provider()
    assert isinstance(provider, ManualProvider)
    assert provider.start_payment(order).reference == f"manual-{order.pk}"
    order = provider.validate(order, validated_by="ops")
    assert order.status == OrderStatus.PAID
    assert order.events.get(status="paid").message == "Validated manually by ops."
    assert services.get_balance(holder, order.offer_group) == 9
    assert provider.validate(order).events.filter(status="paid").count() == 1


@override_settings(USER_CREDITS={"PAYMENT_PROVIDER": "user_credits.payments.stripe.StripeProvider"})
def test_provider_is_chosen_by_setting():
    assert get_provider().name == "stripe"
