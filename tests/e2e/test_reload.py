"""Changes that reach a running server without a restart: policy hot reload (file change and
SIGHUP, invalid policies refused), and store changes made by the CLI in another process."""

import signal
import time

from conftest import POLICY_YAML, assert_refused, fooocus_text_to_image, tail, wait_until

T2I = "/v1/generation/text-to-image"
SPEED = fooocus_text_to_image(performance_selection="Speed")


def status_of(stack, key, body=SPEED):
    return stack.post(T2I, body, key=key).status_code


def write_policy(stack, text):
    # Write then rename, as editors and ConfigMap updates do, so the server never reads half a file.
    tmp = stack.policy.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(stack.policy)


def test_policy_change_applies_and_invalid_policy_keeps_the_old_one(stack, upstream):
    user = stack.create_user("designer_basic")
    key = stack.create_key(user=user)
    assert status_of(stack, key) == 200
    try:
        write_policy(stack, POLICY_YAML.replace("presets: [Speed, Lightning, Extreme Speed]", "presets: [Lightning]"))
        wait_until(lambda: status_of(stack, key) == 403, 5, "the narrowed policy to apply", 0.2)
        body = assert_refused(stack.post(T2I, SPEED, key=key), 403)
        assert body["error"] == "preset_not_allowed"

        # A broken policy (unknown permission) is refused; the narrowed one stays in force.
        write_policy(stack, POLICY_YAML.replace("generation:view]", "generation:veiw]"))
        wait_until(lambda: b"policy reload refused" in stack.serve_log.read_bytes(), 5, "the reload refusal to be logged", 0.2)
        assert b"generation:veiw" in stack.serve_log.read_bytes(), "the refusal names the problem"
        assert status_of(stack, key) == 403
        assert status_of(stack, key, fooocus_text_to_image(performance_selection="Lightning")) == 200
    finally:
        write_policy(stack, POLICY_YAML)
        wait_until(lambda: status_of(stack, key) == 200, 5, "the original policy to apply again", 0.2)


def test_sighup_reloads(stack):
    before = stack.serve_log.read_bytes().count(b"policy reloaded")
    stack.serve.send_signal(signal.SIGHUP)
    wait_until(
        lambda: stack.serve_log.read_bytes().count(b"policy reloaded") > before,
        5,
        "SIGHUP to reload the policy",
        0.1,
    )
    assert stack.serve.poll() is None, f"serve died on SIGHUP\n{tail(stack.serve_log)}"


def test_role_change_by_cli_reaches_the_server_within_two_seconds(stack):
    user = stack.create_user("viewer")
    key = stack.create_key(user=user)
    assert status_of(stack, key) == 403
    stack.cli("users", "set-role", args=["--username", user, "--role", "designer_basic"])
    started = time.monotonic()
    wait_until(lambda: status_of(stack, key) == 200, 3, "the new role to apply", 0.05)
    assert time.monotonic() - started < 2.5


def test_disabled_user_is_refused_within_two_seconds(stack, upstream):
    user = stack.create_user("designer_basic")
    key = stack.create_key(user=user)
    assert status_of(stack, key) == 200
    stack.cli("users", "disable", args=["--username", user])
    started = time.monotonic()
    wait_until(lambda: status_of(stack, key) == 401, 3, "the disabled user's key to be refused", 0.05)
    assert time.monotonic() - started < 2.5
    upstream.clear()
    body = assert_refused(stack.post(T2I, SPEED, key=key), 401, upstream)
    assert body["error"] == "disabled_principal"


def test_metrics_count_decisions(stack):
    import requests

    user = stack.create_user("designer_basic")
    key = stack.create_key(user=user)
    assert status_of(stack, key) == 200
    stack.post(T2I, SPEED, key="fk_not_a_key")
    text = requests.get(f"http://127.0.0.1:{stack.http_port}/metrics", timeout=5).text
    assert 'inferguard_decisions_total{result="allow",reason="ok"}' in text
    assert 'inferguard_decisions_total{result="deny",reason="invalid_api_key"}' in text
    assert "inferguard_check_duration_seconds_count" in text
