"""Metering overhead: a trivial DRF view unmetered, calling ``services.consume`` by hand, and
as a ``MeteredAPIView`` (hold before the view, capture after), on PostgreSQL.

    DATABASE_URL=postgres://… .venv/bin/python bench/metering.py [REQUESTS]

Each request goes through DRF (authentication forced, as a token would), the view, and
rendering; each variant runs REQUESTS requests (default 1,000; a CI smoke run may pass 20)
in each of three rounds that interleave the variants, and its best round counts. The
overhead is the time above the unmetered view; the goal is a metered request costing no more
than the view calling ``consume`` by hand.
"""

import time

import common

ROUNDS = 3


def main():
    requests = common.size(1000, 20)
    state = common.setup()
    try:
        run(requests)
    finally:
        common.teardown(state)


def run(requests):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory, force_authenticate
    from rest_framework.views import APIView

    from tests.factories import make_group, make_user
    from user_credits import services
    from user_credits.api.metering import MeteredAPIView

    user = make_user()
    make_group("bench")
    services.grant(user, "bench", 10 * ROUNDS * requests + 1000)

    class Unmetered(APIView):
        def get(self, request):
            return Response({"ok": True})

    class ByHand(APIView):
        def get(self, request):
            services.consume(request.user, "bench", 1)
            return Response({"ok": True})

    class Metered(MeteredAPIView):
        credits_group, credits_cost = "bench", 1

        def get(self, request):
            return Response({"ok": True})

    factory = APIRequestFactory()

    def client(view_class, headers=None):
        view = view_class.as_view()
        counter = iter(range(10**9))

        def one():
            extra = {}
            if headers:
                extra["HTTP_IDEMPOTENCY_KEY"] = f"bench-{next(counter)}"
            request = factory.get("/", **extra)
            force_authenticate(request, user)
            response = view(request)
            response.render()
            assert response.status_code == 200, response.data

        return one

    variants = [
        ("unmetered (reference)", client(Unmetered)),
        ("services.consume by hand", client(ByHand)),
        ("MeteredAPIView", client(Metered)),
        ("MeteredAPIView + Idempotency-Key", client(Metered, headers=True)),
    ]
    queries = {}
    for name, one in variants:
        for _ in range(20):
            one()  # warm
        with CaptureQueriesContext(connection) as captured:
            one()
        queries[name] = len(captured)
    # Rounds interleave the variants, so that a busy moment of the machine hits them all.
    best = {}
    for _ in range(ROUNDS):
        for name, one in variants:
            start = time.perf_counter()
            for _ in range(requests):
                one()
            elapsed = time.perf_counter() - start
            best[name] = min(best.get(name, elapsed), elapsed)
    timings = {name: elapsed / requests * 1e6 for name, elapsed in best.items()}

    base = timings["unmetered (reference)"]
    by_hand = timings["services.consume by hand"] - base
    rows = []
    for name, _ in variants:
        us = timings[name]
        over = us - base
        rows.append(
            (
                name,
                f"{us:.0f}",
                f"{1e6 / us:.0f}",
                f"{us / base:.2f}",
                f"{over:+.0f}",
                "" if name.startswith("unmetered") else f"{over / by_hand:.2f}",
                queries[name],
            )
        )
    common.table(
        f"metering: {requests} requests × best of {ROUNDS} ({common.machine()})",
        ("view", "µs/request", "requests/s", "× unmetered", "overhead µs", "× consume", "queries"),
        rows,
    )
    assert services.get_balance(user, "bench") >= 0


if __name__ == "__main__":
    main()
