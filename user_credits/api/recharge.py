"""``auto-recharge/``: the requesting holder's auto-recharges, one per offer group (list,
create, retrieve, update and delete by the group's key), and ``setup/`` to save a payment
method before any purchase. Thin: the services hold the rules, ``api.exceptions`` the errors."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from .. import services
from ..holders import requester_holder
from ..models import AutoRecharge
from .schema import extend_schema
from .serializers import ErrorSerializer, PaymentStartSerializer
from .views import CreditsAPIMixin


def errors(*codes):
    return {code: OpenApiResponse(ErrorSerializer) for code in codes}


class AutoRechargeSerializer(serializers.ModelSerializer):
    offer_group = serializers.SlugRelatedField(slug_field="key", read_only=True)
    offer_name = serializers.CharField(source="offer.name", read_only=True)

    class Meta:
        model = AutoRecharge
        fields = [
            "offer_group",
            "offer",
            "offer_name",
            "threshold",
            "quantity",
            "enabled",
            "pending_order",
            "failures",
            "last_failure",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AutoRechargeChangeSerializer(serializers.Serializer):
    """What a client sets; the services check it (errors name the field)."""

    offer = serializers.IntegerField(help_text=_("The offer bought at each recharge."))
    threshold = serializers.IntegerField(
        help_text=_("Recharge when the available balance falls under this many tokens.")
    )
    quantity = serializers.IntegerField(default=1)


class AutoRechargeCreateSerializer(AutoRechargeChangeSerializer):
    offer_group = serializers.CharField(help_text=_("The offer group's key."))


class AutoRechargeViewSet(CreditsAPIMixin, viewsets.ViewSet):
    """The requesting holder's auto-recharges, addressed by offer group key."""

    permission_classes = [permissions.IsAuthenticated]
    lookup_field = "offer_group"
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return (
            AutoRecharge.objects.filter(holder=requester_holder(self.request))
            .select_related("offer", "offer_group")
            .order_by("offer_group__key")
        )

    def _get(self, key):
        return get_object_or_404(self.get_queryset(), offer_group__key=key)

    @extend_schema(responses={200: AutoRechargeSerializer(many=True), **errors(401, 403)})
    def list(self, request):
        return Response(AutoRechargeSerializer(self.get_queryset(), many=True).data)

    @extend_schema(responses={200: AutoRechargeSerializer, **errors(401, 403, 404)})
    def retrieve(self, request, offer_group=None):
        return Response(AutoRechargeSerializer(self._get(offer_group)).data)

    @extend_schema(
        request=AutoRechargeCreateSerializer,
        responses={201: AutoRechargeSerializer, 200: AutoRechargeSerializer, **errors(400, 401)},
    )
    def create(self, request):
        """Enable the auto-recharge of a group (201), or change and re-enable the one it has
        (200): one per holder and group."""
        data = AutoRechargeCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        holder = requester_holder(request)
        existed = AutoRecharge.objects.filter(
            holder=holder, offer_group__key=values["offer_group"]
        ).exists()
        recharge = services.enable_auto_recharge(
            holder,
            values["offer_group"],
            values["offer"],
            threshold=values["threshold"],
            quantity=values["quantity"],
        )
        body = AutoRechargeSerializer(self.get_queryset().get(pk=recharge.pk)).data
        return Response(body, status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED)

    @extend_schema(
        request=AutoRechargeChangeSerializer,
        responses={200: AutoRechargeSerializer, **errors(400, 401, 404)},
    )
    def partial_update(self, request, offer_group=None):
        """Change the offer, threshold or quantity (the others stay); it is enabled again."""
        current = self._get(offer_group)
        data = AutoRechargeChangeSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        values = {
            "offer": current.offer_id,
            "threshold": current.threshold,
            "quantity": current.quantity,
            **data.validated_data,
        }
        services.enable_auto_recharge(
            current.holder_id,
            current.offer_group,
            values["offer"],
            threshold=values["threshold"],
            quantity=values["quantity"],
        )
        return Response(AutoRechargeSerializer(self.get_queryset().get(pk=current.pk)).data)

    @extend_schema(request=None, responses={204: None, **errors(401, 404)})
    def destroy(self, request, offer_group=None):
        """Disable it (a recharge already in flight completes)."""
        current = self._get(offer_group)
        services.disable_auto_recharge(current.holder_id, current.offer_group)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: PaymentStartSerializer, **errors(401, 409, 502)})
    @action(detail=False, methods=["post"])
    def setup(self, request):
        """Save a payment method for off-session recharges before any purchase (Stripe: a
        SetupIntent's client secret for the front end)."""
        start = services.setup_payment_method(requester_holder(request))
        return Response(PaymentStartSerializer(start).data)
