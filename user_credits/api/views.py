"""Thin views: serializers validate, services write, ``api.exceptions`` maps errors."""

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound
from rest_framework.generics import get_object_or_404
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import services
from ..holders import requester_holder
from ..models import CreditAccount, Hold, LedgerEntry, Order
from . import serializers as s
from .exceptions import exception_handler
from .filters import LedgerEntryFilter, OrderFilter
from .pagination import LedgerPagination, per_account
from .schema import extend_schema


def errors(*codes):
    return {code: OpenApiResponse(s.ErrorSerializer) for code in codes}


class CreditsPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class CreditsAPIMixin:
    """Our error shape and OpenAPI schema, whatever the site's DRF settings."""

    schema = AutoSchema()

    def get_exception_handler(self):
        return exception_handler


class CanConsumeCredits(permissions.BasePermission):
    message = _("The user_credits.consume_credits permission is required.")

    def has_permission(self, request, view):
        return bool(request.user and request.user.has_perm("user_credits.consume_credits"))


class CanGrantCredits(permissions.BasePermission):
    message = _("Staff with the user_credits.add_creditlot permission only.")

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_staff and user.has_perm("user_credits.add_creditlot"))


TAGS_PARAMETER = OpenApiParameter(
    "tags", str, description="Comma-separated tags; an offer must carry all of them."
)

CURRENCY_PARAMETER = OpenApiParameter(
    "currency",
    str,
    description="Show prices in this currency (ISO 4217, e.g. eur). Offers without a price in "
    "it are left out: prices are never converted.",
)


class OfferViewSet(CreditsAPIMixin, viewsets.ViewSet):
    """The offers the requesting user may buy (anonymous users: regular offers only)."""

    permission_classes = [permissions.AllowAny]

    def _offers(self, request):
        tags = [t for t in request.query_params.get("tags", "").split(",") if t.strip()]
        currency = request.query_params.get("currency") or None
        holder = requester_holder(request, required=False)
        return services.load_offers(holder, [t.strip() for t in tags], currency=currency)

    def _serialize(self, request, offers, **kwargs):
        context = {"currency": request.query_params.get("currency") or None}
        return s.OfferSerializer(offers, context=context, **kwargs).data

    @extend_schema(
        parameters=[TAGS_PARAMETER, CURRENCY_PARAMETER],
        responses={200: s.OfferSerializer(many=True), **errors(400)},
    )
    def list(self, request):
        return Response(self._serialize(request, self._offers(request), many=True))

    @extend_schema(
        parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH), CURRENCY_PARAMETER],
        responses={200: s.OfferSerializer, **errors(400, 404)},
    )
    def retrieve(self, request, pk=None):
        offer = next((o for o in self._offers(request) if str(o.pk) == str(pk)), None)
        if offer is None:
            raise NotFound(gettext("No such offer."))
        return Response(self._serialize(request, offer))


class OrderViewSet(
    CreditsAPIMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The requesting user's orders, with their history."""

    # The model for the schema; the rows come from get_queryset (the request's holder).
    queryset = Order.objects.none()
    serializer_class = s.OrderSerializer
    permission_classes = [permissions.IsAuthenticated]
    pagination_class = CreditsPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = OrderFilter
    ordering = ("-created_at", "-id")

    def get_queryset(self):
        return (
            Order.objects.filter(holder=requester_holder(self.request))
            .select_related("offer_group")
            .prefetch_related("events")
            .order_by(*self.ordering)
        )

    @extend_schema(
        request=s.OrderCreateSerializer, responses={201: s.OrderSerializer, **errors(400, 401, 403)}
    )
    def create(self, request):
        data = s.OrderCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = services.create_order(
            requester_holder(request), placed_by=request.user, **data.validated_data
        )
        order = self.get_queryset().get(pk=order.pk)
        return Response(s.OrderSerializer(order).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=s.PaySerializer,
        responses={200: s.PaymentStartSerializer, **errors(400, 401, 404, 409, 502)},
    )
    @action(detail=True, methods=["post"])
    def pay(self, request, pk=None):
        order = get_object_or_404(self.get_queryset(), pk=pk)
        data = s.PaySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        start = services.start_payment(order, request=request, **data.validated_data)
        return Response(s.PaymentStartSerializer(start).data)


class CreditsView(CreditsAPIMixin, APIView):
    """The requesting user's balance, period and lots per offer group."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses={200: s.GroupCreditsSerializer(many=True), **errors(401, 403)})
    def get(self, request):
        credits = services.get_user_credits(requester_holder(request))
        return Response(s.GroupCreditsSerializer(credits, many=True).data)


class LedgerViewSet(CreditsAPIMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The requesting user's ledger entries, newest first."""

    queryset = LedgerEntry.objects.none()  # the model for the schema, as above
    serializer_class = s.LedgerEntrySerializer
    permission_classes = [permissions.IsAuthenticated]
    pagination_class = LedgerPagination
    filter_backends = [DjangoFilterBackend]
    filterset_class = LedgerEntryFilter

    def get_queryset(self):
        # Each account's page is read from its own index (``per_account``); the accounts,
        # read once, are attached to the page's entries: no join.
        self.accounts = {
            account.pk: account
            for account in CreditAccount.objects.filter(
                holder=requester_holder(self.request)
            ).select_related("offer_group")
        }
        return per_account(LedgerEntry.objects.order_by("-created_at", "-id"), self.accounts)

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        for entry in page or ():
            entry.account = self.accounts[entry.account_id]
        return page


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    location=OpenApiParameter.HEADER,
    required=True,
    description="Unique per consumption of a user; a retry with the same key is answered "
    "with the first response and the header Idempotent-Replayed: true.",
)


class IdempotencyKeyRequired(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "idempotency_key_required"
    default_detail = _("Send an Idempotency-Key header of 1 to 255 characters.")


def idempotency_key(request):
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key or len(key) > 255:
        raise IdempotencyKeyRequired()
    return key


def replayed_header(replayed):
    return {"Idempotent-Replayed": "true"} if replayed else {}


def consumption_body(result):
    """The consumption's result; a replay carries the first one's, with ``replayed`` true."""
    return {
        "balance": result.balance,
        "replayed": result.replayed,
        "entries": s.ConsumedEntrySerializer(result.entries, many=True).data,
    }


class ConsumeView(CreditsAPIMixin, APIView):
    """Consume a user's tokens (server to server)."""

    permission_classes = [permissions.IsAuthenticated, CanConsumeCredits]
    throttle_scope = "user_credits_consume"

    @extend_schema(
        request=s.ConsumeSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: s.ConsumptionSerializer, **errors(400, 401, 402, 403, 409)},
    )
    def post(self, request):
        key = idempotency_key(request)
        data = s.ConsumeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.consume(
            data.validated_data["holder"],
            data.validated_data["offer_group"],
            data.validated_data["count"],
            idempotency_key=key,
            metadata=data.validated_data["metadata"],
            member=data.validated_data["member"],
        )
        return Response(
            consumption_body(result),
            status=status.HTTP_201_CREATED,
            headers=replayed_header(result.replayed),
        )


class ConsumeBatchView(CreditsAPIMixin, APIView):
    """Consume many holders' tokens in one request (server to server), e.g. usage events
    from a queue. Each item is all-or-nothing on its own; results come back in order."""

    permission_classes = [permissions.IsAuthenticated, CanConsumeCredits]
    throttle_scope = "user_credits_consume"

    @extend_schema(
        request=s.ConsumeBatchSerializer,
        responses={200: s.ConsumeBatchResultsSerializer, **errors(400, 401, 403, 503)},
    )
    def post(self, request):
        data = s.ConsumeBatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        results = services.consume_many(
            [
                services.ConsumeItem(
                    item["holder"],
                    item["offer_group"],
                    item["count"],
                    idempotency_key=item["idempotency_key"],
                    metadata=item["metadata"],
                    member=item["member"],
                )
                for item in data.validated_data["items"]
            ]
        )
        return Response({"results": s.ConsumeBatchResultSerializer(results, many=True).data})


class GrantView(CreditsAPIMixin, APIView):
    """Grant tokens to a user, with a reason (staff)."""

    permission_classes = [permissions.IsAuthenticated, CanGrantCredits]

    @extend_schema(
        request=s.GrantSerializer, responses={201: s.CreditLotSerializer, **errors(400, 401, 403)}
    )
    def post(self, request):
        data = s.GrantSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        lot = services.grant(
            values["holder"],
            values["offer_group"],
            values["tokens"],
            expires=values["expires"],
            category=values["category"],
            reason=f"{values['reason']} (by {request.user})",
            by=request.user,
        )
        return Response(s.CreditLotSerializer(lot).data, status=status.HTTP_201_CREATED)


HOLD_ID = OpenApiParameter("id", int, OpenApiParameter.PATH)


class HoldViewSet(CreditsAPIMixin, viewsets.ViewSet):
    """Reserve tokens before metered work, then capture what was used or release them
    (server to server, like ``consume/``)."""

    permission_classes = [permissions.IsAuthenticated, CanConsumeCredits]
    throttle_scope = "user_credits_consume"

    def _hold(self, pk):
        return get_object_or_404(Hold.objects.select_related("account__offer_group"), pk=pk)

    @extend_schema(
        request=s.HoldCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: s.HoldSerializer, **errors(400, 401, 402, 403, 409)},
    )
    def create(self, request):
        key = idempotency_key(request)
        data = s.HoldCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        hold = services.hold(
            values["holder"],
            values["offer_group"],
            values["count"],
            ttl=values.get("ttl"),
            idempotency_key=key,
            metadata=values["metadata"],
            member=values["member"],
        )
        return Response(
            s.HoldSerializer(self._hold(hold.pk)).data,
            status=status.HTTP_201_CREATED,
            headers=replayed_header(hold.replayed),
        )

    @extend_schema(
        parameters=[HOLD_ID],
        request=s.CaptureSerializer,
        responses={200: s.ConsumptionSerializer, **errors(400, 401, 402, 403, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def capture(self, request, pk=None):
        hold = self._hold(pk)
        data = s.CaptureSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        result = services.capture(
            hold, values.get("count"), metadata=values["metadata"], over=values["over"]
        )
        return Response(consumption_body(result), headers=replayed_header(result.replayed))

    @extend_schema(
        parameters=[HOLD_ID],
        request=None,
        responses={200: s.HoldSerializer, **errors(401, 403, 404)},
    )
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        services.release(self._hold(pk))
        return Response(s.HoldSerializer(self._hold(pk)).data)
