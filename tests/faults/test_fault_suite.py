"""The fault suite's short form, end to end: every fault is injected and nothing is lost or doubled."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import need_service

ROOT = Path(__file__).resolve().parents[2]
FAULTS = ("kill9_web", "kill9_worker", "kill9_poller", "restart_redis", "restart_mosquitto", "drop_5pct_replies",
          "mqtt_offline_replay", "mqtt_history_replay", "notify_duplicate", "notify_concurrent", "notify_forged",
          "notify_tampered", "notify_out_of_order")


@pytest.mark.slow
@pytest.mark.timeout(660)  # the run (~2 min) plus up to 4 min for credits to land after the faults
def test_the_quick_fault_suite_injects_every_fault_and_loses_or_doubles_nothing(tmp_path):
    for binary in ("redis-server", "mosquitto"):
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            need_service(binary, "the fault suite starts its own")
    done = subprocess.run([sys.executable, "bench/faults.py", "--quick"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    result = json.loads(lines[-1])
    expected = FAULTS + (("restart_postgres",) if result["private_postgres"] else ())
    assert {f: result.get(f"injected_{f}", 0) for f in expected if not result.get(f"injected_{f}")} == {}
    bad = {k: v for k, v in result.items() if k.startswith(("lost_", "double_")) and v}
    assert bad == {}, f"{bad}; logs in {result.get('run_dir')}"
    assert result["paid_orders"] > 50 and result["readings"] > 500 and result["meter_credits_confirmed"] > 0
    assert result["cutoffs_confirmed"] > 0 and result["restores_confirmed"] > 0
    assert max(result["takeover_s"]) < 30
