#!/usr/bin/env bash
# What a fleet's Redis adds to a translated call: the same shim with its upstream budget in
# this process (the baseline) and in Redis (rate_limit.redis_url), in the same run, against the
# same static upstream, at the same open-loop rate.
#
#   bash benches/redis.sh          (ROUNDS=3 DURATION=8 RATE=2000 by default)
#
# The budget is on in both (it is what Redis serves) and set far above the load, so no call is
# refused or paced: the difference is the one Redis round trip per upstream call. Redis runs on
# the load generator's core, on loopback, without persistence. Also reported: Redis commands
# per request (EVALSHA calls / requests), which should be 1.
source "$(dirname "$0")/common.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
RATE=${RATE:-2000}
CONNS=${CONNS:-64}
REDIS_PORT=19010
LOCAL_PORT=19011
FLEET_PORT=19013
RESULTS="$WORK/redis.jsonl"

install_tools
if ! command -v redis-server >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
start_upstream
taskset -c "$LOAD_CPU" redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" \
  --appendonly no --protected-mode no >/dev/null &
PIDS+=($!)

budget() { # [redis url]
  cat <<CONF
[rate_limit]
per_minute = 60000000
burst = 1000000
max_wait = "10s"
${1:+redis_url = \"$1\"}
[limits]
max_connections = 16384
max_in_flight = 16384
CONF
}
budget > "$WORK/local.toml"
budget "redis://127.0.0.1:$REDIS_PORT/" > "$WORK/fleet.toml"
for name in local fleet; do
  port=$([ $name = local ] && echo $LOCAL_PORT || echo $FLEET_PORT)
  taskset -c "$PROXY_CPU" "$SHIM" --config "$WORK/$name.toml" --workers 1 \
    --listen 127.0.0.1:$port --admin 127.0.0.1:$((port + 1)) \
    --upstream http://127.0.0.1:$UPSTREAM_PORT 2>"$WORK/$name.log" &
  PIDS+=($!)
done
wait_port $UPSTREAM_PORT; wait_port $REDIS_PORT; wait_port $LOCAL_PORT; wait_port $FLEET_PORT
sleep 0.5

evalsha_calls() {
  redis-cli -p $REDIS_PORT info commandstats | awk -F'[:=,]' '/^cmdstat_evalsha:/ {print $3}' | tr -d '\r' | grep . || echo 0
}

echo "open loop: $ROUNDS rounds x ${DURATION}s at $RATE requests/s, translated update_user_group" >&2
for round in $(seq 1 "$ROUNDS"); do
  for name in local fleet; do
    port=$([ $name = local ] && echo $LOCAL_PORT || echo $FLEET_PORT)
    before=$(evalsha_calls)
    out=$(timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" "$LOADGEN" \
      --url "http://127.0.0.1:$port/api/update_user_group/" --method POST --body "$UPDATE_BODY" \
      --rate "$RATE" --duration "$DURATION" --connections "$CONNS")
    after=$(evalsha_calls)
    echo "{\"round\": $round, \"budget\": \"$name\", \"evalsha\": $((after - before)), \"result\": $out}" >> "$RESULTS"
    echo "  $name: $out" >&2
  done
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
def median(budget, key):
    return statistics.median(r["result"][key] for r in rows if r["budget"] == budget)
print(f"{'budget':<8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
for budget in ("local", "fleet"):
    errors = sum(r["result"].get("errors", 0) + r["result"].get("non2xx", 0) for r in rows if r["budget"] == budget)
    print(f"{budget:<8} {median(budget, 'p50_ms'):>8.3f} {median(budget, 'p99_ms'):>8.3f} {errors:>7}")
for key in ("p50_ms", "p99_ms"):
    print(f"Redis adds {median('fleet', key) - median('local', key):+.3f} ms at {key[:3]}")
fleet = [r for r in rows if r["budget"] == "fleet"]
calls = sum(r["evalsha"] for r in fleet)
requests = sum(r["result"]["requests"] for r in fleet)
print(f"Redis commands per translated call: {calls / max(requests, 1):.2f}")
PY
