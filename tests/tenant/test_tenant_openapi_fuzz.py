"""Schemathesis fuzzes every operation of the served OpenAPI document: no answer is a server error."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from api import tokens
from tests.tenant.live import live_tenant_server
from tests.tenant.seed import SECRET

OPENID = "o-fuzz"


def test_no_operation_of_the_tenant_api_answers_a_server_error(tmp_path):
    with live_tenant_server(tmp_path / "fuzz.db", OPENID) as (url, _):
        schema = schemathesis.openapi.from_url(f"{url}/api/openapi.json")
        auth = {"Authorization": f"Bearer {tokens.issue(SECRET, OPENID, 3600)}"}
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 13
        failures: list[str] = []
        calls = 0
        for operation in operations:
            @given(case=operation.as_strategy())
            @settings(max_examples=10, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def probe(case: schemathesis.Case) -> None:
                nonlocal calls
                calls += 1
                response = case.call(base_url=url, headers=auth)
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                    f"{response.text[:200]}")

            probe()
        assert failures == []
        assert calls >= 13 * 5
