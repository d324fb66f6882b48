"""The example shop: a pricing page, a buy button, a simulated payment, a credits page and a
playground that spends credits through the metering decorator."""

import json
import re
from collections import Counter
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from user_credits import money, services
from user_credits.exceptions import UserCreditsError
from user_credits.holders import requester_holder
from user_credits.metering import GROUP_HEADER, REMAINING_HEADER, meters
from user_credits.models import (
    AutoRecharge,
    Billing,
    Cycle,
    LedgerEntry,
    Offer,
    OfferPrice,
    Order,
    OrderStatus,
    Rollover,
    Subscription,
    SubscriptionStatus,
)
from user_credits.payments import get_provider
from user_credits.payments.manual import ManualProvider
from user_credits.services.cycles import cycle_end
from user_credits.services.subscriptions import current_period, free_reference

CYCLES = ("monthly", "yearly")
#: The pricing page's cycle switch, as shown.
CYCLE_LABELS = {"monthly": Cycle.MONTHLY.label, "yearly": Cycle.YEARLY.label}


def sale_currencies() -> list[str]:
    """Every currency an active offer has a price in: the offers' own currencies first (the
    most common is the page's default), then those of their other prices."""
    own = Counter(Offer.objects.filter(is_active=True).values_list("currency", flat=True))
    other = Counter(
        OfferPrice.objects.filter(offer__is_active=True).values_list("currency", flat=True)
    )
    return sorted(own.keys() | other.keys(), key=lambda code: (-own[code], -other[code], code))


def pricing(request):
    cycle = request.GET.get("cycle") if request.GET.get("cycle") in CYCLES else "monthly"
    currencies = sale_currencies()
    asked = (request.GET.get("currency") or "").lower()
    currency = asked if asked in currencies else (currencies[0] if currencies else None)
    holder = requester_holder(request, required=False)

    def offers(*tags):
        # Offers without a price in the chosen currency are left out: no conversion.
        return services.load_offers(holder, list(tags), currency=currency)

    sections = [
        (_("Plans"), offers("subscription", cycle)),
        (_("Event talks"), offers("EventTalk") + offers("tokens")),
        (_("Mobile"), offers("mobile")),
    ]
    recurring = offers("recurring")
    for offer in recurring:
        offer.rollover_rule = rollover_rule(offer)
    if currency:
        for _title, listed in [*sections, (None, recurring)]:
            for offer in listed:
                offer.shown_price = money.quantize(offer.price_in(currency), currency)
    return render(
        request,
        "shop/pricing.html",
        {
            "cycle": cycle,
            "cycles": [
                (c, urlencode({"cycle": c, "currency": currency or ""}), CYCLE_LABELS[c])
                for c in CYCLES
            ],
            "currency": currency,
            "currencies": [(c, urlencode({"cycle": cycle, "currency": c})) for c in currencies],
            "sections": sections,
            "stripe": _stripe_enabled(),
            "recurring": recurring,
            "subscribed": _subscribed_offers(holder),
        },
    )


def _stripe_enabled():
    return bool(getattr(settings, "STRIPE_TEST_SECRET_KEY", "")) and get_provider().name == "stripe"


@login_required
@require_http_methods(["GET", "POST"])
def buy(request, offer_id):
    """``POST`` buys; ``GET`` (where the login page sends a visitor who clicked *Buy* logged
    out) shows the offer and the same button, so that nothing is bought without a click."""
    currency = (request.POST.get("currency") or request.GET.get("currency") or "").lower()
    if request.method == "GET":
        offer = get_object_or_404(Offer, pk=offer_id, is_active=True)
        if not currency or offer.price_in(currency) is None:
            currency = offer.currency
        price = money.quantize(offer.price_in(currency), currency)
        return render(
            request,
            "shop/buy.html",
            {"offer": offer, "currency": currency, "price": price, "stripe": _stripe_enabled()},
        )
    try:
        order = services.create_order(
            requester_holder(request),
            int(offer_id),
            currency=currency or None,
            placed_by=request.user,
        )
    except UserCreditsError as exc:
        messages.error(request, str(exc))
        return redirect("pricing")
    if order.status == OrderStatus.PAID:
        messages.success(request, _("%(offer)s is yours (free).") % {"offer": order.name})
        return redirect("credits")
    if _stripe_enabled():
        return redirect(get_provider().start_payment(order, request=request).redirect_url)
    return redirect("simulate_payment", order_id=order.pk)


def _own_order(request, order_id):
    order = get_object_or_404(Order, pk=order_id)
    if order.holder != requester_holder(request):
        raise PermissionDenied
    return order


@login_required
def simulate_payment(request, order_id):
    """Without Stripe keys the demo pays through the manual provider, clearly labelled."""
    order = _own_order(request, order_id)
    if request.method == "POST":
        ManualProvider().validate(order, message="Simulated payment on the example site.")
        messages.success(
            request, _("Payment simulated: %(offer)s is paid.") % {"offer": order.name}
        )
        return redirect("credits")
    total = money.quantize(order.total, order.currency)
    return render(request, "shop/simulate.html", {"order": order, "total": total})


def balance_chart(points, width=600, height=120):
    """An SVG polyline of (time, balance) points, drawn as steps; no front-end build."""
    if len(points) < 2:
        return None
    start, end = points[0][0].timestamp(), points[-1][0].timestamp()
    top = max(max(b for _, b in points), 1)
    span = (end - start) or 1

    def x(moment):
        return round((moment.timestamp() - start) / span * width, 1)

    def y(balance):
        return round(height - max(balance, 0) / top * (height - 10), 1)

    coords = []
    for (moment, balance), (_previous, before) in zip(points, [points[0], *points], strict=False):
        coords += [f"{x(moment)},{y(before)}", f"{x(moment)},{y(balance)}"]
    return {"width": width, "height": height, "points": " ".join(coords), "top": top}


@login_required
def credits(request):
    holder = requester_holder(request)
    groups = services.get_user_credits(holder)
    history = {}
    for entry in (
        LedgerEntry.objects.filter(account__holder=holder)
        .order_by("created_at", "id")
        .values_list("account__offer_group__key", "created_at", "balance_after")
    ):
        history.setdefault(entry[0], []).append(entry[1:])
    now = timezone.now()
    charts = {  # the line goes on at today's level
        key: balance_chart([*points[-200:], (max(now, points[-1][0]), points[-1][1])])
        for key, points in history.items()
    }
    # A group without lots or tokens (a bundle's own group: its items carry the tokens) says
    # nothing: left out.
    rows = [
        (group, charts.get(group.offer_group))
        for group in groups
        if group.lots or group.total or group.overdraft
    ]
    return render(
        request,
        "shop/credits.html",
        {
            "rows": rows,
            "plans": _live_plans(holder),
            "simulated": not _stripe_enabled(),
            "recharges": _recharge_panels(holder, [group.offer_group for group, _chart in rows]),
        },
    )


# --- auto-recharge: enable, change, disable; an order in flight is paid like any other ---------


def _recharge_panels(holder, group_keys) -> list[dict]:
    """One panel per group the holder has credits in (or a recharge for) that sells a paid,
    one-time offer with tokens: the offers it may recharge with and its recharge, if any."""
    recharges = {
        r.offer_group.key: r
        for r in AutoRecharge.objects.filter(holder_id=holder.pk).select_related(
            "offer", "offer_group", "pending_order"
        )
    }
    offers = {}
    for offer in (
        Offer.objects.filter(
            offer_group__key__in=[*group_keys, *recharges],
            is_active=True,
            billing=Billing.ONE_TIME,
            token_count__gt=0,
            price__gt=0,
        )
        .select_related("offer_group")
        .order_by("price", "pk")
    ):
        offers.setdefault(offer.offer_group.key, []).append(offer)
    keys = [*group_keys, *(key for key in recharges if key not in group_keys)]
    return [
        {
            "group": (offers.get(key) or [recharges[key]])[0].offer_group,
            "offers": offers.get(key, []),
            "recharge": recharges.get(key),
        }
        for key in keys
        if key in offers or key in recharges
    ]


def _posted_int(value):
    """A posted count as an ``int`` when it is one, else as posted: the service then names
    the field in its message."""
    value = (value or "").strip()
    return int(value) if re.fullmatch(r"-?\d{1,18}", value) else value


@login_required
@require_http_methods(["POST"])
def auto_recharge(request):
    """Enable (or change) and disable the requester's auto-recharge of a group, through the
    services; their message is shown for bad input and nothing changes."""
    holder = requester_holder(request)
    group = request.POST.get("group", "")
    try:
        if request.POST.get("action") == "disable":
            if services.disable_auto_recharge(holder, group) is None:
                messages.error(
                    request, _("No auto-recharge to disable in %(group)s.") % {"group": group}
                )
            else:
                messages.success(request, _("Auto-recharge disabled."))
        else:
            recharge = services.enable_auto_recharge(
                holder,
                group,
                _posted_int(request.POST.get("offer")),
                threshold=_posted_int(request.POST.get("threshold")),
                quantity=_posted_int(request.POST.get("quantity") or "1"),
            )
            messages.success(
                request,
                _("Auto-recharge on: %(quantity)s × %(offer)s when under %(threshold)s tokens.")
                % {
                    "quantity": recharge.quantity,
                    "offer": recharge.offer.name,
                    "threshold": recharge.threshold,
                },
            )
    except UserCreditsError as exc:
        messages.error(request, str(exc))
    return redirect(reverse("credits") + "#auto-recharge")


@login_required
def ledger(request):
    entries = LedgerEntry.objects.filter(account__holder=requester_holder(request)).select_related(
        "account__offer_group"
    )
    lot = request.GET.get("lot")
    if lot and lot.isdigit():
        entries = entries.filter(lot_id=int(lot))
    return render(request, "shop/ledger.html", {"entries": entries[:200], "lot": lot})


#: The AI plans' groups (see ``demo.PLANS``), in the order the playground offers them.
AI_GROUPS = ("EbStartup", "Startup", "EbBusiness", "Business", "EbScaleUp", "ScaleUp", "Free")
#: The most tokens an answer of each length may use: what is reserved before the task runs.
LENGTHS = {"short": 100, "medium": 250, "long": 500}
WORDS = (
    "credits tokens ledger plan model answer draft summary insight data forecast customer "
    "report idea list result quarter growth budget team"
).split()


def simulated_task(prompt, length):
    """A stand-in for a language model: a deterministic answer and the tokens it used (one
    per word of the prompt and of the answer, four fifths of the length's reservation)."""
    prompt_words = re.findall(r"\w+", prompt)
    answer_words = LENGTHS[length] * 4 // 5
    seed = sum(map(ord, prompt))
    words = [WORDS[(seed + i * 7) % len(WORDS)] for i in range(answer_words)]
    answer = _("Here is a %(length)s answer about “%(prompt)s”: ") % {
        "length": length,
        "prompt": prompt.strip(),
    } + " ".join(words[:40])
    if answer_words > 40:
        answer += " …"
    return answer, min(len(prompt_words) + answer_words, LENGTHS[length])


def _ai_accounts(user):
    """The user's AI plan groups with what is available in each, the fullest first."""
    credits = {g.offer_group: g for g in services.get_user_credits(user)}
    owned = [credits[key] for key in AI_GROUPS if key in credits]
    return sorted(owned, key=lambda g: -g.available)


@login_required
def playground(request):
    """*Ask WonderAI*: each question runs a simulated AI task through the metering decorator.
    It reserves the most the answer may use, then the task reports what it used
    (``request.credits.used``): that is charged and the rest freed. Without enough tokens the
    task never runs and the decorator answers 402 with a link to the pricing page."""
    accounts = _ai_accounts(requester_holder(request))
    choices = [(g.offer_group, g.name) for g in accounts] or [("Startup", "Startup (Standard)")]
    groups = [key for key, _name in choices]
    form = {
        "prompt": request.POST.get("prompt", "").strip(),
        "length": request.POST.get("length", "medium"),
        "group": request.POST.get("group", groups[0]),
    }
    errors = {}
    result = None
    if request.method == "POST":
        if not form["prompt"] or len(form["prompt"]) > 500:
            errors["prompt"] = _("Ask a question (at most 500 characters).")
        if form["length"] not in LENGTHS:
            errors["length"] = _("Choose one of %(lengths)s.") % {"lengths": ", ".join(LENGTHS)}
        if form["group"] not in groups:
            errors["group"] = _("Choose one of your plans.")
        if not errors:
            before = services.get_balance(requester_holder(request), form["group"])

            def task(request):
                answer, used = simulated_task(form["prompt"], form["length"])
                request.credits.used = used
                return JsonResponse({"answer": answer, "used": used})

            reserve = LENGTHS[form["length"]]
            response = meters(form["group"], reserve=reserve)(task)(request)
            if response.status_code == 402:
                return response  # the decorator's own page, with its upgrade link
            charged = request.credits.charged
            result = {
                "answer": json.loads(response.content)["answer"],
                "reserved": reserve,
                "charged": charged,
                "freed": reserve - charged,
                "before": before,
                "remaining": response[REMAINING_HEADER],
                "group": response[GROUP_HEADER],
            }
            accounts = _ai_accounts(requester_holder(request))
    page = render(
        request,
        "shop/playground.html",
        {
            "form": form,
            "errors": errors,
            "result": result,
            "accounts": accounts,
            "choices": choices,
            "lengths": LENGTHS,
        },
        status=400 if errors else 200,
    )
    if result:
        page[REMAINING_HEADER], page[GROUP_HEADER] = result["remaining"], result["group"]
    return page


class SimulatePaymentAPI(APIView):
    """``POST``: the simulated payment for API clients (the README's curl calls), manual provider
    only. It validates the requesting user's order as an admin's *Mark paid* would."""

    permission_classes = [IsAuthenticated]

    def post(self, request, order_id):
        if _stripe_enabled():
            return Response(
                {"code": "stripe_enabled", "detail": _("Stripe keys are set: pay through Stripe.")},
                status=409,
            )
        order = ManualProvider().validate(
            _own_order(request, order_id), message="Simulated payment on the example site (API)."
        )
        return Response({"id": order.pk, "status": order.status})


# --- recurring plans: subscribe, cancel, resume, and the demo's simulated provider -----------


def rollover_rule(offer) -> str:
    """What happens to a period's unused tokens, in a sentence."""
    if offer.rollover == Rollover.ALL:
        return _("All unused tokens move to the next period.")
    if offer.rollover == Rollover.CAPPED:
        return _("Unused tokens move to the next period, up to %(cap)s.") % {
            "cap": offer.rollover_cap
        }
    return _("Unused tokens expire with their period.")


def _subscribed_offers(holder) -> set[int]:
    if holder is None:
        return set()
    return set(
        Subscription.objects.filter(
            holder_id=holder.pk, status__in=SubscriptionStatus.live()
        ).values_list("offer_id", flat=True)
    )


def _live_plans(holder) -> list[Subscription]:
    plans = list(
        Subscription.objects.filter(holder_id=holder.pk, status__in=SubscriptionStatus.live())
        .select_related("offer")
        .order_by("created_at", "pk")
    )
    for plan in plans:
        plan.tokens_per_period = (plan.offer.token_count or 0) * plan.quantity
        plan.rollover_rule = rollover_rule(plan.offer)
    return plans


def _own_subscription(request, subscription_id) -> Subscription:
    subscription = get_object_or_404(
        Subscription.objects.select_related("offer"), pk=subscription_id
    )
    if subscription.holder_id != requester_holder(request).pk:
        raise PermissionDenied
    return subscription


def _plan_currency(offer, asked) -> str:
    asked = (asked or "").lower()
    return asked if asked and offer.price_in(asked) is not None else offer.currency


@login_required
@require_http_methods(["GET", "POST"])
def subscribe(request, offer_id):
    """``POST`` subscribes to a recurring offer; ``GET`` (after the login page) shows the plan
    and the same button. A free plan is active at once; a paid one goes to Stripe Checkout, or
    without Stripe keys to the simulated payment of its first period."""
    offer = get_object_or_404(Offer, pk=offer_id, is_active=True)
    currency = _plan_currency(offer, request.POST.get("currency") or request.GET.get("currency"))
    if request.method == "GET":
        price = money.quantize(offer.price_in(currency), currency)
        offer.rollover_rule = rollover_rule(offer)
        return render(
            request,
            "shop/subscribe.html",
            {"offer": offer, "currency": currency, "price": price, "stripe": _stripe_enabled()},
        )
    try:
        subscription = services.subscribe(
            requester_holder(request), offer, member=request.user, request=request
        )
    except UserCreditsError as exc:
        messages.error(request, str(exc))
        return redirect("pricing")
    if subscription.status == SubscriptionStatus.ACTIVE:
        messages.success(
            request,
            _("%(name)s is active: this period's tokens are yours.") % {"name": offer.name},
        )
        return redirect("credits")
    start = subscription.payment_start
    if start is not None and start.redirect_url:
        return redirect(start.redirect_url)
    if _stripe_enabled():
        messages.info(request, _("Your subscription waits for its first payment."))
        return redirect("credits")
    url = reverse("simulate_subscription_payment", args=[subscription.pk])
    return redirect(f"{url}?{urlencode({'currency': currency})}")


def _simulated_only():
    if _stripe_enabled():
        raise Http404("Stripe keys are set: Stripe renews the plans.")


def _paid_period(subscription, start, end, currency):
    """One period of ``subscription`` paid through the simulated provider: the same service a
    provider's paid invoice calls, once per period (the reference names its start)."""
    if subscription.offer.price == 0:
        reference = free_reference(subscription, start)
    else:
        reference = f"demo:{subscription.pk}:{int(start.timestamp())}"
    return services.renew_subscription(
        subscription,
        period_start=start,
        period_end=end,
        reference=reference,
        currency=currency,
    )


@login_required
@require_http_methods(["GET", "POST"])
def simulate_subscription_payment(request, subscription_id):
    """Without Stripe keys, the first period of a paid plan is paid here, clearly labelled."""
    _simulated_only()
    subscription = _own_subscription(request, subscription_id)
    offer = subscription.offer
    currency = _plan_currency(offer, request.POST.get("currency") or request.GET.get("currency"))
    if request.method == "POST":
        if subscription.status != SubscriptionStatus.INCOMPLETE:
            messages.error(request, _("This plan's first period is already paid."))
            return redirect("credits")
        now = timezone.now()
        end = cycle_end(now, offer.cycle, custom_cycle=offer.custom_cycle)
        try:
            order = _paid_period(subscription, now, end, currency)
        except UserCreditsError as exc:
            messages.error(request, str(exc))
            return redirect("credits")
        messages.success(
            request,
            _("Payment simulated: %(name)s is active until %(date)s.")
            % {"name": offer.name, "date": date_format(order.expires, "Y-m-d")},
        )
        return redirect("credits")
    total = money.quantize(offer.price_in(currency) * subscription.quantity, currency)
    return render(
        request,
        "shop/simulate_subscription.html",
        {"subscription": subscription, "currency": currency, "total": total},
    )


@login_required
@require_http_methods(["POST"])
def simulate_renewal(request, subscription_id):
    """Demo control: the next period is paid now, as the provider's renewal invoice would pay
    it at the period's end (its lot starts then; the unused tokens roll over by the plan's
    rule). A free plan renews as the expiry sweep renews it, with the same reference."""
    _simulated_only()
    subscription = _own_subscription(request, subscription_id)
    if subscription.status != SubscriptionStatus.ACTIVE or subscription.cancel_at_period_end:
        messages.error(request, _("Only an active plan that is not canceled renews."))
        return redirect("credits")
    start, end = current_period(subscription, subscription.current_period_end)
    last = subscription.orders.filter(status=OrderStatus.PAID).order_by("-starts").first()
    try:
        order = _paid_period(subscription, start, end, last.currency if last else None)
    except UserCreditsError as exc:
        messages.error(request, str(exc))
        return redirect("credits")
    paid = order.events.filter(status=OrderStatus.PAID).order_by("-pk").first()
    rolled = (paid.payload or {}).get("rolled_over", 0) if paid else 0
    messages.success(
        request,
        _(
            "Renewal simulated: %(name)s is paid from %(start)s to %(end)s; "
            "%(rolled)s unused token(s) rolled over."
        )
        % {
            "name": subscription.offer.name,
            "start": date_format(start, "Y-m-d"),
            "end": date_format(end, "Y-m-d"),
            "rolled": rolled,
        },
    )
    return redirect("credits")


@login_required
@require_http_methods(["POST"])
def cancel_plan(request, subscription_id):
    """Cancel at the period's end (a plan not paid yet: at once)."""
    subscription = _own_subscription(request, subscription_id)
    try:
        subscription = services.cancel_subscription(subscription, at_period_end=True)
    except UserCreditsError as exc:
        messages.error(request, str(exc))
        return redirect("credits")
    if subscription.cancel_at_period_end:
        message = _("%(name)s ends on %(date)s; its tokens stay until they expire.") % {
            "name": subscription.offer.name,
            "date": date_format(subscription.current_period_end, "Y-m-d"),
        }
    else:
        message = _("%(name)s is canceled.") % {"name": subscription.offer.name}
    messages.success(request, message)
    return redirect("credits")


@login_required
@require_http_methods(["POST"])
def resume_plan(request, subscription_id):
    subscription = _own_subscription(request, subscription_id)
    try:
        services.resume_subscription(subscription)
    except UserCreditsError as exc:
        messages.error(request, str(exc))
        return redirect("credits")
    messages.success(request, _("%(name)s renews again.") % {"name": subscription.offer.name})
    return redirect("credits")
