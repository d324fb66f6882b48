"""A small Stripe API on loopback for the webhook tests: it serves the objects a test puts in
it (dj-stripe re-reads every event's object) and creates customers, PaymentIntents and
Checkout Sessions. Only what the tests need; the end-to-end test uses localstripe instead."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from urllib.parse import parse_qsl

import stripe

_ids = count(1)
SECRET = "whsec_user_credits_tests"


def new_id(prefix):
    return f"{prefix}_{int(time.time())}{next(_ids):06d}"


def _nest(pairs):
    """Stripe's form encoding (a[b][c]=v) back into dicts."""
    result = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


class FakeStripe:
    def __init__(self):
        self.objects = {}
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.requests.append(("GET", self.path))
                object_id = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
                if object_id in fake.objects:
                    return self._send(200, fake.objects[object_id])
                return self._send(
                    404,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "code": "resource_missing",
                            "message": f"No such object: '{object_id}'",
                        }
                    },
                )

            def do_DELETE(self):
                path = self.path.split("?")[0].rstrip("/")
                fake.requests.append(("DELETE", path))
                object_id = path.rsplit("/", 1)[-1]
                if object_id not in fake.objects:
                    return self._send(404, {"error": {"type": "invalid_request_error"}})
                return self._send(200, fake.update(object_id, {"status": "canceled"}))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = _nest(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                path = self.path.split("?")[0].rstrip("/")
                fake.requests.append(("POST", path, form))
                maker = {
                    "/v1/customers": fake.make_customer,
                    "/v1/payment_intents": fake.make_payment_intent,
                    "/v1/checkout/sessions": fake.make_checkout_session,
                    "/v1/products": fake.make_product,
                    "/v1/prices": fake.make_price,
                    "/v1/subscriptions": fake.make_subscription,
                }.get(path)
                object_id = path.rsplit("/", 1)[-1]
                if maker is None and object_id in fake.objects:
                    return self._send(200, fake.update(object_id, form))
                if maker is None:
                    return self._send(
                        404, {"error": {"type": "invalid_request_error", "message": path}}
                    )
                return self._send(200, maker(form))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        self._saved = stripe.api_base
        stripe.api_base = self.url
        return self

    def __exit__(self, *exc):
        stripe.api_base = self._saved
        self.server.shutdown()
        self.server.server_close()

    def put(self, obj):
        self.objects[obj["id"]] = obj
        return obj

    # --- creations ---

    def make_customer(self, form):
        return self.put(
            {
                "id": new_id("cus"),
                "object": "customer",
                "livemode": False,
                "created": int(time.time()),
                "email": form.get("email"),
                "name": form.get("name"),
                "metadata": form.get("metadata", {}),
                "balance": 0,
                "currency": None,
                "delinquent": False,
                "description": None,
                "default_source": None,
                "invoice_prefix": "UC",
                "invoice_settings": {},
                "preferred_locales": [],
                "tax_exempt": "none",
                "address": None,
                "phone": None,
                "shipping": None,
                "discount": None,
            }
        )

    def update(self, object_id, form):
        obj = self.objects[object_id]
        for key, value in form.items():
            obj[key] = {"true": True, "false": False}.get(value, value)
        return obj

    def make_product(self, form):
        return self.put(product(name=form.get("name"), product_id=form.get("id"), active=True))

    def make_price(self, form):
        options = {
            code: {"unit_amount": int(option["unit_amount"])}
            for code, option in form.get("currency_options", {}).items()
        }
        recurring = form.get("recurring", {})
        made = price(
            unit_amount=int(form["unit_amount"]),
            currency=form["currency"],
            product_id=form["product"],
            interval=recurring.get("interval", "month"),
            currency_options=options,
        )
        made["recurring"]["interval_count"] = int(recurring.get("interval_count", 1))
        return self.put(made)

    def make_subscription(self, form):
        item = form["items"]["0"]
        now = int(time.time())
        made = subscription(
            customer=form["customer"],
            price_obj=self.objects[item["price"]],
            metadata=form.get("metadata", {}),
            period_start=now,
            period_end=now + 30 * 86400,
            status="incomplete",
            quantity=int(item.get("quantity", 1)),
        )
        intent = self.put(
            payment_intent(amount=0, currency="usd", metadata={}, status="requires_payment_method")
        )
        made["latest_invoice"] = {"id": new_id("in"), "payment_intent": intent}
        return self.put(made)

    def make_payment_intent(self, form):
        pi = payment_intent(
            amount=int(form["amount"]),
            currency=form["currency"],
            metadata=form.get("metadata", {}),
            status="requires_payment_method",
            customer=form.get("customer"),
        )
        return self.put(pi)

    def make_checkout_session(self, form):
        items = form.get("line_items", {}).get("0", {})
        if form.get("mode") == "subscription":
            session = checkout_session(
                amount_total=None,
                currency=None,
                metadata=form.get("metadata", {}),
                payment_status="unpaid",
                mode="subscription",
                status="open",
            )
            session["url"] = f"https://checkout.stripe.test/c/pay/{session['id']}"
            return self.put(session)
        total = int(items["price_data"]["unit_amount"]) * int(items["quantity"])
        session = checkout_session(
            amount_total=total,
            currency=items["price_data"]["currency"],
            metadata=form.get("metadata", {}),
            payment_status="unpaid",
            client_reference_id=form.get("client_reference_id"),
            status="open",
        )
        session["url"] = f"https://checkout.stripe.test/c/pay/{session['id']}"
        session["line_items_form"] = items
        return self.put(session)


# --- realistic objects ---------------------------------------------------------------------


def payment_intent(*, amount, currency, metadata, status="succeeded", customer=None, **extra):
    return {
        "id": new_id("pi"),
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": amount if status == "succeeded" else 0,
        "application": None,
        "application_fee_amount": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"pi_secret_{next(_ids)}",
        "confirmation_method": "automatic",
        "created": int(time.time()),
        "currency": currency,
        "customer": customer,
        "description": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_types": ["card"],
        "receipt_email": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
        **extra,
    }


def checkout_session(*, amount_total, currency, metadata, payment_status="paid", **extra):
    return {
        "id": new_id("cs_test"),
        "object": "checkout.session",
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "currency": currency,
        "customer": None,
        "customer_email": None,
        "livemode": False,
        "metadata": metadata,
        "mode": "payment",
        "payment_intent": None,
        "payment_status": payment_status,
        "status": "complete",
        "success_url": "https://example.test/ok",
        "cancel_url": "https://example.test/no",
        "url": None,
        "created": int(time.time()),
        "expires_at": int(time.time()) + 3600,
        "client_reference_id": None,
        **extra,
    }


def charge(*, amount, currency, metadata, amount_refunded=0, payment_intent=None):
    return {
        "id": new_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "captured": True,
        "currency": currency,
        "customer": None,
        "created": int(time.time()),
        "description": None,
        "disputed": False,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": metadata,
        "paid": True,
        "payment_intent": payment_intent,
        "payment_method": None,
        "refunded": amount_refunded == amount,
        "status": "succeeded",
        "balance_transaction": None,
        "billing_details": {},
        "outcome": None,
        "receipt_email": None,
        "receipt_url": None,
        "source": None,
        "statement_descriptor": None,
        "application_fee": None,
        "on_behalf_of": None,
        "transfer_data": None,
        "transfer_group": None,
        "fraud_details": {},
        "payment_method_details": None,
    }


def event(event_type, obj):
    from djstripe.settings import djstripe_settings

    return {
        "id": new_id("evt"),
        "object": "event",
        "api_version": djstripe_settings.STRIPE_API_VERSION,
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


# --- Stripe Billing: products, prices, subscriptions, invoices (dj-stripe fixture shapes) ----


def product(*, name="Plan", product_id=None, **extra):
    return {
        "id": product_id or new_id("prod"),
        "object": "product",
        "active": True,
        "created": int(time.time()),
        "description": None,
        "images": [],
        "livemode": False,
        "metadata": {},
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "type": "service",
        "unit_label": None,
        "updated": int(time.time()),
        "url": None,
        **extra,
    }


def price(*, unit_amount, currency, product_id, interval="month", price_id=None, **extra):
    return {
        "id": price_id or new_id("price"),
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": int(time.time()),
        "currency": currency,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": product_id,
        "recurring": {
            "aggregate_usage": None,
            "interval": interval,
            "interval_count": 1,
            "trial_period_days": None,
            "usage_type": "licensed",
        },
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
        **extra,
    }


def subscription(
    *,
    customer,
    price_obj,
    metadata,
    period_start,
    period_end,
    status="active",
    quantity=1,
    sub_id=None,
    **extra,
):
    """A subscription as in dj-stripe's ``subscription_sub_fakefakefakefakefake0001.json``."""
    sub_id = sub_id or new_id("sub")
    return {
        "id": sub_id,
        "object": "subscription",
        "application_fee_percent": None,
        "billing_cycle_anchor": period_start,
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "collection_method": "charge_automatically",
        "created": period_start,
        "current_period_end": period_end,
        "current_period_start": period_start,
        "customer": customer,
        "days_until_due": None,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "discount": None,
        "ended_at": None,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": new_id("si"),
                    "object": "subscription_item",
                    "billing_thresholds": None,
                    "created": period_start,
                    "metadata": {},
                    "price": price_obj,
                    "quantity": quantity,
                    "subscription": sub_id,
                    "tax_rates": [],
                }
            ],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": None,
        "livemode": False,
        "metadata": metadata,
        "next_pending_invoice_item_invoice": None,
        "pause_collection": None,
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "quantity": quantity,
        "schedule": None,
        "start_date": period_start,
        "status": status,
        "transfer_data": None,
        "trial_end": None,
        "trial_start": None,
        **extra,
    }


def invoice(
    *,
    customer,
    sub,
    amount,
    currency,
    period_start,
    period_end,
    billing_reason="subscription_create",
    paid=True,
    charge=None,
    invoice_id=None,
    **extra,
):
    """An invoice as in dj-stripe's ``invoice_in_fakefakefakefakefake0001.json``: the
    subscription's period is on its subscription line, its metadata in
    ``subscription_details``."""
    invoice_id = invoice_id or new_id("in")
    created = int(time.time())
    return {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "user_credits tests",
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "amount_remaining": 0 if paid else amount,
        "application_fee_amount": None,
        "attempt_count": 1,
        "attempted": True,
        "auto_advance": not paid,
        "billing_reason": billing_reason,
        "charge": charge,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": currency,
        "custom_fields": None,
        "customer": customer,
        "customer_address": None,
        "customer_email": None,
        "customer_name": None,
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discount": None,
        "discounts": [],
        "due_date": None,
        "ending_balance": 0,
        "footer": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "lines": {
            "object": "list",
            "data": [
                {
                    "id": new_id("il"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": currency,
                    "description": "1 × plan",
                    "discountable": True,
                    "livemode": False,
                    "metadata": sub["metadata"],
                    "period": {"start": period_start, "end": period_end},
                    "price": sub["items"]["data"][0]["price"],
                    "proration": False,
                    "quantity": sub["quantity"],
                    "subscription": sub["id"],
                    "subscription_item": sub["items"]["data"][0]["id"],
                    "type": "subscription",
                }
            ],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None,
        "number": f"UC-{next(_ids):04d}",
        "paid": paid,
        "payment_intent": None,
        "period_end": created,
        "period_start": created,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "paid" if paid else "open",
        "status_transitions": {
            "finalized_at": created,
            "marked_uncollectible_at": None,
            "paid_at": created if paid else None,
            "voided_at": None,
        },
        "subscription": sub["id"],
        "subscription_details": {"metadata": sub["metadata"]},
        "subtotal": amount,
        "tax": None,
        "total": amount,
        "total_tax_amounts": [],
        "transfer_data": None,
        "webhooks_delivered_at": created,
        **extra,
    }
