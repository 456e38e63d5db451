"""meterpay entry point: `python app.py run | worker | migrate | demo | simulate`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from meterpay.settings import Settings

log = logging.getLogger("meterpay")


def _migrate(settings: Settings) -> None:
    from store.migrate import upgrade

    upgrade(settings.database_url)
    log.info("database migrated")


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> None:
    _migrate(settings)


def cmd_run(settings: Settings, args: argparse.Namespace) -> None:
    from meterpay.runner import serve

    asyncio.run(serve(settings, simulate=getattr(args, "simulate", False), settle_heap=True))


def cmd_demo(settings: Settings, args: argparse.Namespace) -> None:
    """Migrate, fill a demo site if the database is empty, then serve it with simulated meters."""
    from meterpay.demo import seed_if_empty
    from meterpay.runner import serve

    _migrate(settings)
    asyncio.run(seed_if_empty(settings, rooms_per_floor=args.rooms_per_floor, days=args.days))
    if not args.no_serve:
        asyncio.run(serve(settings, simulate=True, settle_heap=True))


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> None:
    from jobs.worker import run_worker

    run_worker(settings, settle_heap=True)


def cmd_poller(settings: Settings, _args: argparse.Namespace) -> None:
    from services.poller_process import run_poller

    run_poller(settings, settle_heap=True)


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> None:
    from devices.sim import cli_main

    cli_main(args.rest)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="app.py", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve the web app (embedded worker when REDIS_URL is unset)") \
        .add_argument("--simulate", action="store_true", help="also start simulated meters")
    sub.add_parser("migrate", help="apply database migrations")
    demo = sub.add_parser("demo", help="create a demo site and serve it with simulated meters")
    demo.add_argument("--rooms-per-floor", type=int, default=20)
    demo.add_argument("--days", type=int, default=60)
    demo.add_argument("--no-serve", action="store_true", help="only create the demo data")
    sub.add_parser("worker", help="run the arq worker (needs REDIS_URL)")
    sub.add_parser("poller", help="poll the gateways this process holds a lease on (scale-out)")
    sim = sub.add_parser("simulate", help="run the meter simulator")
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    from meterpay import logsafe

    logsafe.install(settings)
    handlers = {"run": cmd_run, "migrate": cmd_migrate, "demo": cmd_demo, "worker": cmd_worker,
                "poller": cmd_poller, "simulate": cmd_simulate}
    handlers[args.command](settings, args)


if __name__ == "__main__":
    main(sys.argv[1:])
