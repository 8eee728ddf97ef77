"""The ext_authz gRPC listener spoken to directly, the way Envoy does, and with input Envoy would
never send. Every bad input must be refused cleanly (a denial, or a gRPC error for a message
that cannot be decoded at all), and the server must go on answering afterwards."""

import json
import os

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import UPSTREAM_API_KEY, fooocus_text_to_image

T2I = "/v1/generation/text-to-image"
CHECK_METHOD = "/envoy.service.auth.v3.Authorization/Check"
GOOD_BODY = json.dumps(fooocus_text_to_image()).encode()
# gRPC errors that are a clean refusal of a message the server cannot or will not decode.
# (With failure_mode_allow: false, Envoy turns them into 503: never an allow.)
UNDECODABLE = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL}


def check_request(*, path=T2I, method="POST", headers=None, raw_body=None, body=None, header_map=None,
                  request_id="grpc-e2e-1"):
    req = external_auth_pb2.CheckRequest()
    attrs = req.attributes
    attrs.source.address.socket_address.address = "127.0.0.1"
    attrs.source.address.socket_address.port_value = 50000
    attrs.destination.address.socket_address.address = "127.0.0.1"
    attrs.destination.address.socket_address.port_value = 10000
    http = attrs.request.http
    http.id = request_id
    http.method = method
    http.path = path
    http.host = "127.0.0.1:10000"
    http.scheme = "http"
    http.protocol = "HTTP/1.1"
    all_headers = {
        ":authority": "127.0.0.1:10000",
        ":method": method,
        ":path": path,
        ":scheme": "http",
        "content-type": "application/json",
        "x-request-id": request_id,
    }
    all_headers.update(headers or {})
    for k, v in all_headers.items():
        http.headers[k] = v
    if raw_body is not None:
        http.raw_body = raw_body
        http.size = len(raw_body)
    if body is not None:
        http.body = body
        http.size = len(body.encode())
    for k, v in header_map or []:
        hv = http.header_map.headers.add()
        hv.key = k
        hv.raw_value = v
    return req


def stub(stack):
    return external_auth_pb2_grpc.AuthorizationStub(stack.grpc_channel())


def check(stack, req):
    return stub(stack).Check(req, timeout=10)


def check_raw(stack, data: bytes):
    """Sends bytes as the CheckRequest, for messages the Python protobuf library won't build."""
    call = stack.grpc_channel().unary_unary(
        CHECK_METHOD, request_serializer=None, response_deserializer=external_auth_pb2.CheckResponse.FromString
    )
    return call(data, timeout=10)


def denied_code(resp) -> int:
    assert resp.status.code != 0, f"expected a denial, got OK: {resp}"
    assert resp.WhichOneof("http_response") == "denied_response", resp
    return resp.denied_response.status.code


def assert_denied(resp, codes):
    code = denied_code(resp)
    assert code in codes, f"denied with HTTP {code}, expected one of {sorted(codes)}: {resp.denied_response.body[:300]}"


def assert_still_serving(stack, principals):
    """After bad input: a valid Check is still allowed, and health still says SERVING."""
    resp = check(stack, check_request(headers={"x-api-key": principals.alice_key}, raw_body=GOOD_BODY))
    assert resp.status.code == 0, f"a valid Check was refused after bad input: {resp}"
    assert resp.WhichOneof("http_response") == "ok_response", resp
    added = {h.header.key.lower(): h.header.value for h in resp.ok_response.headers}
    assert added.get("x-inferguard-subject") == "alice", added
    assert added.get("x-api-key") == UPSTREAM_API_KEY, added
    assert stack.health_serving(), "health no longer SERVING"


def test_health_serving(stack):
    resp = health_pb2_grpc.HealthStub(stack.grpc_channel()).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_valid_check_is_allowed(stack, principals):
    assert_still_serving(stack, principals)


def test_body_field_is_read_as_well_as_raw_body(stack, principals):
    """Envoy sends `body` (string) without pack_as_bytes: the same rules apply to it."""
    body = json.dumps(fooocus_text_to_image(performance_selection="Quality"))
    resp = check(stack, check_request(headers={"x-api-key": principals.alice_key}, body=body))
    assert_denied(resp, {403})


def test_empty_check_request(stack, principals):
    assert_denied(check(stack, external_auth_pb2.CheckRequest()), {400, 401, 403})
    assert_still_serving(stack, principals)


def test_garbage_body(stack, principals):
    resp = check(stack, check_request(headers={"x-api-key": principals.alice_key}, raw_body=os.urandom(4096)))
    assert_denied(resp, {400})
    assert_still_serving(stack, principals)


def test_non_utf8_body(stack, principals):
    raw = b'{"prompt":"a \xff\xfe cat","performance_selection":"Speed"}'
    resp = check(stack, check_request(headers={"x-api-key": principals.alice_key}, raw_body=raw))
    assert_denied(resp, {400})
    assert_still_serving(stack, principals)


def test_deeply_nested_json(stack, principals):
    raw = b'{"prompt":' + b"[" * 1000 + b"]" * 1000 + b',"performance_selection":"Speed"}'
    resp = check(stack, check_request(headers={"x-api-key": principals.alice_key}, raw_body=raw))
    assert_denied(resp, {400})
    assert_still_serving(stack, principals)


def test_truncated_body_is_413(stack, principals):
    """Envoy marks a body cut at max_request_bytes with x-envoy-auth-partial-body: true."""
    raw = GOOD_BODY[: len(GOOD_BODY) // 2]
    headers = {"x-api-key": principals.alice_key, "x-envoy-auth-partial-body": "true"}
    resp = check(stack, check_request(headers=headers, raw_body=raw))
    assert_denied(resp, {413})
    assert_still_serving(stack, principals)


def test_ten_megabyte_header(stack, principals):
    req = check_request(headers={"x-api-key": principals.alice_key, "x-big": "a" * (10 * 1024 * 1024)}, raw_body=GOOD_BODY)
    try:
        resp = check(stack, req)
    except grpc.RpcError as e:
        assert e.code() in UNDECODABLE, f"unexpected gRPC error {e.code()}: {e.details()}"
    else:
        assert_denied(resp, {400, 413, 431})
    assert_still_serving(stack, principals)


def test_non_utf8_header_raw_value(stack, principals):
    """Header values as raw bytes (Envoy's encode_raw_headers): a non-UTF-8 credential is refused."""
    req = check_request(header_map=[("x-api-key", b"fk_\xff\xfe\xfd"), (":path", T2I.encode())], raw_body=GOOD_BODY)
    assert_denied(check(stack, req), {400, 401})
    assert_still_serving(stack, principals)


@pytest.mark.parametrize("where", ["path", "header"])
def test_non_utf8_string_fields(stack, principals, where):
    """proto3 strings must be UTF-8; a message that breaks that is refused, not a crash."""
    marker = "ZZMARKERZZ"
    if where == "path":
        req = check_request(path=f"/v1/{marker}", headers={"x-api-key": principals.alice_key}, raw_body=GOOD_BODY)
    else:
        req = check_request(headers={"x-api-key": principals.alice_key, "x-note": marker}, raw_body=GOOD_BODY)
    data = req.SerializeToString()
    assert marker.encode() in data
    data = data.replace(marker.encode(), b"\xff\xfe\xfd\xfc\xc3\x28\xa0\xa1\xe2\x28")  # same length
    try:
        resp = check_raw(stack, data)
    except grpc.RpcError as e:
        assert e.code() in UNDECODABLE, f"unexpected gRPC error {e.code()}: {e.details()}"
    else:
        assert_denied(resp, {400, 401, 403})
    assert_still_serving(stack, principals)


def test_not_a_protobuf_at_all(stack, principals):
    try:
        resp = check_raw(stack, b"\xff" * 64)
    except grpc.RpcError as e:
        assert e.code() in UNDECODABLE, f"unexpected gRPC error {e.code()}: {e.details()}"
    else:
        assert_denied(resp, {400, 401, 403})
    assert_still_serving(stack, principals)
