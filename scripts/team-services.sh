#!/usr/bin/env bash
# The team profile's servers without Docker: PostgreSQL (MLflow's backend store) and Redis
# (Feast's online store), from Debian's packages, as plain processes under one directory.
# `install` also brings Debian's Chromium, which the report tests open the HTML reports in
# (headless, offline: tests/report_browser.py); nothing here starts it.
#
#   scripts/team-services.sh install                  # apt-get the packages if missing (root)
#   scripts/team-services.sh check                    # exit 1, naming missing servers
#   PGPASSWORD=... [AIINFRA_REDIS_PASSWORD=...] \
#     scripts/team-services.sh start DIR [PGPORT] [REDISPORT]
#   scripts/team-services.sh stop DIR
#
# `start` creates, on first use, a cluster in DIR/pg with the role `aiinfra` (password from
# PGPASSWORD, never stored in the repo) and the database `mlflow`, listening on 127.0.0.1 only;
# Redis keeps nothing on disk (--save ''), and reads its password from an owner-only
# DIR/redis.conf, never from its command line. The tests start their own pair on free ports; with
# Docker, docker/compose.yaml brings up the same services.
set -euo pipefail

pg_bindir() {
  # Debian installs the server binaries per major version, outside PATH.
  local newest="" dir
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x "$dir/pg_ctl" ]] && newest=$(printf '%s\n%s\n' "$newest" "$dir" | sort -V | tail -n 1)
  done
  if [[ -n "$newest" ]]; then
    echo "$newest"
  elif command -v pg_ctl >/dev/null; then
    dirname "$(command -v pg_ctl)"
  fi
}

# What `start` needs.
missing_servers() {
  local out=()
  [[ -n "$(pg_bindir)" ]] || out+=(postgresql)
  command -v redis-server >/dev/null || out+=(redis-server)
  echo "${out[*]}"
}

# What `install` brings: the servers and the report tests' browser.
missing() {
  local out
  read -r -a out <<<"$(missing_servers)"
  command -v chromium >/dev/null || out+=(chromium)
  echo "${out[*]}"
}

# PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

cmd_install() {
  local need
  read -r -a need <<<"$(missing)"
  if [[ ${#need[@]} -eq 0 ]]; then
    echo "team services: postgresql, redis-server and chromium already installed"
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "team services: missing ${need[*]}; install with: sudo apt-get install ${need[*]}" >&2
    return 1
  fi
  echo "team services: installing ${need[*]}"
  apt-get update -qq
  # No service is started by the packages where systemd is absent (containers, CI); the tests
  # and `start` run their own instances anyway.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    >/dev/null
}

# Fails for the servers only: `start` and the team profile's test need them, not Chromium (the
# report tests skip without it, or fail where AIINFRA_REQUIRE_BROWSER is set).
cmd_check() {
  local need
  need=$(missing_servers)
  if ! command -v chromium >/dev/null; then
    echo "note: chromium missing, the report tests skip (scripts/team-services.sh install)" >&2
  fi
  if [[ -n "$need" ]]; then
    echo "missing $need (scripts/team-services.sh install, or apt-get install $need)" >&2
    return 1
  fi
}

# Redis's password goes in an owner-only config file, never on a command line (which any
# local user can read). For redis-cli, export REDISCLI_AUTH rather than passing -a.
redis_config() {
  local file=$1 password=${AIINFRA_REDIS_PASSWORD:-}
  (
    umask 077
    rm -f "$file"
    if [[ -n "$password" ]]; then
      password=${password//\\/\\\\}
      printf 'requirepass "%s"\n' "${password//\"/\\\"}"
    fi >"$file"
  )
}

# --daemonize returns before the server answers: wait until it does (and takes the password).
wait_redis() {
  local port=$1 answer
  for _ in $(seq 100); do
    answer=$(
      [[ -z "${AIINFRA_REDIS_PASSWORD:-}" ]] || export REDISCLI_AUTH=$AIINFRA_REDIS_PASSWORD
      redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null
    ) || true
    [[ $answer == PONG ]] && return 0
    sleep 0.1
  done
  echo "Redis did not answer on 127.0.0.1:$port" >&2
  return 1
}

cmd_start() {
  local dir=${1:?usage: start DIR [PGPORT] [REDISPORT]} pgport=${2:-5432} redisport=${3:-6379}
  : "${PGPASSWORD:?set PGPASSWORD: the password of the aiinfra database role}"
  cmd_check
  local bin pgdata
  bin=$(pg_bindir)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  pgdata="$dir/pg"
  if [[ ! -f "$pgdata/PG_VERSION" ]]; then
    mkdir -p "$pgdata"
    [[ $(id -u) -ne 0 ]] || chown postgres "$pgdata"
    as_pg test -w "$pgdata" || {
      echo "the postgres user cannot write $pgdata: use a directory it can reach" >&2
      return 1
    }
    local pwfile
    pwfile=$(mktemp)
    printf '%s\n' "$PGPASSWORD" >"$pwfile"
    [[ $(id -u) -ne 0 ]] || chown postgres "$pwfile"
    as_pg "$bin/initdb" -D "$pgdata" -U aiinfra --pwfile="$pwfile" \
      --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
    rm -f "$pwfile"
  fi
  # TCP on loopback only, no unix socket (its directory may not exist or be writable here).
  as_pg "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
    -o "-p $pgport -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null
  if ! "$bin/psql" -h 127.0.0.1 -p "$pgport" -U aiinfra -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" | grep -q 1; then
    "$bin/createdb" -h 127.0.0.1 -p "$pgport" -U aiinfra mlflow
  fi
  redis_config "$dir/redis.conf"
  redis-server "$dir/redis.conf" --port "$redisport" --bind 127.0.0.1 --save '' \
    --appendonly no --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --dir "$dir"
  wait_redis "$redisport"
  echo "team services: PostgreSQL 127.0.0.1:$pgport (database mlflow, role aiinfra)," \
    "Redis 127.0.0.1:$redisport; state in $dir"
}

cmd_stop() {
  local dir=${1:?usage: stop DIR} bin
  bin=$(pg_bindir)
  if [[ -n "$bin" && -f "$dir/pg/postmaster.pid" ]]; then
    as_pg "$bin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null || true
  fi
  if [[ -f "$dir/redis.pid" ]]; then
    local pid
    pid=$(cat "$dir/redis.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    rm -f "$dir/redis.pid"
  fi
  rm -f "$dir/redis.conf" # holds the password: only while Redis runs
}

case "${1:-}" in
  install) cmd_install ;;
  check) cmd_check ;;
  start) shift && cmd_start "$@" ;;
  stop) shift && cmd_stop "$@" ;;
  *)
    echo "usage: $0 install | check | start DIR [PGPORT] [REDISPORT] | stop DIR" >&2
    exit 2
    ;;
esac
