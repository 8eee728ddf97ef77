# Shared by scripts/bench-check, scripts/bench-envoy and bench/callgrind-check (sourced, not
# run): free ports, waiting for a listener, CPU time of a process, the benchmark policy, the
# store, and the credentials of the JWT and session paths. The caller sets `bench_name` (for
# messages) and `work` (its temp dir) first.

# An IdP nobody answers at: a session already in the store needs no IdP (claims read just now,
# no refresh token), and no benchmark logs in.
BENCH_IDP_ISSUER="http://127.0.0.1:9/bench-idp"

# free_ports N: N free TCP ports on 127.0.0.1, on one line.
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
}

# wait_port PORT PID [SECONDS]: until something listens on PORT (default 10 s); exits the
# script, with the logs in $work, when PID dies first or time runs out.
wait_port() {
    local port=$1 pid=$2 tenths=$((${3:-10} * 10))
    for _ in $(seq "$tenths"); do
        kill -0 "$pid" 2>/dev/null || {
            echo "$bench_name: server on :$port exited" >&2
            cat "$work"/*.log >&2 2>/dev/null || true
            exit 1
        }
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$bench_name: nothing listens on :$port after $((tenths / 10)) s" >&2
    exit 1
}

# cpu_ticks PID: utime + stime of a process, in clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# write_bench_policy FILE: the policy under which the benchmark request (examples/check_load.rs,
# a Fooocus text-to-image POST) is allowed for designer_basic.
write_bench_policy() {
    cat >"$1" <<'YAML'
apis: [fooocus-api]
default_role: viewer
roles:
  viewer:
    permissions: [generation:view]
  designer_basic:
    permissions: [generation:create, generation:view, models:view]
    presets: [Speed, Lightning, Extreme Speed]
    loras: []
    models: ["juggernautXL_v8Rundiffusion.safetensors"]
    max_images: 4
    max_pixels: 1048576
YAML
}

# bench_store: from BENCH_STORE (sqlite, postgres or a store url) sets store_url (as the
# server's config names it), seed_store_url (as a process elsewhere opens it) and, for
# postgres, creates pg_database (user $pg_user), which the caller's cleanup drops.
bench_store() {
    store_url="${BENCH_STORE:-sqlite}"
    seed_store_url="$store_url"
    case "$store_url" in
        sqlite)
            store_url="sqlite://inferguard.db?mode=rwc"
            seed_store_url="sqlite://$work/inferguard.db?mode=rwc"
            ;;
        postgres)
            pg_database="ig_bench_$$_$RANDOM"
            psql -h 127.0.0.1 -U "$pg_user" -d test -qc "CREATE DATABASE $pg_database" >/dev/null
            store_url="postgres://$pg_user@127.0.0.1:5432/$pg_database"
            seed_store_url="$store_url"
            ;;
    esac
}

# bench_jwt HTTP_PORT PASSWORD: an access token for user `bench` from inferguard's own
# /auth/token (password grant).
bench_jwt() {
    python3 - "$1" "$2" <<'PY'
import json, sys, urllib.parse, urllib.request
port, password = sys.argv[1:3]
body = urllib.parse.urlencode({"grant_type": "password", "username": "bench", "password": password}).encode()
with urllib.request.urlopen(f"http://127.0.0.1:{port}/auth/token", body, timeout=10) as r:
    print(json.load(r)["access_token"])
PY
}

# bench_session SEED_SESSION_BIN: the id (cookie value) of a new session of user `bench`,
# stored in $seed_store_url as an SSO login from BENCH_IDP_ISSUER stores it.
bench_session() {
    "$1" --store "$seed_store_url" --issuer "$BENCH_IDP_ISSUER" --username bench
}
