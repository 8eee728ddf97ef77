"""The admin gRPC API (listen.admin) end to end: a Python client generated from
proto/inferguard/admin/v1/admin.proto at test time, keys it makes and rotates checked through
the real Envoy, the audit trail, the CLI's --server mode, and grpcurl over reflection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import requests

from conftest import REPO, assert_refused, fooocus_text_to_image, key_id, running_stack, wait_until

T2I = "/v1/generation/text-to-image"
PROTO_ROOT = REPO / "proto"
PROTO = "inferguard/admin/v1/admin.proto"


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """admin_pb2 and admin_pb2_grpc, generated from the repository's proto with grpcio-tools."""
    out = tmp_path_factory.mktemp("admin_pb")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"--python_out={out}",
         f"--grpc_python_out={out}", PROTO],
        check=True, capture_output=True, text=True,
    )
    sys.path.insert(0, str(out))
    try:
        from inferguard.admin.v1 import admin_pb2, admin_pb2_grpc
    finally:
        sys.path.remove(str(out))
    return admin_pb2, admin_pb2_grpc


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Local users on, so callers can present inferguard's own JWTs too.
    identity = {"api_keys": {"headers": ["x-api-key"]}, "local_users": {"enabled": True}}
    with running_stack(tmp_path_factory.mktemp("admin"), audit={"file": "audit.jsonl"}, identity=identity) as s:
        yield s


@pytest.fixture(scope="module")
def admin(stack):
    """An admin user and their API key, made with the CLI on the store."""
    user = stack.create_user("admin", "root")
    return user, stack.create_key(user=user, name="root-key")


@pytest.fixture(scope="module")
def designer(stack):
    user = stack.create_user("designer_basic", "dee")
    return user, stack.create_key(user=user, name="dee-key")


@pytest.fixture(scope="module")
def stub(stack, pb):
    _, admin_pb2_grpc = pb
    channel = grpc.insecure_channel(f"127.0.0.1:{stack.admin_port}")
    yield admin_pb2_grpc.AdminStub(channel)
    channel.close()


def creds(key: str):
    return [("x-api-key", key)]


def grpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


def admin_records(stack) -> list[dict]:
    records = []
    for path in sorted(Path(stack.dir).glob("audit-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                if rec.get("event_type") == "admin":
                    records.append(rec)
    return records


def works_through_envoy(stack, key: str) -> bool:
    r = stack.post(T2I, fooocus_text_to_image(), key=key)
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def test_no_credential_is_unauthenticated(stub, pb):
    admin_pb2, _ = pb
    err = grpc_error(lambda: stub.ListUsers(admin_pb2.ListUsersRequest(), timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    err = grpc_error(lambda: stub.ListUsers(
        admin_pb2.ListUsersRequest(), metadata=creds("fk_0000000000000000_notakey"), timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err


def test_designer_cannot_create_keys(stack, stub, pb, designer):
    admin_pb2, _ = pb
    user, key = designer
    before = len(stack.list_keys())
    err = grpc_error(lambda: stub.CreateKey(
        admin_pb2.CreateKeyRequest(name="sneaky", user=user), metadata=creds(key), timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
    assert "admin:manage_keys" in err.details()
    assert len(stack.list_keys()) == before, "a refused call created a key"


def test_admin_creates_a_user_and_key_rotates_and_revokes(stack, stub, pb, admin, upstream):
    admin_pb2, _ = pb
    _, root_key = admin
    md = creds(root_key)
    user = stub.CreateUser(admin_pb2.CreateUserRequest(username="dora", role="designer_basic",
                                                       attributes={"department": "design"}),
                           metadata=md, timeout=10)
    assert (user.username, user.role, user.has_password) == ("dora", "designer_basic", False)
    created = stub.CreateKey(admin_pb2.CreateKeyRequest(name="dora-laptop", user="dora"), metadata=md, timeout=10)
    assert key_id(created.full_key) == created.key.id
    assert created.key.status == "active"
    assert works_through_envoy(stack, created.full_key)
    seen = upstream.requests[-1]
    assert seen.headers.get("x-inferguard-subject") == "dora"

    # Rotation: a new key for the same owner; the old one keeps working during the grace.
    grace = 4
    rotated = stub.RotateKey(admin_pb2.RotateKeyRequest(id=created.key.id, grace_seconds=grace),
                             metadata=md, timeout=10)
    rotated_at = time.monotonic()
    assert rotated.new_key.owner == "dora" and rotated.new_key.id != created.key.id
    assert rotated.old_key.expires_at <= time.time() + grace + 1
    assert works_through_envoy(stack, rotated.full_key), "the new key works at once"
    assert works_through_envoy(stack, created.full_key), "the old key works during the grace"
    # ... and stops after it (the change feed reaches the server within 2 s).
    wait_until(lambda: not works_through_envoy(stack, created.full_key), grace + 10,
               "the rotated-out key to stop after its grace")
    assert time.monotonic() - rotated_at >= grace - 1, "the old key stopped before its grace ended"
    assert works_through_envoy(stack, rotated.full_key)

    revoked = stub.RevokeKey(admin_pb2.RevokeKeyRequest(id=rotated.new_key.id), metadata=md, timeout=10)
    assert revoked.key.status == "revoked" and not revoked.already_revoked
    wait_until(lambda: not works_through_envoy(stack, rotated.full_key), 10, "the revoked key to stop")
    r = stack.post(T2I, fooocus_text_to_image(), key=rotated.full_key)
    upstream.clear()
    assert_refused(r, 401)

    # One admin record per change, made as the API caller.
    actor = "admin_api:user:root"
    mine = [(r["action"], r["target"]) for r in admin_records(stack) if r.get("actor") == actor]
    assert mine == [
        ("user.create", "user:dora"),
        ("key.create", f"key:{created.key.id}"),
        ("key.rotate", f"key:{created.key.id}"),
        ("key.revoke", f"key:{rotated.new_key.id}"),
    ], mine
    # The same records through the API's audit query.
    q = stub.QueryAudit(admin_pb2.QueryAuditRequest(actor=actor), metadata=md, timeout=10)
    assert [json.loads(r)["action"] for r in q.records_json] == [a for a, _ in mine]


def cli_remote(stack, *words, token: str | None, check=True):
    """`inferguard --server URL WORDS...` from a directory without any configuration."""
    env = {k: v for k, v in stack.env.items() if k != "INFERGUARD_CONFIG"}
    env.pop("INFERGUARD_TOKEN", None)
    if token is not None:
        env["INFERGUARD_TOKEN"] = token
    cmd = [str(stack.bin), "--server", f"http://127.0.0.1:{stack.admin_port}", *words]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, cwd="/")
    if check:
        assert proc.returncode == 0, f"{cmd} exited {proc.returncode}: {proc.stderr}"
    return proc


def test_cli_server_round_trip(stack, admin, designer):
    _, root_key = admin
    cli_remote(stack, "users", "create", "--username", "remy", "--role", "designer_basic",
               "--attr", "team=remote", token=root_key)
    users = json.loads(cli_remote(stack, "users", "list", "--format", "json", token=root_key).stdout)
    remy = next(u for u in users if u["username"] == "remy")
    assert remy["role"] == "designer_basic", remy
    created = cli_remote(stack, "keys", "create", "--name", "remy-key", "--user", "remy", token=root_key)
    key = created.stdout.strip()
    assert key_id(key), created.stdout
    assert "shown only once" in created.stderr
    assert works_through_envoy(stack, key)
    listed = json.loads(cli_remote(stack, "keys", "list", "--format", "json", token=root_key).stdout)
    assert any(k["id"] == key_id(key) and k["owner"] == "remy" for k in listed), listed
    # The store sees the same thing the API returned.
    assert any(k["id"] == key_id(key) for k in stack.list_keys())
    # keys rotate through the API: the new key alone on stdout; no grace, so the old one stops.
    rotated = cli_remote(stack, "keys", "rotate", key_id(key), "--grace-days", "0", token=root_key)
    new_key = rotated.stdout.strip()
    assert key_id(new_key) != key_id(key), rotated.stdout
    assert works_through_envoy(stack, new_key)
    wait_until(lambda: not works_through_envoy(stack, key), 10, "the key rotated without grace to stop")
    # ... and on the store directly, as before.
    local = stack.cli("keys", "rotate", key_id(new_key), "--grace-days", "0.01")
    assert key_id(local.stdout.strip()) not in (key_id(key), key_id(new_key))
    assert works_through_envoy(stack, new_key), "0.01 days of grace"
    report = cli_remote(stack, "report", "permission-changes", "--format", "json", token=root_key)
    assert any(r["target"] == "user:remy" for r in json.loads(report.stdout))

    # Refusals are one-line errors and a non-zero exit.
    _, dee_key = designer
    refused = cli_remote(stack, "keys", "create", "--name", "x", "--user", "remy", token=dee_key, check=False)
    assert refused.returncode != 0 and "PermissionDenied" in refused.stderr, refused.stderr
    missing = cli_remote(stack, "users", "list", token=None, check=False)
    assert missing.returncode != 0 and "INFERGUARD_TOKEN" in missing.stderr, missing.stderr
    assert key not in refused.stderr + missing.stderr


def grpcurl() -> str:
    path = Path(sys.executable).parent / "grpcurl"
    assert path.exists(), "grpcurl missing: run scripts/install-test-tools"
    return str(path)


def test_grpcurl_lists_services_by_reflection_and_calls_one(stack, admin):
    addr = f"127.0.0.1:{stack.admin_port}"
    listed = subprocess.run([grpcurl(), "-plaintext", addr, "list"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    services = listed.stdout.split()
    assert "inferguard.admin.v1.Admin" in services, services
    described = subprocess.run([grpcurl(), "-plaintext", addr, "describe", "inferguard.admin.v1.Admin"],
                               capture_output=True, text=True, timeout=30)
    assert "rpc RotateKey" in described.stdout, described.stdout
    _, root_key = admin
    called = subprocess.run(
        [grpcurl(), "-plaintext", "-H", f"x-api-key: {root_key}", "-d", "{}", addr,
         "inferguard.admin.v1.Admin/ListUsers"],
        capture_output=True, text=True, timeout=30,
    )
    assert called.returncode == 0, called.stderr
    names = [u["username"] for u in json.loads(called.stdout)["users"]]
    assert "root" in names, names
    refused = subprocess.run(
        [grpcurl(), "-plaintext", "-d", "{}", addr, "inferguard.admin.v1.Admin/ListUsers"],
        capture_output=True, text=True, timeout=30,
    )
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr, refused.stderr


def test_jwt_bearer_callers_are_judged_by_their_role(stack, stub, pb, admin):
    """A local user made through the API (with a password) signs in at /auth/token; their
    access token is a credential for the admin API like a key, judged by their role."""
    admin_pb2, _ = pb
    _, root_key = admin
    password = "a long enough password"
    for username, role in (("jade", "admin"), ("dan", "designer_basic")):
        stub.CreateUser(admin_pb2.CreateUserRequest(username=username, role=role, password=password),
                        metadata=creds(root_key), timeout=10)

    def token(username):
        r = requests.post(f"{stack.url}/auth/token", timeout=30,
                          data={"grant_type": "password", "username": username, "password": password})
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    jade = [("authorization", f"Bearer {token('jade')}")]
    users = stub.ListUsers(admin_pb2.ListUsersRequest(), metadata=jade, timeout=10)
    assert {"jade", "dan"} <= {u.username for u in users.users}
    sa = stub.CreateServiceAccount(admin_pb2.CreateServiceAccountRequest(name="nightly", role="designer_basic"),
                                   metadata=jade, timeout=10)
    assert sa.name == "nightly"
    dan = [("authorization", f"Bearer {token('dan')}")]
    err = grpc_error(lambda: stub.CreateKey(admin_pb2.CreateKeyRequest(name="x", service_account="nightly"),
                                            metadata=dan, timeout=10))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
    forged = jade[0][1][:-4] + "AAAA"
    err = grpc_error(lambda: stub.ListUsers(admin_pb2.ListUsersRequest(),
                                            metadata=[("authorization", forged)], timeout=10))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    records = admin_records(stack)
    assert any(r.get("actor") == "admin_api:user:jade" and r["action"] == "service_account.create"
               for r in records), records[-3:]
    assert not any(r.get("actor") == "admin_api:user:dan" for r in records)
