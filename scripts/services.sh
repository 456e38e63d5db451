#!/usr/bin/env bash
# Install (Debian) and start the local servers the tests use: PostgreSQL, Redis, Mosquitto, Chromium.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v mosquitto >/dev/null || need+=(mosquitto)
[ -x /usr/bin/chromium ] || need+=(chromium)
dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || need+=(fonts-wqy-microhei)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! (echo > /dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! (echo > /dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! (echo > /dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  $SUDO mkdir -p /run/mosquitto /var/log/mosquitto
  $SUDO chown mosquitto: /run/mosquitto /var/log/mosquitto 2>/dev/null || true
  $SUDO mosquitto -d -c /etc/mosquitto/mosquitto.conf
fi
for i in $(seq 1 30); do
  ok=1
  for p in 5432 6379 1883; do (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null || ok=0; done
  [ $ok -eq 1 ] && break
  sleep 1
done
# PostgreSQL trust auth for local tests: nothing to do on the service machines (already trust).
