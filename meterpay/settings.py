"""One typed settings object, built once from the environment (and an optional .env file).

Secrets are masked in repr and never logged. Nothing reads the environment at import time.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

SECRET_SUFFIXES = ("SECRET", "SECRET_KEY", "PASSWORD", "TOKEN", "AES_KEY", "APIV3_KEY", "PRIVATE_KEY")


def is_secret(name: str) -> bool:
    """Settings whose values must never be shown: by name, so a new provider's secret is covered too."""
    return name.endswith(SECRET_SUFFIXES)


def _read_dotenv(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if path.is_file():
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip().strip('"').strip("'")
    return out


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///meterpay.db"
    redis_url: str | None = None
    mqtt_url: str | None = None
    mqtt_prefix: str = "meterpay"
    host: str = "127.0.0.1"
    port: int = 8080
    secret_key: str = field(default="", repr=False)
    public_url: str = "http://127.0.0.1:8080"
    site_timezone: str = "Asia/Shanghai"
    embedded_worker: bool = True
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)  # provider settings by env name

    def secret_values(self) -> list[str]:
        """The configured secret values (for log redaction); short values are ignored to avoid noise."""
        values = [v for k, v in self.extra.items() if is_secret(k) and len(v) >= 6]
        return [*values, self.secret_key] if self.secret_key else values

    def get(self, name: str, default: str | None = None) -> str | None:
        """A provider setting (ALIPAY_APPID, SMTP_HOST, ...) by its environment name."""
        return self.extra.get(name, default)

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"Settings({shown}, secrets=***)"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
        merged = {**(_read_dotenv(dotenv) if dotenv else {}), **(env if env is not None else os.environ)}
        secret = merged.get("SECRET_KEY") or ""
        if not secret:
            if merged.get("METERPAY_ENV", "dev") == "production":
                raise RuntimeError("SECRET_KEY must be set in production")
            secret = secrets.token_urlsafe(32)  # dev: sessions do not survive a restart
        return cls(
            database_url=merged.get("DATABASE_URL", cls.database_url),
            redis_url=merged.get("REDIS_URL") or None,
            mqtt_url=merged.get("MQTT_URL") or None,
            mqtt_prefix=merged.get("MQTT_PREFIX", cls.mqtt_prefix),
            host=merged.get("HOST", cls.host),
            port=int(merged.get("PORT", cls.port)),
            secret_key=secret,
            public_url=merged.get("PUBLIC_URL", f"http://{merged.get('HOST', cls.host)}:{merged.get('PORT', cls.port)}"),
            site_timezone=merged.get("SITE_TIMEZONE", cls.site_timezone),
            embedded_worker=merged.get("EMBEDDED_WORKER", "auto") != "off",
            extra={k: v for k, v in merged.items() if k.isupper()},
        )
