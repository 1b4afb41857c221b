#!/usr/bin/env bash
# Soak: mixed legacy and pass-through requests over as many concurrent connections as the
# default cap admits, with the shim's RSS sampled before, during and after each round. The
# shim runs with its default limits (only the upstream budget is off), so the peak is what a
# flood costs the sidecar example at its memory limit.
#
#   bash benches/soak.sh          (CONNS=2048, the default limits.max_connections;
#                                  ROUNDS=3 DURATION=30 by default)
#
# Not run in CI. Loopback only; bounded by DURATION.
source "$(dirname "$0")/common.sh"

CONNS=${CONNS:-2048}
DURATION=${DURATION:-30}
SHIM_TOML='[rate_limit]
enabled = false'
# The sidecar example's memory limit (examples/kubernetes-sidecar.yaml), in kB.
LIMIT_KB=$(awk '/limits:.*memory:/ {match($0, /memory: *[0-9]+Mi/); print substr($0, RSTART + 8, RLENGTH - 10) * 1024}' examples/kubernetes-sidecar.yaml)

install_tools
ulimit -n "$(ulimit -Hn)"
start_upstream
start_shim
wait_port $UPSTREAM_PORT; wait_port $SHIM_PORT
sleep 0.5
before=$(rss_kb "$SHIM_PID")

cat > "$WORK/mixed.lua" <<'LUA'
-- Round-robin over the four legacy calls and a pass-through read.
local calls = {
  {"POST", "/api/update_user_group/", '{"user_group_id": "example_1", "name": "Example 1", "mapping": {"40": "213", "134": "386"}, "properties": {"filterValue": "value"}}'},
  {"POST", "/api/create_user_group/", '{"user_group_id": "example_2", "name": "Example 2"}'},
  {"POST", "/api/refresh_user_group_token/", '{"current_token": "bench_token"}'},
  {"DELETE", "/api/delete_user_group/", '{"current_token": "bench_token"}'},
  {"GET", "/api/customers/?page_size=2", nil},
}
local n = 0
request = function()
  n = n + 1
  local c = calls[(n % #calls) + 1]
  local headers = {["Content-Type"] = "application/json", ["Explo-Authorization"] = "Token soak-" .. (n % 7)}
  return wrk.format(c[1], c[2], headers, c[3])
end
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format('{"requests": %d, "socket_errors": %d, "non2xx": %d, "seconds": %.1f, "p99_ms": %.2f}\n',
    summary.requests, errors, summary.errors.status, summary.duration / 1e6, latency:percentile(99) / 1000))
end
LUA

# Identical rounds: if memory grew per request, a later round would peak or end higher.
ROUNDS=${ROUNDS:-3}
PEAKS=()
for round in $(seq 1 "$ROUNDS"); do
  ( for _ in $(seq 1 $((DURATION / 2))); do sleep 2; rss_kb "$SHIM_PID"; done ) > "$WORK/rss.during" &
  sampler=$!
  result=$(taskset -c "$LOAD_CPU" timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 10s \
    -s "$WORK/mixed.lua" "http://127.0.0.1:$SHIM_PORT" | tail -n 1)
  wait "$sampler" || true
  sleep 12   # past header_read_timeout, so idle client connections are closed
  echo "soak round $round: $CONNS connections, ${DURATION}s: $result"
  peak=$(sort -n "$WORK/rss.during" | tail -n 1)
  PEAKS+=("$peak")
  echo "soak round $round: shim RSS before ${before} kB, peak during ${peak} kB, after $(rss_kb "$SHIM_PID") kB"
done
echo "soak: peaks $(printf '%s kB ' "${PEAKS[@]}")(last/first $(awk "BEGIN {printf \"%.2f\", ${PEAKS[-1]} / ${PEAKS[0]}}")x);" \
  "highest $(printf '%s\n' "${PEAKS[@]}" | sort -n | tail -n 1) kB against the sidecar example's limit of ${LIMIT_KB} kB"
metrics=$(curl -s "http://127.0.0.1:$SHIM_ADMIN_PORT/metrics" 2>/dev/null | grep -E "^explo_shim_(legacy_calls|pass_through_requests|shed_requests)_total" | awk '{s[$1 ~ /shed/ ? "shed" : "served"] += $2} END {printf "served %d, shed %d", s["served"], s["shed"]}')
echo "soak: shim metrics: $metrics"
