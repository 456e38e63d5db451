"""Fixtures for the tenant tests: a seeded database and the port over it."""

from __future__ import annotations

import pytest

from services.tenant import DbTenantPort
from tests.tenant.seed import Clock, Seeded, make_port, seed


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def seeded(sessions) -> Seeded:
    return await seed(sessions)


@pytest.fixture
def port(sessions, seeded: Seeded, clock: Clock) -> DbTenantPort:
    return make_port(sessions, seeded, clock)
