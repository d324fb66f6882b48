"""Metering for DRF views and viewsets: the rule of ``user_credits.metering``, adapted.

.. code-block:: python

    class Completion(MeteredAPIView):
        credits_group, credits_cost = "ai-tokens", 1

    class Reports(MeteredMixin, viewsets.ModelViewSet):
        credits_group = "reports"
        credits_cost = {"create": 5, "export": 20}    # per action; other actions are free

The view's authentication, permission and throttle checks run first (``initial()``); then the
cost is reserved, and it is settled by the finalized response (``finalize_response()``): a
refused request is a 402 in the API's error shape, a failed response is not charged, and
every metered response carries ``Credits-Remaining`` and ``Credits-Group``. The view may set
``request.credits.used`` to charge what it really used (``credits_cost`` is then what is
reserved first).

There is no permission class: a permission runs before the view and never sees its response,
so it could reserve tokens but not settle them; the mixin reserves right after the view's
permission classes, which is where such a permission would sit.
"""

from rest_framework.response import Response
from rest_framework.views import APIView

from ..exceptions import ConfigurationError
from ..metering import Charge, Refused


class _RefusedByMeter(Exception):
    def __init__(self, refusal):
        super().__init__(str(refusal))
        self.refusal = refusal


class MeteredMixin:
    """Charge ``credits_cost`` tokens of ``credits_group`` per successful request.

    Each of ``credits_group`` and ``credits_cost`` is a value, a ``callable(request)`` (the cost
    only), or a dict by action (viewsets: ``"list"``, ``"create"``, an ``@action``'s name;
    other views: the HTTP method in lower case); a request whose action the dict does not name
    is not metered. Override ``get_credits_group(request)`` / ``get_credits_cost(request)`` for
    anything else (``None``: not metered).
    """

    credits_group = None
    credits_cost = 1
    #: The charge of the request being served (``None`` when it is not metered).
    credits_charge = None

    def get_credits_group(self, request):
        group = self._per_action(self.credits_group, request)
        if not isinstance(group, str) or not group:
            raise ConfigurationError(
                f"{type(self).__name__}.credits_group must name an offer group, got {group!r}."
            )
        return group

    def get_credits_cost(self, request):
        cost = self._per_action(self.credits_cost, request)
        return cost(request) if callable(cost) else cost

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.credits_charge = None
        if not self._serves(request):
            return
        cost = self.get_credits_cost(request)
        if cost is None:
            return
        try:
            self.credits_charge = Charge.open(request, self.get_credits_group(request), cost)
        except Refused as refusal:
            if refusal.status in (401, 403):
                # DRF decides between 401 and 403 from the view's authenticators.
                self.permission_denied(
                    request, message=refusal.body["detail"], code=refusal.body["code"]
                )
            raise _RefusedByMeter(refusal) from None

    def handle_exception(self, exc):
        if isinstance(exc, _RefusedByMeter):
            refusal = exc.refusal
            return refusal.decorate(Response(refusal.body, status=refusal.status))
        try:
            return super().handle_exception(exc)
        except BaseException:
            if self.credits_charge is not None:
                self.credits_charge.abort()
                self.credits_charge = None
            raise

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        charge, self.credits_charge = self.credits_charge, None
        if charge is not None:
            charge.finish(response)
        return response

    def _per_action(self, value, request):
        if isinstance(value, dict):
            return value.get(getattr(self, "action", None) or request.method.lower())
        return value

    def _serves(self, request):
        """Is there a handler to run? A 405 and DRF's own OPTIONS metadata are free."""
        method = request.method.lower()
        if method not in self.http_method_names or not hasattr(self, method):
            return False
        return not (method == "options" and type(self).options is APIView.options)


class MeteredAPIView(MeteredMixin, APIView):
    """An ``APIView`` charged per request: set ``credits_group`` and ``credits_cost``."""
