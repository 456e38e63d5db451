"""Ingest sends its PostgreSQL arrays as text literals (services.ingest_store.pg_array): the server
must read back exactly the values asyncpg would have sent element by element — any text, NULLs,
negative and huge integers, datetimes in any zone."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest_store import pg_array

ZONES = st.sampled_from([timezone.utc, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))])
AWARE = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1), timezones=ZONES)
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
CASES = {
    "bigint": st.integers(min_value=-2**63, max_value=2**63 - 1),
    "integer": st.integers(min_value=-2**31, max_value=2**31 - 1),
    "boolean": st.booleans(),
    "text": st.one_of(TEXT, st.sampled_from(["NULL", "null", "", " ", "{", "}", ",", '"', "\\", "a b", "{1,2}"])),
    "timestamptz": AWARE,
}


def _driver_url(pg_url: str) -> str:
    return pg_url.replace("postgresql+asyncpg://", "postgresql://")


async def _round_trip(url: str, pg_type: str, values: list) -> tuple[list, list]:  # type: ignore[type-arg]
    conn = await asyncpg.connect(url)
    try:
        literal = await conn.fetchval(f"SELECT CAST($1 AS text)::{pg_type}[]", pg_array(values, pg_type))
        native = await conn.fetchval(f"SELECT $1::{pg_type}[]", values)
    finally:
        await conn.close()
    return literal, native


@pytest.mark.parametrize("pg_type", sorted(CASES))
def test_a_text_literal_array_reads_back_as_the_values_asyncpg_would_send(pg_url, pg_type):
    @settings(max_examples=40, deadline=None)
    @given(values=st.lists(st.one_of(st.none(), CASES[pg_type]), max_size=20))
    def check(values):  # type: ignore[no-untyped-def]
        literal, native = asyncio.run(_round_trip(_driver_url(pg_url), pg_type, values))
        assert literal == native == values

    check()


def test_values_of_the_wrong_kind_are_refused_not_sent():
    with pytest.raises(TypeError):
        pg_array([1, "2"], "bigint")
    with pytest.raises(TypeError):
        pg_array([1.5], "bigint")
    with pytest.raises(TypeError):
        pg_array([3], "text")
    with pytest.raises(ValueError, match="naive"):
        pg_array([datetime(2026, 3, 1)], "timestamptz")
