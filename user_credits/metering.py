"""Charge a view per request, in one line; never serve what cannot be paid.

.. code-block:: python

    @consumes("api-calls", cost=1)              # or cost=lambda request: ...
    def search(request): ...

    @meters("ai-tokens", reserve=4000)          # the view reports request.credits.used = n
    def complete(request): ...

The rule is written once, in ``Charge``; the decorators below adapt it to plain Django views
(function, ``method_decorator``, ``async def``) and ``user_credits.api.metering`` to DRF:

1. The holder comes from ``HOLDER_FROM_REQUEST``. No holder: refused as unauthenticated; an
   authenticated user whom ``CAN_SPEND`` refuses: 403. Nothing is reserved yet.
2. The cost is reserved with ``services.hold`` (ttl ``HOLD_TTL``). Not enough tokens: 402 and
   the view is not called. While the view runs the reserved tokens are spendable by no one else.
3. The response settles the reservation: a success (a status under 400, or a 4xx with
   ``CHARGE_CLIENT_ERRORS``) captures ``request.credits.used`` (``consumes``: the cost;
   ``meters``: what the view reported, 0 if nothing) and frees the rest; an exception, a 5xx or
   a 4xx frees everything.
4. A streaming response is settled when its stream ends: exhausted, or closed early because the
   client left (charged for what ``request.credits.used`` says by then); an exception while
   streaming frees everything. A stream nobody closes is freed when its hold's ttl ends.
5. ``Idempotency-Key``: the key (scoped by group) is the hold's, so a retry of a charged request
   is served again and charged nothing; a retry of a failed one is charged as a new request;
   a retry while the first is still being served gets 409.
6. Every metered response carries ``Credits-Remaining`` (tokens available after the charge;
   for a stream, sent before its end: what is left if the whole reservation is charged) and
   ``Credits-Group``.
"""

import hashlib
import inspect
import logging
import threading
from functools import cache, wraps

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.core.exceptions import PermissionDenied
from django.db import connections, router
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext

from . import holders, services
from .conf import app_settings
from .errors import error_body, payment_required_body
from .exceptions import (
    ConfigurationError,
    IdempotencyConflict,
    InsufficientCredits,
    InvalidCount,
    InvalidTransition,
)
from .models import Hold, HoldStatus

logger = logging.getLogger("user_credits")

REMAINING_HEADER = "Credits-Remaining"
GROUP_HEADER = "Credits-Group"
KEY_HEADER = "Idempotency-Key"

__all__ = ["Charge", "Credits", "Refused", "consumes", "meters"]


class Credits:
    """``request.credits`` in a metered view: what is reserved and what the view used.

    ``used`` starts at the cost (``consumes``, DRF) or at 0 (``meters``); a view sets it to what
    it really used (``request.credits.used = n`` or ``+= n`` while streaming). After the
    response is settled, ``charged`` and ``remaining`` say what happened.
    """

    def __init__(self, *, group, reserved, holder, member, used):
        self.group = group
        self.reserved = reserved
        self.holder = holder
        self.member = member
        self.used = used
        self.charged = None
        self.remaining = None
        #: A retry (same ``Idempotency-Key``) of a request that was charged already.
        self.replayed = False

    @property
    def used(self):
        return self._used

    @used.setter
    def used(self, value):
        self._used = _count(value, "request.credits.used")

    def __repr__(self):
        return f"<Credits {self.group}: reserved {self.reserved}, used {self.used}>"


class Refused(Exception):
    """A metered request that is not served: its status and error body.

    The adapters render it: plain Django as HTML or JSON by ``Accept`` (a login redirect for a
    page without a holder), DRF through its own authentication errors or a ``Response``.
    """

    def __init__(self, status, body, *, group=None, available=None):
        super().__init__(body["detail"])
        self.status = status
        self.body = body
        self.group = group
        self.available = available

    def decorate(self, response):
        if self.group is not None:
            response[GROUP_HEADER] = self.group
            response[REMAINING_HEADER] = str(self.available)
        return response


class Charge:
    """One metered request: open (reserve) before the view, then finish or abort."""

    def __init__(self, request, credits, hold=None):
        self.request = request
        self.credits = credits
        self.hold = hold
        self._lock = threading.Lock()
        self._settled = False

    @classmethod
    def open(cls, request, group, cost, *, used=None):
        """Check who pays and reserve ``cost`` (an int or ``callable(request)``), or raise
        ``Refused``. ``request.credits`` is set; ``used`` defaults to the cost."""
        holder = holders.holder_from_request(request)
        if holder is None:
            detail = gettext("Authentication credentials were not provided.")
            raise Refused(401, error_body("not_authenticated", detail))
        member = holders.member_from_request(request)
        if member is not None and not holders.can_spend(member, holder):
            raise Refused(
                403,
                error_body(
                    "permission_denied", gettext("You may not spend this holder's credits.")
                ),
            )
        count = _count(cost(request) if callable(cost) else cost, "cost")
        credits = Credits(
            group=group,
            reserved=count,
            holder=holder,
            member=member,
            used=count if used is None else used,
        )
        # On the Django request, so that DRF's Request (a proxy) shows it too.
        getattr(request, "_request", request).credits = credits
        charge = cls(request, credits)
        if count:
            charge.hold = charge._reserve(_idempotency_key(request))
        return charge

    def finish(self, response):
        """Settle for ``response`` (a stream: when it ends) and add the credits headers."""
        succeeded = _succeeded(response.status_code)
        if response.streaming and succeeded and self.hold is not None:
            if response.is_async:
                response.streaming_content = _AsyncStream(response.streaming_content, self)
            else:
                response.streaming_content = _Stream(response.streaming_content, self)
            self.credits.remaining = self._available()
        else:
            self.settle(succeeded)
        if self.credits.remaining is not None:
            response[REMAINING_HEADER] = str(self.credits.remaining)
        response[GROUP_HEADER] = self.credits.group
        return response

    def abort(self):
        """The view raised: free the reservation, never masking the view's exception."""
        try:
            self.settle(False)
        except Exception:
            logger.exception(
                "The reservation of a failed metered request was not freed; its ttl frees it."
            )

    def settle(self, succeeded):
        """Capture what was used (``succeeded``) or free everything. Runs once."""
        with self._lock:
            if self._settled:
                return
            self._settled = True
        try:
            self._settle(succeeded)
        except BaseException:
            # Capture and release are idempotent: a later call (the response's close) may
            # finish what this one could not; else the hold's ttl frees the tokens.
            self._settled = False
            raise

    def _settle(self, succeeded):
        credits = self.credits
        if _doomed():
            # The request's own transaction rolls back, and the reservation with it.
            credits.charged = 0
            return
        if self.hold is None:
            credits.charged = 0
        elif succeeded and credits.used:
            credits.remaining = None
            credits.charged = self._capture(credits.used)
            if credits.remaining is not None:
                return
        else:
            _call(services.release, self.hold, member=credits.member)
            credits.charged = 0
        credits.remaining = self._available()

    # --- helpers -------------------------------------------------------------------------

    def _reserve(self, key):
        credits = self.credits
        scoped = _scoped_key(credits.group, key)
        while True:
            try:
                hold = _call(
                    services.hold,
                    credits.holder,
                    credits.group,
                    credits.reserved,
                    member=credits.member,
                    ttl=app_settings.HOLD_TTL,
                    idempotency_key=scoped,
                    metadata=self._metadata(),
                )
            except InsufficientCredits as exc:
                raise Refused(
                    402, payment_required_body(exc), group=credits.group, available=exc.available
                ) from None
            except IdempotencyConflict as exc:
                raise Refused(409, error_body(exc.code, str(exc))) from None
            if not getattr(hold, "replayed", False):
                return hold
            if hold.status == HoldStatus.CAPTURED:
                credits.replayed = True  # charged once already: serve, charge nothing
                return None
            if hold.status == HoldStatus.ACTIVE and hold.expires_at > timezone.now():
                raise Refused(
                    409,
                    error_body(
                        "idempotency_in_progress",
                        gettext(
                            "A request with this %(header)s is being served; retry once it ends."
                        )
                        % {"header": KEY_HEADER},
                    ),
                )
            # The earlier attempt failed (released) or died (expired): a fresh reservation,
            # keyed after it so that concurrent retries still find one another.
            scoped = _scoped_key(credits.group, f"{key}:after:{hold.pk}")

    def _capture(self, used):
        # The hold records its member, allowed when it was reserved: capture without
        # ``member=`` (which would read the holder again to ask CAN_SPEND, a query per call).
        credits, hold = self.credits, self.hold
        metadata = self._metadata()
        try:
            captured = services.capture(hold, used, metadata=metadata)
            if not captured.replayed:  # what is available now: no balance query after it
                credits.remaining = captured.balance
            return used
        except InsufficientCredits:
            # More than reserved was reported and the extra is not there: the reservation is
            # what was promised before serving.
            logger.warning(
                "Metered view %s reported %s tokens of %s, %s reserved and no more available; "
                "charged the reservation.",
                metadata["path"],
                used,
                credits.group,
                credits.reserved,
            )
            services.capture(hold, metadata=metadata)
            return credits.reserved
        except InvalidTransition:
            # The view outlived the hold's ttl and the hold was freed: charge as a consume.
            try:
                _call(
                    services.consume,
                    credits.holder,
                    credits.group,
                    used,
                    member=credits.member,
                    idempotency_key=f"metered:hold:{hold.pk}",
                    metadata=metadata,
                )
                return used
            except InsufficientCredits:
                logger.warning(
                    "Metered view %s outlived its hold (#%s) and %s tokens of %s were not "
                    "there any more: not charged.",
                    metadata["path"],
                    hold.pk,
                    used,
                    credits.group,
                )
                return 0

    def _available(self):
        return services.get_balance(self.credits.holder, self.credits.group)

    def _metadata(self):
        return {"path": self.request.path, "method": self.request.method}


# --- plain Django views ----------------------------------------------------------------------


def consumes(group, cost=1):
    """Charge ``cost`` tokens of ``group`` per successful request (``cost``: a positive int or
    ``callable(request) -> int``; 0 serves that request free)."""
    _check_group(group)
    if not callable(cost):
        _positive(cost, "cost")
    return _metered(group, cost, used=None)


def meters(group, reserve):
    """Reserve ``reserve`` tokens of ``group``, serve, then charge what the view reports in
    ``request.credits.used`` (0 unless it says otherwise) and free the rest."""
    _check_group(group)
    _positive(reserve, "reserve")
    return _metered(group, reserve, used=0)


def _metered(group, cost, *, used):
    def decorator(view):
        if iscoroutinefunction(view):

            @wraps(view)
            async def metered_async_view(request, *args, **kwargs):
                try:
                    charge = await sync_to_async(Charge.open)(request, group, cost, used=used)
                except Refused as refusal:
                    return await sync_to_async(refusal_response)(request, refusal)
                try:
                    response = await view(request, *args, **kwargs)
                except BaseException:  # a cancelled request (the client left) is not charged
                    await sync_to_async(charge.abort)()
                    raise
                return await sync_to_async(charge.finish)(response)

            return metered_async_view

        @wraps(view)
        def metered_view(request, *args, **kwargs):
            try:
                charge = Charge.open(request, group, cost, used=used)
            except Refused as refusal:
                return refusal_response(request, refusal)
            try:
                response = view(request, *args, **kwargs)
            except BaseException:
                charge.abort()
                raise
            return charge.finish(response)

        return metered_view

    return decorator


def refusal_response(request, refusal):
    """A plain Django response for a refusal: JSON when the client prefers it, else a page.

    Pages: no holder redirects to the login page (as ``login_required``), a refused spender
    gets the site's 403 (``PermissionDenied``), a 402 renders ``user_credits/402.html``.
    """
    wants_json = request.get_preferred_type(["text/html", "application/json"]) == (
        "application/json"
    )
    if not wants_json and refusal.status == 401:
        from django.contrib.auth.views import redirect_to_login

        return redirect_to_login(request.get_full_path())
    if not wants_json and refusal.status == 403:
        raise PermissionDenied(refusal.body["detail"])
    if not wants_json and refusal.status == 402:
        page = render_to_string(
            "user_credits/402.html", {"error": refusal.body, "group": refusal.group}, request
        )
        response = HttpResponse(page, status=402)
    else:
        response = JsonResponse(refusal.body, status=refusal.status)
    patch_vary_headers(response, ["Accept"])
    return refusal.decorate(response)


# --- streams ---------------------------------------------------------------------------------


class _SettlingStream:
    def __init__(self, content, charge):
        self.content = content
        self.charge = charge

    def close(self):
        """Called when the server is done with the response, also when the client left."""
        self.charge.settle(True)


class _Stream(_SettlingStream):
    """A streaming body that settles its charge when it ends.

    Exhausted, or closed early (the server closes the response when the client leaves):
    captured, with ``request.credits.used`` as it is then. An exception while producing it:
    freed.
    """

    def __iter__(self):
        succeeded = True
        try:
            yield from self.content
        except Exception:
            succeeded = False
            raise
        finally:
            self.charge.settle(succeeded)


class _AsyncStream(_SettlingStream):
    """The same for an async iterator; a cancelled stream (ASGI: the client left) is charged
    for what was produced."""

    def __aiter__(self):
        return self._iterate()

    async def _iterate(self):
        succeeded = True
        try:
            async for chunk in self.content:
                yield chunk
        except Exception:
            succeeded = False
            raise
        finally:
            await sync_to_async(self.charge.settle)(succeeded)


# --- small rules -----------------------------------------------------------------------------


def _succeeded(status):
    if status < 400:
        return True
    return status < 500 and bool(app_settings.CHARGE_CLIENT_ERRORS)


def _count(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidCount(
            gettext("%(field)s must be a non-negative integer, got %(value)r.")
            % {"field": name, "value": value}
        )
    return value


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer or a callable, got {value!r}.")


def _check_group(group):
    if not isinstance(group, str) or not group:
        raise ConfigurationError(f"The offer group must be a key (a string), got {group!r}.")


def _idempotency_key(request):
    return request.headers.get(KEY_HEADER, "").strip() or None


def _scoped_key(group, key):
    """The hold's idempotency key: the request's, scoped by group, hashed past 255 chars."""
    if key is None:
        return None
    scoped = f"metered:{group}:{key}"
    if len(scoped) > 255:
        scoped = "metered:sha256:" + hashlib.sha256(scoped.encode()).hexdigest()
    return scoped


def _doomed():
    """The request runs in a transaction already marked for rollback (ATOMIC_REQUESTS and
    a failed query or a handled DRF error): no query can run, and the hold rolls back."""
    connection = connections[router.db_for_write(Hold)]
    return connection.in_atomic_block and connection.needs_rollback


@cache
def _takes_member(service):
    return "member" in inspect.signature(service).parameters


def _call(service, *args, member=None, **kwargs):
    """Call a service, naming the acting user when the service records members."""
    if member is not None and _takes_member(service):
        kwargs["member"] = member
    return service(*args, **kwargs)
