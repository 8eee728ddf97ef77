"""Hostile bearer tokens against a stack that trusts two real OpenID Providers (A and B, both npm
`oidc-provider`). Every forged, tampered, stale or misdirected token is refused with 401,
`WWW-Authenticate: Bearer … error="invalid_token"` and the JSON refusal body, and never reaches
the upstream; genuine tokens from both OPs are accepted around them, so each refusal is for the
reason under test.

Forgeries are built in Python (PyJWT + cryptography, or by hand for `none`/HS256), some signed
with the OPs' real private keys (handed out by the OP's test-only /__test/keys endpoint) to make
tokens a real OP would never issue: expired, not yet valid, for another issuer.
"""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from conftest import fooocus_text_to_image, running_stack
from oidc_support import (
    OIDC_POLICY_YAML,
    OpenIDProvider,
    assert_invalid_token,
    b64json,
    b64url,
    claims_for,
    claims_of,
    forge,
    grpc_check,
    grpc_check_request,
    grpc_denial,
    hs256,
    jwt_identity,
    send_huge_header,
    unsigned,
)

T2I = "/v1/generation/text-to-image"
BODY = json.dumps(fooocus_text_to_image()).encode()


@pytest.fixture(scope="module")
def op_a(tmp_path_factory):
    op = OpenIDProvider(tmp_path_factory.mktemp("op-a"), "op-a").start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def op_b(tmp_path_factory):
    op = OpenIDProvider(tmp_path_factory.mktemp("op-b"), "op-b").start()
    yield op
    op.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, op_a, op_b):
    with running_stack(tmp_path_factory.mktemp("stack"), identity=jwt_identity(op_a, op_b),
                       policy_yaml=OIDC_POLICY_YAML) as s:
        s.extra_logs += [("OP A log", op_a.log), ("OP B log", op_b.log)]
        yield s


@pytest.fixture(scope="module")
def keys_a(op_a):
    return op_a.signing_keys()


@pytest.fixture(scope="module")
def keys_b(op_b):
    return op_b.signing_keys()


def foreign_rsa(kid: str) -> dict:
    """A fresh RSA private JWK that no OP publishes."""
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    return {**jwk, "kid": kid}


def foreign_ec(kid: str) -> dict:
    jwk = json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1())))
    return {**jwk, "kid": kid}


def send(stack, token):
    return stack.post(T2I, fooocus_text_to_image(), bearer=token)


def refused(stack, upstream, token) -> dict:
    upstream.clear()
    return assert_invalid_token(send(stack, token), upstream)


def accepted(stack, upstream, token, subject="mallory"):
    upstream.clear()
    r = send(stack, token)
    assert r.status_code == 200, f"a genuine token was refused: {r.status_code} {r.text}"
    assert upstream.only().headers.get("x-inferguard-subject") == subject


# --------------------------------------------------------------------------------------------
# Controls: genuine tokens from both OPs, and tokens signed the right way by hand


def test_genuine_tokens_from_both_issuers_are_accepted(stack, op_a, op_b, upstream):
    accepted(stack, upstream, op_a.token("alice"), "alice")
    accepted(stack, upstream, op_b.token("alice", alg="ES256"), "alice")


def test_hand_signed_control_token_is_accepted(stack, op_a, keys_a, upstream):
    """The forging helpers make valid tokens when nothing is wrong (so the refusals below are
    for the one thing each changes)."""
    accepted(stack, upstream, forge(claims_for(op_a.issuer), keys_a["rsa"], "RS256"))
    accepted(stack, upstream, forge(claims_for(op_a.issuer), keys_a["ec"], "ES256"))
    accepted(stack, upstream, forge(claims_for(op_a.issuer), keys_a["ed"], "EdDSA"))


def test_expired_within_leeway_is_accepted(stack, op_a, keys_a, upstream):
    now = int(time.time())
    accepted(stack, upstream, forge(claims_for(op_a.issuer, iat=now - 600, exp=now - 5), keys_a["rsa"], "RS256"))


# --------------------------------------------------------------------------------------------
# Signature algorithm attacks


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["empty", "copied"])
def test_alg_none(stack, op_a, keys_a, upstream, alg, signature):
    payload = unsigned(claims_for(op_a.issuer)).split(".")[1]
    header = {"alg": alg, "typ": "JWT", "kid": keys_a["rsa"]["kid"]}
    sig = "" if signature == "empty" else op_a.token("alice").split(".")[2]
    refused(stack, upstream, f"{b64json(header)}.{payload}.{sig}")


@pytest.mark.parametrize("secret_form", ["pem", "pem-stripped", "der", "jwk-json"])
def test_hs256_with_the_issuers_rsa_public_key(stack, op_a, upstream, secret_form):
    """Algorithm confusion: the public key, which anyone can download, as the HMAC secret."""
    jwk, pem = op_a.rsa_public()
    der = serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret = {"pem": pem, "pem-stripped": pem.strip(), "der": der, "jwk-json": json.dumps(jwk).encode()}[secret_form]
    refused(stack, upstream, hs256(claims_for(op_a.issuer), secret, kid=jwk["kid"]))


def test_hs256_without_kid(stack, op_a, upstream):
    _, pem = op_a.rsa_public()
    refused(stack, upstream, hs256(claims_for(op_a.issuer), pem))


def test_algorithm_not_matching_the_named_key(stack, op_a, keys_a, upstream):
    # ES256 header naming the issuer's RSA key (signed with some P-256 key).
    refused(stack, upstream, forge(claims_for(op_a.issuer), foreign_ec("x"), "ES256", kid=keys_a["rsa"]["kid"]))
    # RS256 header naming the issuer's EC key.
    refused(stack, upstream, forge(claims_for(op_a.issuer), foreign_rsa("x"), "RS256", kid=keys_a["ec"]["kid"]))


# --------------------------------------------------------------------------------------------
# Keys the issuer does not publish


def test_unknown_kid(stack, op_a, upstream):
    """Signed by a key no OP publishes, under a kid the issuer never had (inferguard refetches
    the JWKS, finds no such key, refuses)."""
    refused(stack, upstream, forge(claims_for(op_a.issuer), foreign_rsa("rsa-0-00000000"), "RS256"))


def test_foreign_key_under_the_issuers_kid(stack, op_a, keys_a, upstream):
    refused(stack, upstream, forge(claims_for(op_a.issuer), foreign_rsa(keys_a["rsa"]["kid"]), "RS256"))


def test_foreign_key_without_kid(stack, op_a, upstream):
    refused(stack, upstream, forge(claims_for(op_a.issuer), foreign_rsa("x"), "RS256", kid=None))


def test_embedded_jwk_and_jku_are_not_trusted(stack, op_a, keys_a, upstream):
    attacker = foreign_rsa("attacker-1")
    public = {k: attacker[k] for k in ("kty", "n", "e", "kid")}
    refused(stack, upstream, forge(claims_for(op_a.issuer), attacker, "RS256", jwk=public))
    refused(stack, upstream, forge(claims_for(op_a.issuer), attacker, "RS256", kid=keys_a["rsa"]["kid"], jwk=public))
    refused(stack, upstream, forge(claims_for(op_a.issuer), attacker, "RS256", kid=keys_a["rsa"]["kid"],
                                   jku="http://127.0.0.1:9/jwks"))


# --------------------------------------------------------------------------------------------
# Validity in time


def test_expired(stack, op_a, keys_a, upstream):
    now = int(time.time())
    refused(stack, upstream, forge(claims_for(op_a.issuer, iat=now - 900, exp=now - 120), keys_a["rsa"], "RS256"))


def test_not_yet_valid(stack, op_a, keys_a, upstream):
    now = int(time.time())
    refused(stack, upstream, forge(claims_for(op_a.issuer, nbf=now + 600), keys_a["ec"], "ES256"))


def test_missing_exp(stack, op_a, keys_a, upstream):
    claims = claims_for(op_a.issuer)
    del claims["exp"]
    refused(stack, upstream, forge(claims, keys_a["rsa"], "RS256"))


# --------------------------------------------------------------------------------------------
# Issuer and audience


@pytest.mark.parametrize("variant", ["untrusted", "trailing-slash", "longer-path", "upper-case", "empty"])
def test_wrong_issuer_signed_with_the_issuers_key(stack, op_a, keys_a, upstream, variant):
    iss = {
        "untrusted": "http://127.0.0.1:1",
        "trailing-slash": op_a.issuer + "/",
        "longer-path": op_a.issuer + "/realms/x",
        "upper-case": op_a.issuer.upper(),
        "empty": "",
    }[variant]
    refused(stack, upstream, forge(claims_for(iss), keys_a["rsa"], "RS256"))


def test_issuer_as_array(stack, op_a, keys_a, upstream):
    refused(stack, upstream, forge(claims_for(op_a.issuer, iss=[op_a.issuer]), keys_a["rsa"], "RS256"))


def test_wrong_audience_from_the_op_itself(stack, op_a, upstream):
    """A genuine token the OP minted for another API."""
    token = op_a.token("alice", audience="other-api")
    assert claims_of(token)["aud"] == "other-api"
    refused(stack, upstream, token)


@pytest.mark.parametrize("aud", ["other", ["other", "another"], [], "INFERGUARD", None])
def test_wrong_audience_forged(stack, op_a, keys_a, upstream, aud):
    claims = claims_for(op_a.issuer, aud=aud)
    if aud is None:
        del claims["aud"]
    refused(stack, upstream, forge(claims, keys_a["rsa"], "RS256"))


def test_issuer_b_key_claiming_issuer_a(stack, op_a, op_b, keys_b, upstream):
    """Both issuers are trusted; a token signed by B's real key but naming A is still refused."""
    claims = claims_for(op_a.issuer)
    refused(stack, upstream, forge(claims, keys_b["rsa"], "RS256"))  # B's kid, unknown at A
    refused(stack, upstream, forge(claims, keys_b["rsa"], "RS256", kid=None))
    refused(stack, upstream, forge(claims, keys_b["ed"], "EdDSA"))


def test_issuer_a_key_claiming_issuer_b(stack, op_a, op_b, keys_a, upstream):
    refused(stack, upstream, forge(claims_for(op_b.issuer), keys_a["rsa"], "RS256"))
    refused(stack, upstream, forge(claims_for(op_b.issuer), keys_a["ec"], "ES256", kid=None))


def test_genuine_b_token_with_payload_switched_to_a(stack, op_a, op_b, upstream):
    """B's genuine token, its payload re-encoded to claim A (signature no longer matches)."""
    token = op_b.token("alice")
    head, _, sig = token.split(".")
    claims = {**claims_of(token), "iss": op_a.issuer}
    refused(stack, upstream, f"{head}.{b64json(claims)}.{sig}")


# --------------------------------------------------------------------------------------------
# Tampering and malformed tokens


def test_tampered_claims(stack, op_a, upstream):
    token = op_a.token("alice")
    head, _, sig = token.split(".")
    claims = {**claims_of(token), "groups": ["fooocus_admins"], "sub": "root"}
    refused(stack, upstream, f"{head}.{b64json(claims)}.{sig}")


def test_tampered_signature(stack, op_a, upstream):
    head, payload, sig = op_a.token("alice", alg="ES256").split(".")
    flipped = ("A" if sig[5] != "A" else "B")
    refused(stack, upstream, f"{head}.{payload}.{sig[:5]}{flipped}{sig[6:]}")
    refused(stack, upstream, f"{head}.{payload}.{sig[:-4]}")


def test_missing_subject(stack, op_a, keys_a, upstream):
    claims = claims_for(op_a.issuer)
    del claims["sub"]
    refused(stack, upstream, forge(claims, keys_a["rsa"], "RS256"))


def test_critical_header(stack, op_a, keys_a, upstream):
    refused(stack, upstream, forge(claims_for(op_a.issuer), keys_a["rsa"], "RS256", crit=["exp"]))


def _malformed(op_a):
    good = op_a.token("alice")
    h, p, s = good.split(".")
    return {
        "one-segment": "abcdef",
        "two-segments": f"{h}.{p}",
        "four-segments": f"{good}.{s}",
        "empty-segments": "..",
        "header-not-base64": f"!!!.{p}.{s}",
        "header-not-json": f"{b64url(b'not json')}.{p}.{s}",
        "header-json-array": f"{b64url(b'[1,2]')}.{p}.{s}",
        "payload-not-json": f"{h}.{b64url(b'{oops')}.{s}",
        "payload-padded": f"{h}.{p}==.{s}",
        "signature-not-base64": f"{h}.{p}.%%%%",
        "no-alg": f"{b64json({'typ': 'JWT', 'kid': 'x'})}.{p}.{s}",
        "alg-not-string": f"{b64json({'alg': 256, 'kid': 'x'})}.{p}.{s}",
        "kid-not-string": f"{b64json({'alg': 'RS256', 'kid': 7})}.{p}.{s}",
        "jwe-like": f"{h}.{p}.{s}.{s}.{s}",
    }


MALFORMED = [
    "one-segment", "two-segments", "four-segments", "empty-segments", "header-not-base64", "header-not-json",
    "header-json-array", "payload-not-json", "payload-padded", "signature-not-base64", "no-alg", "alg-not-string",
    "kid-not-string", "jwe-like",
]


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_segments(stack, op_a, upstream, case):
    refused(stack, upstream, _malformed(op_a)[case])


# --------------------------------------------------------------------------------------------
# Size


def test_token_over_16_kib_through_envoy(stack, op_a, keys_a, upstream):
    """Under Envoy's 96 KiB header limit but over inferguard's 16 KiB token limit."""
    token = forge(claims_for(op_a.issuer, padding="x" * 20_000), keys_a["rsa"], "RS256")
    assert 16 * 1024 < len(token) < 90 * 1024
    refused(stack, upstream, token)


def test_one_megabyte_token_through_envoy(stack, op_a, keys_a, upstream):
    """Envoy itself refuses a 1 MB header (431) before asking inferguard."""
    token = forge(claims_for(op_a.issuer, padding="x" * 760_000), keys_a["rsa"], "RS256")
    assert len(token) > 1_000_000
    upstream.clear()
    status = send_huge_header(stack.envoy_port, T2I, "Authorization", f"Bearer {token}", BODY)
    assert status == 431, f"a 1 MB bearer header got {status}"
    assert upstream.requests == [], "a 1 MB bearer token reached the upstream"


def test_token_over_16_kib_over_grpc(stack, op_a, keys_a):
    token = forge(claims_for(op_a.issuer, padding="x" * 20_000), keys_a["rsa"], "RS256")
    resp = grpc_check(stack, grpc_check_request(T2I, {"authorization": f"Bearer {token}"}, BODY))
    status, headers, body = grpc_denial(resp)
    assert status == 401, (status, body)
    assert 'error="invalid_token"' in headers.get("www-authenticate", ""), headers
    assert body["error"] == "invalid_token", body


def test_one_megabyte_token_over_grpc(stack, op_a, keys_a):
    """Straight to the ext_authz port, as Envoy never would. README: headers over 96 KiB are
    refused with 400 `headers_too_large` before any credential is looked at."""
    token = forge(claims_for(op_a.issuer, padding="x" * 760_000), keys_a["rsa"], "RS256")
    resp = grpc_check(stack, grpc_check_request(T2I, {"authorization": f"Bearer {token}"}, BODY))
    status, _, body = grpc_denial(resp)
    assert (status, body["error"]) == (400, "headers_too_large"), (status, body)


# --------------------------------------------------------------------------------------------


def test_still_serving_after_the_attacks(stack, op_a, op_b, upstream):
    accepted(stack, upstream, op_a.token("bob", alg="PS256"), "bob")
    accepted(stack, upstream, op_b.token("bob", alg="EdDSA"), "bob")
    assert stack.health_serving()
