"""Two replicas on one PostgreSQL store: each `inferguard serve` with its own Envoy and
upstream, both on a fresh database of the PostgreSQL at 127.0.0.1:5432.

* A change made through replica A's store (the CLI with A's configuration) reaches replica B's
  caches within 2 s: a revoked key, a disabled user, a changed role binding. Both replicas poll
  only every 1.5 s (the largest poll interval allowed); LISTEN/NOTIFY is what makes it quick.
* A daily quota of 20 images, drawn on by 60 parallel one-image requests split across both
  replicas, allows exactly 20 (one atomic consumption in the shared store per request).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

import conftest
from conftest import POLICY_YAML, Stack, assert_refused, fooocus_text_to_image

T2I = "/v1/generation/text-to-image"
PG_HOST, PG_PORT = "127.0.0.1", 5432
# A change must reach the other replica within this many seconds (DESIGN.md).
PROPAGATION_LIMIT_S = 2.0

REPLICA_POLICY = POLICY_YAML + """\
  metered20:
    permissions: [generation:create, generation:view]
    presets: [Speed]
    daily_images: 20
"""


def psql(user: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", user, "-d", "test", "-v",
                           "ON_ERROR_STOP=1", *args], capture_output=True, text=True, timeout=60)


def pg_user() -> str:
    """The PostgreSQL role that answers (`postgres`, else `root`): the test fails, never skips,
    when neither does."""
    errors = []
    for user in ("postgres", "root"):
        probe = psql(user, "-c", "select 1")
        if probe.returncode == 0:
            return user
        errors.append(f"{user}: {probe.stderr.strip()}")
    pytest.fail(f"PostgreSQL at {PG_HOST}:{PG_PORT} (trust auth, database test) is needed: {errors}")


class ReplicaStack(Stack):
    """A stack whose store is the shared PostgreSQL database, polled at most every 1.5 s."""

    def __init__(self, workdir, store_url: str, **kw):
        self.store_url = store_url
        super().__init__(workdir, **kw)

    def write_config(self):
        super().write_config()
        cfg = yaml.safe_load(self.config.read_text())
        cfg["store"] = {"url": self.store_url, "poll_interval_ms": 1500}
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    user = pg_user()
    database = f"ig_replicas_{uuid.uuid4().hex[:12]}"
    created = psql(user, "-c", f"create database {database}")
    assert created.returncode == 0, created.stderr
    url = f"postgres://{user}@{PG_HOST}:{PG_PORT}/{database}"
    try:
        a = ReplicaStack(tmp_path_factory.mktemp("replica_a"), url, policy_yaml=REPLICA_POLICY)
        b = ReplicaStack(tmp_path_factory.mktemp("replica_b"), url, policy_yaml=REPLICA_POLICY)
        # Registered like running_stack's, so a failing test's report carries both logs.
        conftest._active_stacks.extend([a, b])
        try:
            a.start()
            b.start()
            yield a, b
        finally:
            problems = []
            for s in (b, a):
                conftest._active_stacks.remove(s)
                try:
                    s.stop()
                except AssertionError as e:
                    problems.append(str(e))
            assert not problems, problems
    finally:
        psql(user, "-c", f"drop database if exists {database} with (force)")


def seconds_until(predicate, limit: float) -> float:
    """How long until `predicate()` holds, polling every 20 ms; fails after `limit` seconds."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        elapsed = time.monotonic() - start
        if elapsed > limit:
            raise AssertionError(f"not seen within {limit} s")
        time.sleep(0.02)


def post(s: Stack, key: str, **body):
    return s.post(T2I, fooocus_text_to_image(**body), key=key)


def test_a_key_revoked_through_a_is_refused_by_b_within_2_s(replicas):
    a, b = replicas
    user = a.create_user("designer_basic")
    key = a.create_key(user=user)
    key_id = key.split("_")[1]
    # Both replicas have decided (and cached) the key.
    assert post(a, key).status_code == 200
    assert post(b, key).status_code == 200

    a.revoke_key(key_id)
    took = seconds_until(lambda: post(b, key).status_code == 401, PROPAGATION_LIMIT_S)
    print(f"revocation reached replica B after {took * 1000:.0f} ms")
    b.upstream.clear()
    assert_refused(post(b, key), 401, b.upstream)
    assert post(a, key).status_code == 401


def test_a_user_disabled_through_a_is_refused_by_b_within_2_s(replicas):
    a, b = replicas
    user = a.create_user("designer_basic")
    key = a.create_key(user=user)
    assert post(b, key).status_code == 200

    a.cli("users", "disable", args=["--username", user])
    took = seconds_until(lambda: post(b, key).status_code in (401, 403), PROPAGATION_LIMIT_S)
    print(f"disabling reached replica B after {took * 1000:.0f} ms")
    b.upstream.clear()
    r = post(b, key)
    assert r.status_code in (401, 403), r.text
    assert b.upstream.requests == []


def test_a_role_changed_through_a_applies_on_b_within_2_s(replicas):
    a, b = replicas
    user = a.create_user("designer_advanced")
    key = a.create_key(user=user)
    quality = {"performance_selection": "Quality"}
    assert post(b, key, **quality).status_code == 200

    # designer_basic may not use the Quality preset.
    a.cli("users", "set-role", args=["--username", user, "--role", "designer_basic"])
    took = seconds_until(lambda: post(b, key, **quality).status_code == 403, PROPAGATION_LIMIT_S)
    print(f"role change reached replica B after {took * 1000:.0f} ms")
    assert post(b, key).status_code == 200, "the new role still allows Speed"

    # And back, through B this time: A sees it.
    b.cli("users", "set-role", args=["--username", user, "--role", "designer_advanced"])
    seconds_until(lambda: post(a, key, **quality).status_code == 200, PROPAGATION_LIMIT_S)


def test_sixty_parallel_requests_across_both_replicas_get_exactly_the_quota_of_20(replicas):
    a, b = replicas
    user = a.create_user("metered20")
    key = a.create_key(user=user)
    a.upstream.clear()
    b.upstream.clear()

    def one(i: int) -> int:
        return post(a if i % 2 == 0 else b, key, image_number=1).status_code

    with ThreadPoolExecutor(60) as pool:
        codes = list(pool.map(one, range(60)))
    assert codes.count(200) == 20, codes
    assert codes.count(429) == 40, codes
    assert len(a.upstream.requests) + len(b.upstream.requests) == 20
    # Both replicas allowed some: the counter really is shared, not per replica.
    assert a.upstream.requests and b.upstream.requests
    assert post(a, key, image_number=1).status_code == 429
    assert post(b, key, image_number=1).status_code == 429
