#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the tests that need one (package
# postgres, and tpo's --store postgres://...):
#
#   eval "$(bash .ci/postgres.sh start /tmp/tpo-pg)"   # sets TPO_TEST_POSTGRES
#   go test ./postgres/ ./cmd/tpo/
#   bash .ci/postgres.sh stop /tmp/tpo-pg
#
# start installs Debian's postgresql package when no initdb is found, makes
# a cluster in DIR (created; it must not exist or be empty), starts it on
# 127.0.0.1 at a free port (and a socket in DIR), creates the role tpo with
# a random password and its database tpo_test, and prints the line
#   export TPO_TEST_POSTGRES='postgres://tpo:PASSWORD@127.0.0.1:PORT/tpo_test'
# on stdout; everything else goes to stderr. PostgreSQL refuses to run as
# root: as root the cluster belongs to the postgres user (made by the
# package). stop stops the cluster and removes DIR.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1 dir=$2

# bindir finds the server programs (the client's directory may hold psql
# without them), installing them when missing.
bindir() {
  local initdb
  initdb=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$initdb" ] && ! initdb=$(command -v initdb); then
    echo "== apt-get install postgresql (the tests of the PostgreSQL store)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    initdb=$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
  fi
  dirname "$initdb"
}

# as runs a command as the cluster's owner.
as() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# port_free reports whether nothing listens on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  local bin pw port tries=0
  bin=$(bindir)
  if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "$0: $dir exists and is not empty" >&2
    exit 1
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  pw=$(head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 24)
  as sh -c "umask 077; printf '%s\n' '$pw' > '$dir/pwfile'"
  as "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --no-instructions >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  while :; do
    port=$((20000 + RANDOM % 20000))
    if port_free "$port" &&
      as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >&2; then
      break
    fi
    tries=$((tries + 1))
    if [ "$tries" -ge 5 ]; then
      cat "$dir/server.log" >&2 || true
      exit 1
    fi
  done
  as "$bin/psql" -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE tpo LOGIN PASSWORD '$pw'" -c "CREATE DATABASE tpo_test OWNER tpo" >&2
  echo "postgres: a cluster in $dir listens on 127.0.0.1:$port (database tpo_test, role tpo)" >&2
  echo "export TPO_TEST_POSTGRES='postgres://tpo:$pw@127.0.0.1:$port/tpo_test'"
}

stop() {
  local bin
  if [ -d "$dir/data" ]; then
    bin=$(bindir)
    as "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  fi
  rm -rf "$dir"
}

case $cmd in
start) start ;;
stop) stop ;;
*) usage ;;
esac
