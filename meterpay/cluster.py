"""Scale-out on one machine: private Redis / Mosquitto / PostgreSQL servers and the meterpay processes.

`Cluster` starts N `python app.py run` (one port, SO_REUSEPORT), M `python app.py worker`, K
`python app.py poller` and the simulated field (`meterpay.cluster_sim`), each with its own log
file, and can kill -9 / restart any of them: what scripts/scale.sh and bench/faults.py use. The
servers are private (free ports, a temporary directory) so a trial never touches the shared ones.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY = {"web": "meterpay listening on", "worker": "Starting worker", "poller": "starting (lease ttl",
         "sim": '"ready": true'}


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the launcher dies, even by kill -9 (no orphans left running)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s:g}s")


@dataclass
class Proc:
    """One child process with its log file; start / kill / stop / restart."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_marker: str | None = None
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        log.write(f"\n--- start {self.starts + 1} of {self.name}: {' '.join(self.argv)}\n".encode())
        log.flush()
        self._mark = self.log_path.stat().st_size
        self.popen = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        self.starts += 1
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        return self.log_path.read_bytes()[getattr(self, "_mark", 0):].decode(errors="replace")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.ready_marker and self.ready_marker not in self.output():
            if not self.alive():
                raise RuntimeError(f"{self.name} exited: {self.output()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready after {timeout_s:g}s: {self.output()[-2000:]}")
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.popen is not None
            os.kill(self.popen.pid, sig)
            self.popen.wait(10)

    def stop(self, timeout_s: float = 15.0) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.terminate()
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class Servers:
    """Private Redis and Mosquitto (and optionally PostgreSQL) in `root`, on free ports."""

    root: Path
    redis: Proc | None = None
    mosquitto: Proc | None = None
    postgres: PrivatePostgres | None = None
    redis_port: int = field(default_factory=free_port)
    mqtt_port: int = field(default_factory=free_port)

    def start_redis(self) -> None:
        if self.redis is None:
            argv = [shutil.which("redis-server") or "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                    "--save", "", "--appendonly", "no", "--dir", str(self.root)]
            self.redis = Proc("redis", argv, dict(os.environ), self.root / "redis.log", "Ready to accept")
        self.redis.start().wait_ready(20)

    def start_mosquitto(self) -> None:
        if self.mosquitto is None:
            data = self.root / "mosquitto"
            data.mkdir(exist_ok=True)
            conf = self.root / "mosquitto.conf"
            lines = [f"listener {self.mqtt_port} 127.0.0.1", "allow_anonymous true", "persistence true",
                     f"persistence_location {data}/", "max_queued_messages 100000", "log_dest stdout"]
            if os.geteuid() == 0:
                lines.append("user root")
            conf.write_text("\n".join(lines) + "\n")
            argv = [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)]
            self.mosquitto = Proc("mosquitto", argv, dict(os.environ), self.root / "mosquitto.log")
        self.mosquitto.start()
        wait_port(self.mqtt_port)

    def restart(self, which: str) -> float:
        """Stop (gracefully) and start one server; seconds it was down."""
        t0 = time.monotonic()
        if which == "postgres":
            assert self.postgres is not None
            self.postgres.restart()
        else:
            proc = self.redis if which == "redis" else self.mosquitto
            assert proc is not None
            proc.stop()
            (self.start_redis if which == "redis" else self.start_mosquitto)()
        return time.monotonic() - t0

    def stop(self) -> None:
        for proc in (self.mosquitto, self.redis):
            if proc is not None:
                proc.stop()
        if self.postgres is not None:
            self.postgres.stop()


@dataclass
class PrivatePostgres:
    """A throw-away PostgreSQL cluster (initdb, trust on loopback) that may be restarted at will."""

    root: Path
    port: int = field(default_factory=free_port)

    @staticmethod
    def available() -> bool:
        if not (shutil.which("initdb") and shutil.which("pg_ctl")):
            return False
        return os.geteuid() != 0 or shutil.which("runuser") is not None and _has_user("postgres")

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')[-1000:]}")

    @property
    def data(self) -> Path:
        return self.root / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        if not self.data.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:  # the server runs as postgres: it must reach and own its directory
                for parent in self.root.parents:
                    if parent.stat().st_uid == 0 and str(parent).startswith(tempfile.gettempdir() + "/"):
                        parent.chmod(parent.stat().st_mode | 0o011)
                shutil.chown(self.root, "postgres")
            self._run(shutil.which("initdb") or "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                      "--no-sync", "-E", "UTF8")
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c max_connections=300 -c shared_buffers=256MB")
        self._run(shutil.which("pg_ctl") or "pg_ctl", "-D", str(self.data), "-o", opts, "-l",
                  str(self.root / "postgres.log"), "-w", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(shutil.which("pg_ctl") or "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@dataclass
class Cluster:
    """The meterpay processes of one trial; `env` carries DATABASE_URL, REDIS_URL, MQTT_URL and the rest."""

    root: Path
    env: dict[str, str]
    webs: int = 2
    workers: int = 2
    pollers: int = 2
    port: int = field(default_factory=free_port)
    procs: dict[str, Proc] = field(default_factory=dict)
    stopping: bool = False  # set by stop(): a supervisor must not start anything again

    def _proc(self, name: str, argv: list[str], extra: dict[str, str] | None = None) -> Proc:
        env = {**os.environ, **self.env, **(extra or {}), "PYTHONUNBUFFERED": "1"}
        kind = name.split("-")[0]
        self.procs[name] = Proc(name, [sys.executable, *argv], env, self.root / f"{name}.log", READY.get(kind))
        return self.procs[name]

    def start_sim(self, speed: float, mqtt_interval_s: float, drop_rate: float = 0.0) -> str:
        """Start the simulated field (before the pollers: it writes the gateways' ports); its control URL."""
        proc = self._proc("sim", ["-m", "meterpay.cluster_sim", "--speed", str(speed), "--mqtt-interval",
                                  str(mqtt_interval_s), "--drop", str(drop_rate)])
        proc.start().wait_ready(120)
        line = next(ln for ln in proc.output().splitlines() if '"ready": true' in ln)
        return str(json.loads(line)["control"])

    def start(self) -> None:
        """Every web, worker and poller, then wait until each says it is ready."""
        for i in range(1, self.webs + 1):
            # MQTT_URL empty: the web app would start its own bridge (meterpay.embedded.mqtt_ctx); in
            # scale-out the one bridge runs in the poller holding the MQTT token (services.poller_process)
            self._proc(f"web-{i}", ["app.py", "run"], {"PORT": str(self.port), "EMBEDDED_WORKER": "off", "MQTT_URL": ""})
        for i in range(1, self.workers + 1):
            self._proc(f"worker-{i}", ["app.py", "worker"])
        for i in range(1, self.pollers + 1):
            self._proc(f"poller-{i}", ["app.py", "poller"], {"POLLER_NAME": f"poller-{i}"})
        started = [p.start() for name, p in self.procs.items() if name != "sim" and not p.alive()]
        for proc in started:
            proc.wait_ready(120)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def of(self, kind: str) -> list[Proc]:
        return [p for n, p in self.procs.items() if n.split("-")[0] == kind]

    def kill_and_restart(self, name: str, down_s: float = 0.0) -> None:
        """kill -9 one process, leave it down for `down_s`, start it again and wait until ready."""
        proc = self.procs[name]
        proc.kill(signal.SIGKILL)
        time.sleep(down_s)
        proc.start().wait_ready(120)

    def stop(self) -> None:
        """SIGTERM everything (pollers release their leases), the field last."""
        self.stopping = True
        for name, proc in self.procs.items():
            if name != "sim":
                proc.stop()
        if "sim" in self.procs:
            self.procs["sim"].stop()

    def exited(self) -> dict[str, int]:
        """Processes that died on their own (not killed by us): name -> exit code."""
        return {n: p.popen.returncode for n, p in self.procs.items()
                if p.popen is not None and p.popen.poll() is not None and p.popen.returncode not in (0, -9, -15)}
