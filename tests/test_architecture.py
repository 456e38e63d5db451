"""The billing core stays pure: it imports no database, network or framework code."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = ("sqlalchemy", "aiohttp", "arq", "pymodbus", "aiomqtt", "paho", "wechatpy", "alipay", "redis",
             "asyncpg", "aiosqlite", "socket", "requests", "store", "services", "devices", "payments")


def test_billing_core_imports_no_io():
    offenders = []
    for path in Path(__file__).resolve().parent.parent.joinpath("billing").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
