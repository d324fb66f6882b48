"""schemathesis against the generated OpenAPI schema, on a live server with a signed-in
superuser: no 5xx, and every response conforms to the schema."""

import base64
import json

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from user_credits import services

from .factories import make_group, make_holder, make_offer, make_user


def api_schema():
    """The schema the API serves at schema/, generated in-process (no request needed)."""
    from drf_spectacular.renderers import OpenApiJsonRenderer

    from user_credits.api.schema import api_schema

    spec = api_schema("api/credits/")
    return schemathesis.openapi.from_dict(json.loads(OpenApiJsonRenderer().render(spec)))


@pytest.fixture
def basic_auth(transactional_db):
    root = make_user("root", is_staff=True, is_superuser=True)
    group = make_group("g")
    make_offer("Pack", group=group)
    services.grant(make_holder(user=root), group, 1_000)
    token = base64.b64encode(b"root:pw").decode()
    return {"Authorization": f"Basic {token}"}


schema = api_schema()
pytestmark = pytest.mark.django_db(transaction=True)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_responses_match_the_schema(case, live_server, basic_auth):
    case.call_and_validate(
        base_url=live_server.url,
        headers=basic_auth,
        checks=[not_a_server_error, response_schema_conformance],
    )
