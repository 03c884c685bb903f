#!/usr/bin/env bash
# Throughput of cooperating `tpo run` processes: N processes run the same
# command on one PostgreSQL store and share the run's items, against one
# simulated model server (tpo sim) with many slots. One pass per N; each
# pass has a fresh schema and a fresh server. With KILL=1, a pass of two
# processes in which one is SIGKILLed when KILL_AT of the items are done:
# what the survivor computes again, and how long it waits for the lease.
#
#   eval "$(bash .ci/postgres.sh start /tmp/tpo-pg)"
#   go build -o /tmp/tpo ./cmd/tpo
#   TPO=/tmp/tpo bash bench/workers.sh            # N = 1, 2, 4
#   TPO=/tmp/tpo KILL=1 bash bench/workers.sh     # the cost of a killed worker
#
# Settings (environment): PROCS ("1 2 4"; "sqlite" is one process on a
# SQLite file, working alone), PROMPTS (300), SLOTS (256),
# SCALE (the server's time scale, 0.05), CONC (--concurrency of each
# process, 64), LEASE (--lease, 30s), KILL_AT (0.4). The database is
# $TPO_TEST_POSTGRES; the role needs CREATE on it. Prints one line per pass
# on stdout: processes, prompts, wall seconds, prompts per wall minute and
# per simulated minute, the server's slot utilization, its chat requests.
set -euo pipefail

tpo=${TPO:-tpo}
db=${TPO_TEST_POSTGRES:?set TPO_TEST_POSTGRES (see .ci/postgres.sh)}
procs=${PROCS:-1 2 4}
prompts=${PROMPTS:-300}
slots=${SLOTS:-256}
scale=${SCALE:-0.05}
conc=${CONC:-64}
lease=${LEASE:-30s}
kill_at=${KILL_AT:-0.4}

work=$(mktemp -d /tmp/tpo-bench-workers.XXXXXX)
sim_pid=
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

for i in $(seq 1 "$prompts"); do
  echo "{\"id\": \"$i\", \"prompt\": \"Explain idea number $i of distributed systems to a new engineer.\"}"
done >"$work/data.jsonl"

# port_free reports whether nothing listens on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_sim starts a fresh simulated server and sets $url.
start_sim() {
  local port
  while :; do
    port=$((20000 + RANDOM % 20000))
    port_free "$port" && break
  done
  "$tpo" sim --addr "127.0.0.1:$port" --slots "$slots" --time-scale "$scale" >"$work/sim.log" 2>&1 &
  sim_pid=$!
  url=http://127.0.0.1:$port
  for _ in $(seq 100); do
    curl -sf "$url/sim/stats" >/dev/null && return
    sleep 0.1
  done
  echo "tpo sim did not start" >&2
  exit 1
}

stop_sim() { kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=; }

# store makes a fresh schema for a pass and prints its URL.
store() {
  local schema=tpo_bench_workers_$1
  psql -q "$db" -c "DROP SCHEMA IF EXISTS $schema CASCADE" -c "CREATE SCHEMA $schema" 2>/dev/null
  case $db in *\?*) echo "$db&search_path=$schema" ;; *) echo "$db?search_path=$schema" ;; esac
}

# run_proc starts one tpo run process of a pass.
run_proc() {
  local lease_flag=(--lease "$lease")
  case $1 in postgres*) ;; *) lease_flag=() ;; esac
  "$tpo" run --store "$1" "${lease_flag[@]}" --data "$work/data.jsonl" --out "$work/out-$2.jsonl" \
    --policy-url "$url/v1" --policy-model sim-policy \
    --reward vllm --reward-url "$url" --reward-model sim-reward \
    --concurrency "$conc" --progress off 2>"$work/err-$2.log" &
}

# report prints a pass's line from the server's stats.
report() {
  local n=$1 secs=$2
  curl -s "$url/sim/stats" | python3 -c '
import json, sys
n, prompts, secs, scale = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = json.load(sys.stdin)
util = s["busy_slot_seconds"] / (s["slots"] * secs / scale)
chat = s["requests"].get("/v1/chat/completions", 0)
print(f"processes {n}  prompts {prompts}  wall {secs:.1f} s  {prompts / secs * 60:.1f} prompts/wall-min  "
      f"{prompts / (secs / scale) * 60:.2f} prompts/sim-min  utilization {util:.1%}  "
      f"chat requests {chat} (required {7 * prompts})")
' "$n" "$prompts" "$secs" "$scale"
}

check_out() {
  local lines
  lines=$(wc -l <"$work/out-$1.jsonl")
  if [ "$lines" -ne "$prompts" ]; then
    echo "process $1 wrote $lines results, want $prompts" >&2
    exit 1
  fi
}

# pass runs n processes at once; n=sqlite runs one on a SQLite file, alone
# (tpo.Runner, no queue), to compare.
pass() {
  local n=$1 url_store t0 t1 pids=() i
  if [ "$n" = sqlite ]; then
    url_store=$work/tpo.db
    n=1
  else
    url_store=$(store "$n")
  fi
  start_sim
  t0=$(date +%s.%N)
  for i in $(seq 1 "$n"); do
    run_proc "$url_store" "$i"
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { cat "$work/err-$((i + 1)).log" >&2; exit 1; }
    check_out "$((i + 1))"
  done
  t1=$(date +%s.%N)
  report "$1" "$(echo "$t1 - $t0" | bc)"
  stop_sim
}

# kill_pass runs two processes and SIGKILLs the first when kill_at of the
# items are done.
kill_pass() {
  local url_store t0 t1 victim survivor done_items killed_at rescued
  url_store=$(store kill)
  start_sim
  t0=$(date +%s.%N)
  run_proc "$url_store" 1
  victim=$!
  run_proc "$url_store" 2
  survivor=$!
  while :; do
    done_items=$(psql -tAq "$db" -c "SELECT count(*) FROM tpo_bench_workers_kill.items WHERE done" 2>/dev/null || echo 0)
    if [ "$(echo "$done_items >= $prompts * $kill_at" | bc)" -eq 1 ]; then break; fi
    sleep 0.2
  done
  kill -KILL "$victim"
  killed_at=$(date +%s.%N)
  wait "$victim" 2>/dev/null || true
  wait "$survivor" || { cat "$work/err-2.log" >&2; exit 1; }
  check_out 2
  t1=$(date +%s.%N)
  rescued=$(psql -tAq "$db" -c "SELECT count(*) FROM tpo_bench_workers_kill.river_job WHERE errors::text LIKE '%Stuck job rescued%'")
  echo "killed one of 2 processes at $(echo "$killed_at - $t0" | bc) s, $done_items items done; the survivor ended $(echo "$t1 - $killed_at" | bc) s later (lease $lease); step jobs rescued from the killed process: $rescued"
  report 2 "$(echo "$t1 - $t0" | bc)"
  stop_sim
}

if [ "${KILL:-0}" = 1 ]; then
  kill_pass
else
  for n in $procs; do pass "$n"; done
fi
