#!/usr/bin/env bash
# The benchmark harness: explo-shim against nginx on the same machine, in the same run.
#
#   bash benches/run.sh            (ROUNDS=3 DURATION=8 CONNS=64 by default)
#   MEMORY_ONLY=1 bash benches/run.sh   (only the keep-alive memory case, about a minute)
#   CALLGRIND_ONLY=1 BASELINE_SHIM=path/to/old/explo-shim bash benches/run.sh
#        (only the instructions per request, this build beside another one: a refactoring's
#         cost, whatever else the machine is doing; a few minutes)
#   SHIM_TRACING=1 bash benches/run.sh   (any of the above with tracing on: every request
#        sampled and exported over OTLP to the static upstream, which answers 200 to the POSTs)
#
# Five targets share one static upstream (nginx `return 200`), one load and one CPU pinning:
# proxies on core $PROXY_CPU, the load generator and the upstream on core $LOAD_CPU.
#   direct           the generator against the upstream: the limit
#   nginx_pass       nginx proxy_pass, 1 worker, upstream keep-alive: the pass-through peer
#   nginx_njs        nginx + njs translating the same Update User Group call: the translation peer
#   shim_pass        GET through the shim
#   shim_translated  the Update User Group doc example through the shim
# The shim runs with its default logging (info, into a file) and its upstream budget off.
# Closed-loop wrk runs measure the ceiling and the proxy's CPU time per request (from
# /proc/<pid>/stat); open-loop runs (examples/loadgen.rs) at 50% of the shim's ceiling measure
# latency. Targets alternate within each round. The report prints ratios, not just absolutes.
# Everything is on 127.0.0.1 and every run is bounded in time.
source "$(dirname "$0")/common.sh"

ROUNDS=${ROUNDS:-3}
if [ "${SHIM_TRACING:-0}" = 1 ]; then
  # Both shims (and a baseline) inherit these; the peers ignore them. Sampling every request
  # is the worst case: each one is a SERVER span (and a CLIENT span when translated) queued
  # and exported.
  export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$UPSTREAM_PORT" OTEL_TRACES_SAMPLER=always_on
fi
DURATION=${DURATION:-8}
CONNS=${CONNS:-64}
RESULTS="$WORK/results.jsonl"

install_tools
ulimit -n "$(ulimit -Hn)"
start_upstream
start_nginx_proxy
start_njs_proxy
start_shim
wait_port $UPSTREAM_PORT; wait_port $NGINX_PORT; wait_port $NJS_PORT; wait_port $SHIM_PORT
sleep 0.5
echo "{\"phase\": \"idle\", \"shim_rss_kb\": $(rss_kb $SHIM_PID), \"nginx_rss_kb\": $(rss_kb $NGINX_PID)}" >> "$RESULTS"

if [ "${CALLGRIND_ONLY:-0}" != 1 ]; then
# Memory first, on fresh processes: 1,000 keep-alive connections that have each had one
# pass-through GET answered (all sent before any reply is read, so the upstream side bursts
# too), RSS a second later, then RSS ten seconds after they all close.
keepalive_memory() { # target port pid
  python3 - "$@" <<'PY'
import json, socket, sys, time
target, port, pid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def rss():
    return next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
idle = rss()
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
for s in conns:
    s.sendall(b"GET /api/customers/ HTTP/1.1\r\nHost: bench\r\n\r\n")
for s in conns:
    s.settimeout(5)
    assert s.recv(65536).startswith(b"HTTP/1.1 200"), target
time.sleep(1)
held = rss()
for s in conns:
    s.close()
time.sleep(10)
print(json.dumps({"phase": "keepalive", "target": target, "idle_kb": idle, "held_kb": held, "after_kb": rss()}))
PY
}
keepalive_memory shim_pass $SHIM_PORT $SHIM_PID >> "$RESULTS"
keepalive_memory nginx_pass $NGINX_PORT $NGINX_PID >> "$RESULTS"
if [ "${MEMORY_ONLY:-0}" = 1 ]; then
  python3 - "$RESULTS" <<'PY'
import json, sys
for r in (json.loads(l) for l in open(sys.argv[1])):
    if r["phase"] == "keepalive":
        print(f"{r['target']:<11} idle {r['idle_kb']/1024:.1f} MB, 1,000 held {r['held_kb']/1024:.1f} MB "
              f"({(r['held_kb'] - r['idle_kb']) / 1000:.1f} KB each), 10 s after close {r['after_kb']/1024:.1f} MB "
              f"({r['after_kb'] / r['idle_kb']:.2f}x idle)")
PY
  exit 0
fi

# name | url | method | body | pid whose CPU is accounted
TARGETS=(
  "direct|http://127.0.0.1:$UPSTREAM_PORT/api/customers/|GET||$UPSTREAM_PID"
  "nginx_pass|http://127.0.0.1:$NGINX_PORT/api/customers/|GET||$NGINX_PID"
  "nginx_njs|http://127.0.0.1:$NJS_PORT/api/update_user_group/|POST|$UPDATE_BODY|$NJS_PID"
  "shim_pass|http://127.0.0.1:$SHIM_PORT/api/customers/|GET||$SHIM_PID"
  "shim_translated|http://127.0.0.1:$SHIM_PORT/api/update_user_group/|POST|$UPDATE_BODY|$SHIM_PID"
)

run_closed() { # round target-spec
  IFS='|' read -r name url method body pid <<<"$2"
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(WRK_METHOD=$method WRK_BODY=$body timeout $((DURATION + 20)) \
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$WORK/report.lua" "$url" | tail -n 1)
  after=$(cpu_ticks "$pid")
  echo "{\"phase\": \"closed\", \"round\": $1, \"target\": \"$name\", \"cpu_seconds\": $(awk "BEGIN {print ($after - $before) / $CLK_TCK}"), \"rss_kb\": $(rss_kb "$pid"), \"result\": $out}" >> "$RESULTS"
  echo "  closed-loop $name: $out" >&2
}

run_open() { # round target-spec rate
  IFS='|' read -r name url method body pid <<<"$2"
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" "$LOADGEN" --url "$url" --method "$method" \
    --body "$body" --rate "$3" --duration "$DURATION" --connections "$CONNS")
  after=$(cpu_ticks "$pid")
  echo "{\"phase\": \"open\", \"round\": $1, \"target\": \"$name\", \"rate\": $3, \"cpu_seconds\": $(awk "BEGIN {print ($after - $before) / $CLK_TCK}"), \"result\": $out}" >> "$RESULTS"
  echo "  open-loop $name @ $3/s: $out" >&2
}

echo "closed loop: $ROUNDS rounds x ${DURATION}s x ${#TARGETS[@]} targets, $CONNS connections" >&2
for round in $(seq 1 "$ROUNDS"); do
  for spec in "${TARGETS[@]}"; do run_closed "$round" "$spec"; done
done

# 50% of the slowest proxy's median ceiling, the same rate for every target.
RATE=$(python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"closed"' in l]
def ceiling(t):
    return statistics.median(r["result"]["requests"] / r["result"]["seconds"] for r in rows if r["target"] == t)
print(int(0.5 * min(ceiling(t) for t in ("nginx_pass", "nginx_njs", "shim_pass", "shim_translated"))))
PY
)
echo "open loop at $RATE requests/s (50% of the slowest proxy's ceiling)" >&2
for round in $(seq 1 "$ROUNDS"); do
  for spec in "${TARGETS[@]}"; do run_open "$round" "$spec" "$RATE"; done
done

fi

# Instructions per request, from callgrind (repeatable whatever else the machine does): the
# difference between a short and a long run, so start-up and shutdown cancel out. The shim
# runs with its default logging, like the peers; each peer gets its own copy on spare ports.
DROPPED=$(python3 -c "import urllib.request; print(next((l.split()[1] for l in urllib.request.urlopen('http://127.0.0.1:$SHIM_ADMIN_PORT/metrics').read().decode().splitlines() if l.startswith('explo_shim_log_lines_dropped_total')), 0))")
kill "$SHIM_PID" "$NGINX_PID" "$NJS_PID"; wait "$SHIM_PID" "$NGINX_PID" "$NJS_PID" 2>/dev/null || true
echo "{\"phase\": \"shim_log\", \"bytes\": $(stat -c %s "$WORK/shim.log"), \"dropped\": $DROPPED}" >> "$RESULTS"
CG_PORT=19005
sed "s/127.0.0.1:$NGINX_PORT/127.0.0.1:$CG_PORT/; s|$WORK/proxy.pid|$WORK/cg-proxy.pid|" "$WORK/proxy.conf" > "$WORK/cg-proxy.conf"
sed "s/127.0.0.1:$NJS_PORT/127.0.0.1:$CG_PORT/; s|$WORK/njs.pid|$WORK/cg-njs.pid|" "$WORK/njs.conf" > "$WORK/cg-njs.conf"
callgrind_total() { # requests method path body target
  local out="$WORK/callgrind.$5.$1.out" pid command
  case "$5" in
    shim) command=("$SHIM" --config "$WORK/shim.toml" --listen 127.0.0.1:$CG_PORT --admin 127.0.0.1:19006 \
            --upstream "http://127.0.0.1:$UPSTREAM_PORT") ;;
    # The same settings on another build (BASELINE_SHIM): the "before" of a change.
    shim_baseline) command=("$BASELINE_SHIM" --config "$WORK/shim.toml" --listen 127.0.0.1:$CG_PORT \
            --admin 127.0.0.1:19006 --upstream "http://127.0.0.1:$UPSTREAM_PORT") ;;
    # The same shim with the access log on: what a line per request costs
    # (docs/design/benchmarks.md, "The access log's cost").
    shim_access_log) command=("$SHIM" --config "$WORK/shim.toml" --listen 127.0.0.1:$CG_PORT --admin 127.0.0.1:19006 \
            --upstream "http://127.0.0.1:$UPSTREAM_PORT" --access-log) ;;
    nginx_pass) command=(nginx -c "$WORK/cg-proxy.conf" -p "$WORK") ;;
    nginx_njs) command=(nginx -c "$WORK/cg-njs.conf" -p "$WORK") ;;
  esac
  valgrind --tool=callgrind --callgrind-out-file="$out" "${command[@]}" 2>"$WORK/callgrind.$5.log" &
  pid=$!
  for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$CG_PORT) 2>/dev/null && break; sleep 0.1; done
  timeout 120 "$LOADGEN" --url "http://127.0.0.1:$CG_PORT$3" --method "$2" --body "$4" --rate 100 \
    --duration "$(awk "BEGIN {print $1 / 100}")" --connections 1 >/dev/null
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  awk '/^(summary|totals):/ {print $2; exit}' "$out"
}
CALLGRIND_SPECS=("shim|translated|POST|/api/update_user_group/|$UPDATE_BODY" "shim|pass|GET|/api/customers/|")
if [ -n "${BASELINE_SHIM:-}" ]; then
  CALLGRIND_SPECS+=("shim_baseline|translated|POST|/api/update_user_group/|$UPDATE_BODY" "shim_baseline|pass|GET|/api/customers/|")
fi
if [ "${CALLGRIND_ONLY:-0}" != 1 ]; then
  CALLGRIND_SPECS+=("shim_access_log|translated|POST|/api/update_user_group/|$UPDATE_BODY" "shim_access_log|pass|GET|/api/customers/|" \
              "nginx_njs|translated|POST|/api/update_user_group/|$UPDATE_BODY" "nginx_pass|pass|GET|/api/customers/|")
fi
if [ "${CALLGRIND:-1}" = 1 ]; then
  for spec in "${CALLGRIND_SPECS[@]}"; do
    IFS='|' read -r target route method path body <<<"$spec"
    short=$(callgrind_total 200 "$method" "$path" "$body" "$target")
    long=$(callgrind_total 1200 "$method" "$path" "$body" "$target")
    echo "{\"phase\": \"callgrind\", \"target\": \"$target\", \"route\": \"$route\", \"instructions_per_request\": $(( (long - short) / 1000 ))}" >> "$RESULTS"
  done
fi

if [ "${SHIM_TRACING:-0}" = 1 ]; then echo "tracing on: every shim request sampled and exported over OTLP"; fi
if [ "${CALLGRIND_ONLY:-0}" = 1 ]; then
  python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"callgrind"' in l]
got = {(r["target"], r["route"]): r["instructions_per_request"] for r in rows}
for route in ("pass", "translated"):
    now = got[("shim", route)]
    line = f"callgrind {route:<10} {now:>8,} instructions/request"
    if ("shim_baseline", route) in got:
        base = got[("shim_baseline", route)]
        line += f", baseline {base:,}: {now / base:.3f}x ({(now - base) / base * 100:+.1f}%)"
    print(line)
PY
  exit 0
fi

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
targets = ["direct", "nginx_pass", "nginx_njs", "shim_pass", "shim_translated"]
def pick(phase, target):
    return [r for r in rows if r["phase"] == phase and r.get("target") == target]
def med(values):
    return statistics.median(values)
closed = {t: pick("closed", t) for t in targets}
opened = {t: pick("open", t) for t in targets}
rps = {t: med(r["result"]["requests"] / r["result"]["seconds"] for r in closed[t]) for t in targets}
cpu = {t: med(r["cpu_seconds"] * 1e6 / max(r["result"]["requests"], 1) for r in closed[t]) for t in targets}
cpu_open = {t: med(r["cpu_seconds"] * 1e6 / max(r["result"]["requests"], 1) for r in opened[t]) for t in targets}
lat = {t: {q: med(r["result"][q] for r in opened[t]) for q in ("p50_ms", "p99_ms", "p999_ms")} for t in targets}
worst99 = {t: max(r["result"]["p99_ms"] for r in opened[t]) for t in targets}
errors = {t: sum(r["result"]["errors"] + r["result"].get("non2xx", 0) for r in closed[t]) + sum(r["result"]["errors"] for r in opened[t]) for t in targets}
idle = next(r for r in rows if r["phase"] == "idle")
keep = {r["target"]: r for r in rows if r["phase"] == "keepalive"}
instr = {(r["target"], r["route"]): r["instructions_per_request"] for r in rows if r["phase"] == "callgrind"}
rate = opened["shim_pass"][0]["rate"]

print(f"\nMedians of {len(closed['direct'])} alternating rounds; ceilings closed-loop, latency open-loop at {rate}/s.")
print(f"{'target':<17}{'req/s':>10}{'CPU us/req':>12}{'CPU us/req @50%':>17}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'errors':>8}")
for t in targets:
    print(f"{t:<17}{rps[t]:>10.0f}{cpu[t]:>12.1f}{cpu_open[t]:>17.1f}{lat[t]['p50_ms']:>9.3f}{lat[t]['p99_ms']:>9.3f}{lat[t]['p999_ms']:>10.3f}{errors[t]:>8}")
print("(direct's CPU is the static upstream's, on the generator's core)")

def check(label, value, target, ok):
    print(f"  {label:<58}{value:>9}   target {target:<8} {'met' if ok else 'NOT met'}")
def info(label, value):
    print(f"  {label:<58}{value:>9}")
print("\nRatios (same run, same core):")
c = cpu["shim_pass"] / cpu["nginx_pass"]
check("shim_pass CPU per request / nginx_pass", f"{c:.2f}x", "<= 1.2x", c <= 1.2)
c = cpu["shim_translated"] / cpu["nginx_njs"]
check("shim_translated CPU per request / nginx_njs", f"{c:.2f}x", "<= 0.7x", c <= 0.7)
info("(the same two ratios at 50% load)", f"{cpu_open['shim_pass'] / cpu_open['nginx_pass']:.2f}x / {cpu_open['shim_translated'] / cpu_open['nginx_njs']:.2f}x")
info("(shim_translated CPU per request / nginx_pass; aim 1.0x)", f"{cpu['shim_translated'] / cpu['nginx_pass']:.2f}x")
info("(shim_pass req/s / nginx_pass)", f"{rps['shim_pass'] / rps['nginx_pass']:.2f}x")
info("(shim_translated req/s / nginx_njs)", f"{rps['shim_translated'] / rps['nginx_njs']:.2f}x")
for t in ("shim_pass", "shim_translated", "nginx_pass", "nginx_njs"):
    d99 = lat[t]["p99_ms"] - lat["direct"]["p99_ms"]
    w99 = worst99[t] - lat["direct"]["p99_ms"]
    label = f"{t} added p99 over direct (median / worst round)"
    if t.startswith("shim"):
        check(label, f"{d99:.3f}/{w99:.3f}ms", "<= 1ms", w99 <= 1.0)
    else:
        info(f"({label})", f"{d99:.3f}/{w99:.3f}ms")
check("shim RSS idle", f"{idle['shim_rss_kb']/1024:.1f}MB", "<= 15MB", idle["shim_rss_kb"] <= 15 * 1024)
def per_connection(t):
    return (keep[t]["held_kb"] - keep[t]["idle_kb"]) / 1000
def retained(t):
    return keep[t]["after_kb"] / keep[t]["idle_kb"]
check("shim RSS per idle keep-alive connection (1,000, one GET each)", f"{per_connection('shim_pass'):.1f}KB", "<= 20KB", per_connection("shim_pass") <= 20)
check("shim RSS 10 s after they close / idle", f"{retained('shim_pass'):.2f}x", "<= 2x", retained("shim_pass") <= 2)
info("(nginx per connection / after close over idle)", f"{per_connection('nginx_pass'):.1f}KB / {retained('nginx_pass'):.2f}x")
info("(shim per connection / nginx per connection)", f"{per_connection('shim_pass') / per_connection('nginx_pass'):.2f}x")
for row in rows:
    if row["phase"] == "shim_log":
        info("(shim log written / lines dropped during the run)", f"{row['bytes'] / 1e6:.1f}MB / {row['dropped']}")
for (target, route), count in sorted(instr.items()):
    info(f"instructions per {route} request, {target} (callgrind, user space)", count)
if ("shim", "pass") in instr and ("nginx_pass", "pass") in instr:
    info("(instructions shim_pass / nginx_pass)", f"{instr[('shim', 'pass')] / instr[('nginx_pass', 'pass')]:.2f}x")
for route in ("pass", "translated"):
    if ("shim", route) in instr and ("shim_access_log", route) in instr:
        extra = instr[("shim_access_log", route)] - instr[("shim", route)]
        info(f"(access log on: extra instructions per {route} request)", f"{extra} ({extra / instr[('shim', route)]:+.0%})")
if ("shim", "translated") in instr and ("nginx_njs", "translated") in instr:
    info("(instructions shim_translated / nginx_njs)", f"{instr[('shim', 'translated')] / instr[('nginx_njs', 'translated')]:.2f}x")
PY
