"""The whole application as production builds it (meterpay.web.init_app), with every provider configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterpay.settings import Settings
from payments.sandbox import generate_keyset
from tests.admin.conftest import _fast_hash, world  # noqa: F401 - fixtures used by this folder

SECRETS = {  # distinctive values, so a leak cannot hide among ordinary text
    "SECRET_KEY": "sk-sweep-5f1d9c0a7b3e42d8a6c1",
    "WECHAT_TOKEN": "wxtoken-sweep-93b1c7",
    "WECHAT_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    "WECHAT_SECRET": "wxsecret-sweep-0c4e8a2f",
    "SMTP_PASSWORD": "smtp-sweep-7d2b9e41",
    "SMS_ACCESS_KEY_SECRET": "sms-sweep-1a9f3c77",
    "WEBHOOK_SECRET": "hook-sweep-4e6a0b18",
}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: this folder checks the HTTP surface, which does not depend on the database."""
    return f"sqlite+aiosqlite:///{tmp_path}/sweep.db"


@pytest.fixture
def full_settings(db_url: str, tmp_path: Path) -> Settings:
    keys = generate_keyset()
    env = keys.write_env(tmp_path, alipay_gateway="http://127.0.0.1:9/gateway.do",
                         wechatpay_gateway="http://127.0.0.1:9")
    env.update(SECRETS, DATABASE_URL=db_url, WECHAT_APPID="wxsweep0000000000", METERPAY_FAST_HASH="1",
               SMTP_HOST="127.0.0.1", SMTP_PORT="9", SMTP_USER="sweep", SMS_ACCESS_KEY_ID="sweep-id")
    return Settings.from_env(env=env, dotenv=None)
