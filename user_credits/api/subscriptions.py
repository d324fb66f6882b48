"""``subscriptions/``: the requesting holder's recurring plans (list, retrieve, subscribe,
``cancel/``, ``resume/``). Thin: the services hold the rules, ``api.exceptions`` the errors."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from .. import services
from ..holders import requester_holder
from ..models import Offer, Subscription
from .schema import extend_schema
from .serializers import ErrorSerializer, PaymentStartSerializer
from .views import CreditsAPIMixin, CreditsPagination


def errors(*codes):
    return {code: OpenApiResponse(ErrorSerializer) for code in codes}


class SubscriptionSerializer(serializers.ModelSerializer):
    offer_name = serializers.CharField(source="offer.name", read_only=True)
    offer_group = serializers.SlugRelatedField(
        source="offer.offer_group", slug_field="key", read_only=True
    )

    class Meta:
        model = Subscription
        fields = [
            "id",
            "offer",
            "offer_name",
            "offer_group",
            "quantity",
            "status",
            "cancel_at_period_end",
            "current_period_start",
            "current_period_end",
            "canceled_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SubscribeSerializer(serializers.Serializer):
    offer = serializers.PrimaryKeyRelatedField(queryset=Offer.objects.all())
    quantity = serializers.IntegerField(min_value=1, default=1)


class SubscribedSerializer(SubscriptionSerializer):
    payment = PaymentStartSerializer(source="payment_start", read_only=True, allow_null=True)

    class Meta(SubscriptionSerializer.Meta):
        fields = [*SubscriptionSerializer.Meta.fields, "payment"]
        read_only_fields = fields


class CancelSerializer(serializers.Serializer):
    at_period_end = serializers.BooleanField(default=True)


class SubscriptionViewSet(
    CreditsAPIMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The requesting user's subscriptions, newest first."""

    # The model for the schema; the rows come from get_queryset (the request's holder).
    queryset = Subscription.objects.none()
    serializer_class = SubscriptionSerializer
    permission_classes = [permissions.IsAuthenticated]
    pagination_class = CreditsPagination

    def get_queryset(self):
        return (
            Subscription.objects.filter(holder=requester_holder(self.request))
            .select_related("offer__offer_group")
            .order_by("-created_at", "-id")
        )

    @extend_schema(
        request=SubscribeSerializer,
        responses={201: SubscribedSerializer, **errors(400, 401, 403, 502)},
    )
    def create(self, request):
        data = SubscribeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sub = services.subscribe(
            requester_holder(request),
            data.validated_data["offer"],
            quantity=data.validated_data["quantity"],
            member=request.user,
            request=request,
        )
        start = sub.payment_start
        sub = self.get_queryset().get(pk=sub.pk)
        sub.payment_start = start
        return Response(SubscribedSerializer(sub).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=CancelSerializer,
        responses={200: SubscriptionSerializer, **errors(400, 401, 404, 409, 502)},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        sub = get_object_or_404(self.get_queryset(), pk=pk)
        data = CancelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.cancel_subscription(sub, at_period_end=data.validated_data["at_period_end"])
        return Response(SubscriptionSerializer(self.get_queryset().get(pk=sub.pk)).data)

    @extend_schema(
        request=None, responses={200: SubscriptionSerializer, **errors(401, 404, 409, 502)}
    )
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        sub = get_object_or_404(self.get_queryset(), pk=pk)
        services.resume_subscription(sub)
        return Response(SubscriptionSerializer(self.get_queryset().get(pk=sub.pk)).data)
