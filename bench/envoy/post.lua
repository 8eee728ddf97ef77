-- wrk script of scripts/bench-envoy: every request is the same Fooocus-API
-- POST /v1/generation/text-to-image with the ~2 KB JSON body of examples/check_load.rs
-- (FOOOCUS_BODY, one line as Python's requests sends it) and the caller's credential.
--
-- Environment: BENCH_BODY_FILE (the body, written by scripts/bench-envoy), BENCH_HEADER_NAME and
-- BENCH_HEADER_VALUE (the credential: x-api-key, authorization or cookie; sent to every
-- listener alike, ignored where no ext_authz runs).
-- No response() hook: wrk then counts answers without calling Lua for each one; the script
-- takes the status counts from Envoy's own statistics instead.

local path = os.getenv("BENCH_BODY_FILE")
assert(path, "BENCH_BODY_FILE is not set")
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.path = "/v1/generation/text-to-image"
wrk.body = body
wrk.headers["Host"] = "fooocus.internal:10000"
wrk.headers["Accept"] = "application/json"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "python-requests/2.32.3"
wrk.headers[os.getenv("BENCH_HEADER_NAME") or "x-api-key"] = os.getenv("BENCH_HEADER_VALUE") or ""
