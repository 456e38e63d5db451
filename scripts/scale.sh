#!/usr/bin/env bash
# One command for a local scale-out trial: PostgreSQL (a private cluster on a free port), its own
# Redis (arq) and Mosquitto (MQTT), N web processes on one port (SO_REUSEPORT), M arq workers,
# K pollers sharing the gateways by lease, and a simulated field (Modbus RTU / DL/T 645 /
# Modbus TCP / MQTT gateways) seeded into the database. Everything stops on Ctrl-C.
#
#   bash scripts/scale.sh                                  # 2 web, 2 workers, 2 pollers, 12+2 gateways
#   bash scripts/scale.sh --webs 4 --pollers 3 --gateways 40 --meters-per-gateway 32 --poll-interval 30
#   bash scripts/scale.sh --shared-postgres                # a database on TEST_DATABASE_URL's server instead
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v pg_ctl >/dev/null; then  # Debian keeps initdb/pg_ctl off PATH
  PATH="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1):$PATH"
  export PATH
fi
[ -x .venv/bin/python ] || bash scripts/venv.sh
exec .venv/bin/python bench/trial.py "$@"
