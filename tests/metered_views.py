"""Metered views of every kind, for ``test_metering.py`` (urlconf: ``tests.metered_views``).

Each view behaves as its query string says: ``outcome`` = ``ok`` (200, the default), ``raise``
(an exception), ``invalid`` (a DRF ``ValidationError``) or a status code (``500``, ``404``…);
``used`` = tokens to report in ``request.credits.used``. Streams produce ``chunks`` chunks
(default 5), each reporting one token more; ``outcome=midstream`` raises after the second
chunk. Every call records, in ``SEEN``, the view's name, the tokens available while it runs
(the reservation held) and its outcome.
"""

import threading

from asgiref.sync import sync_to_async
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from user_credits import services
from user_credits.api.metering import MeteredAPIView, MeteredMixin
from user_credits.metering import consumes, meters

SEEN = []
_seen_lock = threading.Lock()


def _behave(request, name):
    """Record the call; return the status to answer, or raise."""
    credits = request.credits
    outcome = request.GET.get("outcome", "ok")
    with _seen_lock:
        SEEN.append((name, services.get_balance(credits.holder, credits.group), outcome))
    if "used" in request.GET:
        credits.used = int(request.GET["used"])
    if outcome == "raise":
        raise RuntimeError(f"{name} failed")
    if outcome == "invalid":  # a DRF error its exception handler answers (400)
        raise ValidationError({"prompt": ["This field is required."]})
    return 200 if outcome in ("ok", "midstream") else int(outcome)


def _chunks(request):
    for i in range(int(request.GET.get("chunks", 5))):
        if i == 2 and request.GET.get("outcome") == "midstream":
            raise RuntimeError("the stream failed")
        request.credits.used += 1
        yield f"chunk {i}\n"


async def _achunks(request):
    for chunk in _chunks(request):
        yield chunk


# --- plain Django ----------------------------------------------------------------------------


@consumes("calls", cost=1)
def function_view(request):
    return HttpResponse("served", status=_behave(request, "function"))


@consumes("calls", cost=lambda request: int(request.GET.get("cost", 1)))
def priced_view(request):
    return HttpResponse("served", status=_behave(request, "priced"))


@meters("ai", reserve=10)
def metered_view(request):
    return HttpResponse("served", status=_behave(request, "metered"))


@method_decorator(consumes("calls", cost=1), name="dispatch")
class ClassView(View):
    def get(self, request):
        return HttpResponse("served", status=_behave(request, "class"))


@consumes("calls", cost=1)
async def async_view(request):
    status = await sync_to_async(_behave)(request, "async")
    return HttpResponse("served", status=status)


@meters("ai", reserve=10)
def stream_view(request):
    status = _behave(request, "stream")
    return StreamingHttpResponse(_chunks(request), status=status)


@meters("ai", reserve=10)
async def async_stream_view(request):
    status = await sync_to_async(_behave)(request, "async-stream")
    return StreamingHttpResponse(_achunks(request), status=status)


# --- DRF -------------------------------------------------------------------------------------


class Completion(MeteredAPIView):
    credits_group, credits_cost = "calls", 1

    def get(self, request):
        return Response({"served": True}, status=_behave(request, "apiview"))


class Reports(MeteredMixin, viewsets.ViewSet):
    credits_group = "calls"
    credits_cost = {"create": 1, "export": 3}

    def list(self, request):  # not in credits_cost: free
        return Response([])

    def create(self, request):
        return Response({"served": True}, status=_behave(request, "viewset"))

    @action(detail=False, methods=["post"])
    def export(self, request):
        return Response({"exported": True}, status=_behave(request, "export"))


urlpatterns = [
    path("function/", function_view),
    path("priced/", priced_view),
    path("metered/", metered_view),
    path("class/", ClassView.as_view()),
    path("async/", async_view),
    path("stream/", stream_view),
    path("async-stream/", async_stream_view),
    path("apiview/", Completion.as_view()),
    path("reports/", Reports.as_view({"get": "list", "post": "create"})),
    path("reports/export/", Reports.as_view({"post": "export"})),
]
