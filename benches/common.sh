# Shared set-up for benches/run.sh and benches/soak.sh: tools, the static upstream, process
# accounting. Everything listens on 127.0.0.1 only.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PROXY_CPU=${PROXY_CPU:-0}   # the proxy under test
LOAD_CPU=${LOAD_CPU:-1}     # the load generator and the static upstream
UPSTREAM_PORT=19001
NGINX_PORT=19002
SHIM_PORT=19003
SHIM_ADMIN_PORT=19004
NJS_PORT=19007
CLK_TCK=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/explo-shim-bench.XXXXXX)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

install_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || missing+=(nginx-light)
  [ -f "$NJS_MODULE" ] || missing+=(libnginx-mod-http-js)
  command -v taskset >/dev/null || missing+=(util-linux)
  command -v valgrind >/dev/null || missing+=(valgrind)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} from Debian's packages" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  cargo build --release --locked --bin explo-shim --example loadgen >&2
}

SHIM=${SHIM:-target/release/explo-shim}
LOADGEN=target/release/examples/loadgen

# One reply fits every route: a Customer for the translated calls, an empty list for the
# delete's children check, and plain JSON for pass-through.
UPSTREAM_BODY='{"success": 1, "customers": [], "customer": {"token": "bench_token", "name": "Example 1", "provided_id": "example_1", "is_demo_group": false, "emails": [], "group_tags": [], "properties": {"filterValue": "value"}, "computed_properties": {"filterValue": "value"}, "access_group": "Production", "parent_schema_datasource_mapping": {"40": "213", "134": "386"}, "computed_parent_schema_datasource_mapping": {"40": "213", "134": "386"}, "hierarchy_level": "Customer"}}'
UPDATE_BODY='{"user_group_id": "example_1", "name": "Example 1", "mapping": {"40": "213", "134": "386"}, "properties": {"filterValue": "value"}}'

NJS_MODULE=/usr/lib/nginx/modules/ngx_http_js_module.so

nginx_conf() { # name port http-block [main-level directives]
  cat <<CONF
${4:-}
daemon off;
master_process off;
worker_processes 1;
pid $WORK/$1.pid;
error_log $WORK/$1.error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $WORK/$1.body;
  proxy_temp_path $WORK/$1.proxy;
  fastcgi_temp_path $WORK/$1.fastcgi;
  uwsgi_temp_path $WORK/$1.uwsgi;
  scgi_temp_path $WORK/$1.scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  $3
}
CONF
}

start_upstream() {
  nginx_conf upstream $UPSTREAM_PORT "server { listen 127.0.0.1:$UPSTREAM_PORT; default_type application/json; location / { return 200 '$UPSTREAM_BODY'; } }" > "$WORK/upstream.conf"
  taskset -c "$LOAD_CPU" nginx -c "$WORK/upstream.conf" -p "$WORK" &
  PIDS+=($!)
  UPSTREAM_PID=$!
}

start_nginx_proxy() {
  nginx_conf proxy $NGINX_PORT "upstream explo { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; }
  server { listen 127.0.0.1:$NGINX_PORT; location / { proxy_pass http://explo; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" > "$WORK/proxy.conf"
  taskset -c "$PROXY_CPU" nginx -c "$WORK/proxy.conf" -p "$WORK" &
  PIDS+=($!)
  NGINX_PID=$!
}

# The second peer: nginx + njs doing the Update User Group translation, written as small as a
# user would write it: js_content, one subrequest to update_customer over the same keep-alive
# upstream, then `customer` renamed to `user_group` in the reply.
start_njs_proxy() {
  cat > "$WORK/legacy.js" <<'JS'
async function update_user_group(r) {
  let body;
  try { body = JSON.parse(r.requestText); } catch (e) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(400, '{"success": 0, "error": "invalid JSON"}');
    return;
  }
  if (body.user_group_id !== undefined) {
    body.provided_id = String(body.user_group_id);
    delete body.user_group_id;
  }
  const reply = await r.subrequest('/_customer/api/update_customer/', { method: 'POST', body: JSON.stringify(body) });
  const out = JSON.parse(reply.responseText);
  if (out.customer !== undefined) { out.user_group = out.customer; delete out.customer; }
  r.headersOut['Content-Type'] = 'application/json';
  r.return(reply.status, JSON.stringify(out));
}
export default { update_user_group };
JS
  nginx_conf njs $NJS_PORT "js_path $WORK; js_import legacy.js;
  upstream explo { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; }
  server { listen 127.0.0.1:$NJS_PORT;
    location = /api/update_user_group/ { js_content legacy.update_user_group; }
    location /_customer/ { internal; proxy_pass http://explo/; proxy_http_version 1.1;
      proxy_set_header Connection \"\"; proxy_set_header Content-Type application/json; }
    location / { proxy_pass http://explo; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" \
    "load_module $NJS_MODULE;" > "$WORK/njs.conf"
  taskset -c "$PROXY_CPU" nginx -c "$WORK/njs.conf" -p "$WORK" &
  PIDS+=($!)
  NJS_PID=$!
}

# The shim's config for a run: its upstream budget off (or it would measure 429s) and its caps
# raised past the load, unless the caller sets SHIM_TOML.
SHIM_TOML=${SHIM_TOML:-'[rate_limit]
enabled = false
[limits]
max_connections = 16384
max_in_flight = 16384'}

start_shim() { # [extra args...]
  printf '%s\n' "$SHIM_TOML" > "$WORK/shim.toml"
  # Default logging (info, the deprecated-usage line per legacy call) into a file, as a
  # container runtime would collect it.
  taskset -c "$PROXY_CPU" "$SHIM" --config "$WORK/shim.toml" \
    --listen 127.0.0.1:$SHIM_PORT --admin 127.0.0.1:$SHIM_ADMIN_PORT \
    --upstream http://127.0.0.1:$UPSTREAM_PORT "$@" 2>"$WORK/shim.log" &
  PIDS+=($!)
  SHIM_PID=$!
}

wait_port() { # port
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; return 1
}

cpu_ticks() { # pid -> utime+stime in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

rss_kb() { # pid
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# wrk's report as one JSON line (latencies in ms).
cat > "$WORK/report.lua" <<'LUA'
local method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
wrk.method = method
if body and body ~= "" then wrk.body = body end
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Explo-Authorization"] = "Token bench"
function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format('{"requests": %d, "errors": %d, "non2xx": %d, "seconds": %.3f, "p50_ms": %.3f, "p99_ms": %.3f, "p999_ms": %.3f}\n',
    summary.requests, errors, summary.errors.status, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000))
end
LUA
