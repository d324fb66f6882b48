"""Group keys: immutable once a group has accounts, and resolved without a query once in use.

``services.common.resolve_group`` caches ``key → id`` per process for groups with ledger
entries; these tests prove the premises of that cache (a key in use cannot change, a group in
use cannot be deleted, nothing uncommitted is remembered) and that the cache is used.
"""

import pytest
from django.db import connection, transaction
from django.db.models import ProtectedError
from django.test.utils import CaptureQueriesContext

from user_credits import services
from user_credits.exceptions import InvalidArgument, UnknownOfferGroup
from user_credits.models import OfferGroup
from user_credits.services.common import resolve_group

from .factories import make_group, make_holder, make_user


def _group_queries(queries):
    return [q["sql"] for q in queries if "user_credits_offergroup" in q["sql"]]


# --- a key in use is immutable ----------------------------------------------------------------


@pytest.mark.django_db
def test_key_of_a_group_with_accounts_cannot_change(holder):
    group = make_group("api-calls", "API calls")
    services.grant(holder, group, 10)
    group.key = "calls"
    with pytest.raises(InvalidArgument) as raised:
        group.save()
    assert raised.value.field == "key" and "cannot change" in str(raised.value)
    with pytest.raises(Exception) as invalid:
        group.full_clean()
    assert list(invalid.value.message_dict) == ["key"]
    assert OfferGroup.objects.get(pk=group.pk).key == "api-calls"
    # A fresh instance with the same pk is refused too (Django saves it as an UPDATE).
    with pytest.raises(InvalidArgument):
        OfferGroup(pk=group.pk, key="calls", name="API calls").save()
    assert OfferGroup.objects.get(pk=group.pk).key == "api-calls"


@pytest.mark.django_db
def test_name_may_change_and_key_of_an_unused_group_too(holder):
    group = make_group("api-calls", "API calls")
    services.grant(holder, group, 10)
    group.name = "Calls to the API"
    group.full_clean()
    group.save()
    assert OfferGroup.objects.get(pk=group.pk).name == "Calls to the API"
    fresh = make_group("typo-kye", "Typo")
    fresh.key = "typo-key"
    fresh.full_clean()
    fresh.save()
    assert OfferGroup.objects.get(pk=fresh.pk).key == "typo-key"


@pytest.mark.django_db
def test_group_in_use_cannot_be_deleted(holder):
    group = make_group("api-calls")
    services.grant(holder, group, 10)
    with pytest.raises(ProtectedError):
        OfferGroup.objects.filter(pk=group.pk).delete()
    assert OfferGroup.objects.filter(key="api-calls").exists()


@pytest.mark.django_db
def test_admin_refuses_a_key_change_on_the_key_field(client, holder):
    group = make_group("api-calls", "API calls")
    services.grant(holder, group, 10)
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    response = client.post(
        f"/admin/user_credits/offergroup/{group.pk}/change/", {"key": "calls", "name": "API"}
    )
    assert response.status_code == 200  # the form again, with the error on the key
    errors = response.context["adminform"].form.errors
    assert list(errors) == ["key"] and "cannot change" in errors["key"][0]
    assert OfferGroup.objects.get(pk=group.pk).key == "api-calls"


# --- the cache -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_key_in_use_resolves_without_a_query():
    holder = make_holder()
    group = make_group("api-calls", "API calls")
    services.grant(holder, group, 10)
    first = resolve_group("api-calls")  # committed in autocommit: remembered
    assert first.pk == group.pk
    with CaptureQueriesContext(connection) as queries:
        again = resolve_group("api-calls")
        services.consume(holder, "api-calls", 1, idempotency_key="k1")
    assert (again.pk, again.key) == (group.pk, "api-calls")
    assert _group_queries(queries) == []
    # The name is not cached: a rename elsewhere is seen (one query, on first access).
    OfferGroup.objects.filter(pk=group.pk).update(name="Renamed")
    with CaptureQueriesContext(connection) as queries:
        assert resolve_group("api-calls").name == "Renamed"
    assert len(queries) == 1
    assert services.get_balance(holder, "api-calls") == 9


@pytest.mark.django_db(transaction=True)
def test_group_without_entries_is_looked_up_each_time():
    make_group("fresh")
    resolve_group("fresh")
    with CaptureQueriesContext(connection) as queries:
        resolve_group("fresh")
    assert len(_group_queries(queries)) == 1
    # Its key may still change, and the old key is then unknown at once.
    OfferGroup.objects.filter(key="fresh").update(key="renamed")
    with pytest.raises(UnknownOfferGroup):
        resolve_group("fresh")
    assert resolve_group("renamed").key == "renamed"


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_group_is_not_remembered():
    holder = make_holder()
    with pytest.raises(RuntimeError), transaction.atomic():
        group = make_group("temp")
        services.grant(holder, group, 10)
        assert resolve_group("temp").pk == group.pk
        raise RuntimeError("roll back")
    with pytest.raises(UnknownOfferGroup):
        resolve_group("temp")
    again = make_group("temp")  # the same key, another row
    services.grant(holder, again, 5)
    assert resolve_group("temp").pk == again.pk
    assert services.consume(holder, "temp", 2).balance == 3


@pytest.mark.django_db(transaction=True)
def test_remembered_inside_a_transaction_only_once_it_commits():
    holder = make_holder()
    group = make_group("api-calls")
    services.grant(holder, group, 10)
    with transaction.atomic():
        resolve_group("api-calls")
        with CaptureQueriesContext(connection) as queries:
            resolve_group("api-calls")
        assert len(_group_queries(queries)) == 1  # not yet committed
    with CaptureQueriesContext(connection) as queries:
        resolve_group("api-calls")
    assert _group_queries(queries) == []


@pytest.mark.django_db
def test_unknown_key_is_an_error_naming_the_field():
    with pytest.raises(UnknownOfferGroup) as raised:
        resolve_group("nope")
    assert raised.value.field == "offer_group"


@pytest.mark.postgres(reason="needs PostgreSQL: the one-round-trip consume is a PL/pgSQL function")
def test_the_documented_call_is_one_round_trip_on_postgresql():
    from django.utils.functional import SimpleLazyObject

    loaded = make_holder()
    request_user = SimpleLazyObject(lambda: loaded)  # what request.user is
    services.grant(loaded, make_group("api-calls"), 10)
    services.consume(request_user, "api-calls", 1, idempotency_key="first")
    with CaptureQueriesContext(connection) as queries:
        result = services.consume(request_user, "api-calls", 3, idempotency_key="req-42")
    assert result.balance == 6
    assert len(queries) == 1, [q["sql"] for q in queries]
