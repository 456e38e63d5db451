"""Migrations build the same schema as the models on SQLite and PostgreSQL; /healthz reports the DB."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from meterpay.settings import Settings
from meterpay.web import init_app
from store.db import make_engine
from store.ledger_guard import include_object
from store.migrate import upgrade
from store.models import Base
from tests.conftest import PG_ADMIN_URL, RUN_ID, _pg_admin


async def _diff(url: str) -> list:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(
                c, opts={"include_object": include_object(c.dialect.name)}), Base.metadata))
    finally:
        await engine.dispose()


def test_migrations_match_the_models_on_sqlite(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    upgrade(url)
    assert asyncio.run(_diff(url)) == []


def test_migrations_match_the_models_on_postgres(pg_url):
    name = f"meterpay_mig_{RUN_ID}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        assert asyncio.run(_diff(url)) == []
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def test_healthz_reports_the_database(aiohttp_client, tmp_path):
    settings = Settings.from_env({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/h.db"}, dotenv=None)
    client = await aiohttp_client(init_app(settings))
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["database"] == "ok"


async def test_healthz_says_degraded_when_the_database_is_unreachable(aiohttp_client):
    settings = Settings.from_env({"DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:1/none",
                                  "REDIS_URL": "redis://127.0.0.1:1/0"}, dotenv=None)
    client = await aiohttp_client(init_app(settings))
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 503 and body["database"] == "down" and body["redis"] == "down"


def test_settings_never_show_secrets():
    s = Settings.from_env({"SECRET_KEY": "hunter2-very-secret", "WECHAT_TOKEN": "tok"}, dotenv=None)
    assert "hunter2" not in repr(s) and "tok" not in repr(s)


def test_configured_secrets_are_masked_in_log_lines(caplog):
    import logging

    from meterpay.logsafe import RedactSecrets

    s = Settings.from_env({"SECRET_KEY": "k" * 40, "SMS_ACCESS_KEY_SECRET": "sms-secret-value",
                           "SMTP_PASSWORD": "mail-pass-123", "SMTP_HOST": "mail.example"}, dotenv=None)
    logger = logging.getLogger("meterpay.test.redact")
    flt = RedactSecrets(s.secret_values())
    logger.addFilter(flt)
    try:
        with caplog.at_level(logging.INFO, logger="meterpay.test.redact"):
            logger.info("calling %s with %s and %s", s.get("SMTP_HOST"), s.get("SMTP_PASSWORD"),
                        s.get("SMS_ACCESS_KEY_SECRET"))
    finally:
        logger.removeFilter(flt)
    text = caplog.text
    assert "mail.example" in text and "mail-pass-123" not in text and "sms-secret-value" not in text
