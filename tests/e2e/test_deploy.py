"""The deploy files: every Envoy file passes the real Envoy's `--mode validate` from envoy/;
every kustomize overlay renders and each object validates against a current Kubernetes schema;
the inferguard.yaml/policy.yaml in every ConfigMap pass `inferguard policy check`; the pod and
image rules (non-root, read-only root filesystem, probes, limits, only Envoy reachable) hold.

Rendering: tests/e2e/kustomize_lite.py (no kubectl needed in CI); when a kubectl with kustomize
v5 is on the PATH, its rendering must agree (modulo generated-name hashes and list order).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from conftest import REPO, envoy_bin, inferguard_bin
from kustomize_lite import render

K8S = REPO / "k8s"
OVERLAYS = {
    "single": K8S / "overlays" / "single",
    "replicated": K8S / "overlays" / "replicated",
    "llm": K8S / "overlays" / "llm",
    "istio": K8S / "istio",
}
KUBERNETES_VERSION = "1.34.0"
ISTIO_GROUPS = ("networking.istio.io/", "security.istio.io/")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(path) for name, path in OVERLAYS.items()}


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def inference_deployment(objs: list[dict]) -> dict:
    (d,) = [o for o in by_kind(objs, "Deployment") if o["metadata"]["name"] == "inference"]
    return d


# --- Envoy


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "envoy").glob("*.yaml")))
def test_every_envoy_file_passes_envoy_validate(name):
    proc = subprocess.run(
        [str(envoy_bin()), "--mode", "validate", "-c", name, "-l", "error"],
        cwd=REPO / "envoy",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "OK" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_validate_really_reads_the_certificates(tmp_path):
    """From a directory without certs/, the front proxy is refused: the committed development
    certificates are what make it pass."""
    shutil.copy(REPO / "envoy" / "front-proxy.yaml", tmp_path)
    proc = subprocess.run(
        [str(envoy_bin()), "--mode", "validate", "-c", "front-proxy.yaml", "-l", "error"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "certs/" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_envoy_files_keep_the_failure_semantics():
    for path in (REPO / "envoy").glob("*.yaml"):
        cfg = yaml.safe_load(path.read_text())
        (listener,) = cfg["static_resources"]["listeners"]
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        (ext_authz,) = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ext_authz"]
        tc = ext_authz["typed_config"]
        assert tc["failure_mode_allow"] is False, path
        assert tc["with_request_body"]["max_request_bytes"] >= 16 * 1024 * 1024, path
        assert hcm["generate_request_id"] is True and "access_log" in hcm, path
        routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
        auth = [r for r in routes if r["match"].get("prefix") == "/auth/"]
        assert auth and auth[0]["typed_per_filter_config"]["envoy.filters.http.ext_authz"]["disabled"] is True
        assert auth[0]["route"]["cluster"] == "inferguard_http"


def test_front_proxy_uses_mutual_tls_on_every_hop():
    cfg = yaml.safe_load((REPO / "envoy" / "front-proxy.yaml").read_text())
    (listener,) = cfg["static_resources"]["listeners"]
    assert listener["filter_chains"][0]["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    for cluster in cfg["static_resources"]["clusters"]:
        tls = cluster["transport_socket"]["typed_config"]["common_tls_context"]
        assert tls["tls_certificates"][0]["certificate_chain"]["filename"] == "certs/envoy-client.crt", cluster["name"]
        assert tls["validation_context"]["trusted_ca"]["filename"] == "certs/ca.crt", cluster["name"]
        assert tls["validation_context"]["match_typed_subject_alt_names"], cluster["name"]


def test_development_certificates_are_marked():
    assert "DEVELOPMENT ONLY" in (REPO / "envoy" / "certs" / "README").read_text()
    for crt in (REPO / "envoy" / "certs").glob("*.crt"):
        out = subprocess.run(
            ["openssl", "x509", "-noout", "-subject", "-in", str(crt)], capture_output=True, text=True
        ) if shutil.which("openssl") else None
        text = out.stdout if out else crt.read_text()
        if out:
            assert "NOT FOR PRODUCTION" in text, (crt, text)
    assert not (REPO / "envoy" / "certs" / "ca.key").exists() or "ca.key" in (
        REPO / "envoy" / "certs" / ".gitignore"
    ).read_text()


# --- Kubernetes


def test_the_pod_runs_the_shipped_sidecar_envoy_file():
    assert (K8S / "base" / "envoy.yaml").read_bytes() == (REPO / "envoy" / "envoy.yaml").read_bytes(), (
        "k8s/base/envoy.yaml must be a copy of envoy/envoy.yaml: cp envoy/envoy.yaml k8s/base/"
    )


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_objects_validate_against_kubernetes(rendered, overlay):
    objs = rendered[overlay]
    assert objs
    for obj in objs:
        if obj["apiVersion"].startswith(ISTIO_GROUPS):
            continue  # custom resources: checked in test_istio_*
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']}: {e.message} at {list(e.path)}")
        assert obj["metadata"]["namespace"] == "inferguard", obj["metadata"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_every_configmap_passes_policy_check(rendered, overlay, tmp_path):
    configs = [o for o in by_kind(rendered[overlay], "ConfigMap") if o["metadata"]["name"].startswith("inferguard-config")]
    assert len(configs) == 1
    data = configs[0]["data"]
    assert set(data) == {"inferguard.yaml", "policy.yaml"}
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run(
        [str(inferguard_bin()), "policy", "check", str(tmp_path / "inferguard.yaml"), str(tmp_path / "policy.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok (inferguard.yaml)" in proc.stdout and "ok (policy.yaml)" in proc.stdout, proc.stdout


def test_policy_check_would_catch_a_broken_configmap(rendered, tmp_path):
    """The check above can fail: a typo in the rendered policy is reported."""
    (cm,) = [o for o in by_kind(rendered["single"], "ConfigMap") if o["metadata"]["name"].startswith("inferguard-config")]
    (tmp_path / "policy.yaml").write_text(cm["data"]["policy.yaml"].replace("permissions:", "permisions:", 1))
    proc = subprocess.run(
        [str(inferguard_bin()), "policy", "check", str(tmp_path / "policy.yaml")], capture_output=True, text=True
    )
    assert proc.returncode != 0


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_pods_are_locked_down(rendered, overlay):
    for dep in by_kind(rendered[overlay], "Deployment"):
        spec = dep["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, dep["metadata"]["name"]
        assert spec.get("automountServiceAccountToken") is False
        for c in spec["containers"]:
            sc = c["securityContext"]
            where = f"{overlay}: {dep['metadata']['name']}/{c['name']}"
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert c["resources"]["requests"] and c["resources"]["limits"], where
            assert not c["image"].endswith(("/inferguard", "inferguard")), f"{where}: image not set by `images:`"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_inferguard_probes_and_secrets(rendered, overlay):
    dep = inference_deployment(rendered[overlay])
    (ig,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "inferguard"]
    assert ig["args"] == ["serve", "--config", "/etc/inferguard/inferguard.yaml"]
    assert ig["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert ig["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port = {p["name"]: p["containerPort"] for p in ig["ports"]}[ig["readinessProbe"]["httpGet"]["port"]]
    (cm,) = [o for o in by_kind(rendered[overlay], "ConfigMap") if o["metadata"]["name"].startswith("inferguard-config")]
    cfg = yaml.safe_load(cm["data"]["inferguard.yaml"])
    assert cfg["listen"]["http"].endswith(f":{port}")
    secrets = {
        e["valueFrom"]["secretKeyRef"]["key"]: e["name"] for e in ig["env"] if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secrets["upstream-api-key"] == cfg["upstream"]["api_key_env"]
    assert secrets["audit-signing-key"] == cfg["audit"]["signing_key_env"]
    assert "oidc-client-secret" in secrets
    # The config volume is the generated ConfigMap (hash-suffixed name).
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["inferguard-config"]["configMap"]["name"] == cm["metadata"]["name"]


@pytest.mark.parametrize("overlay", ["single", "replicated", "llm"])
def test_only_envoy_reaches_the_inference_port(rendered, overlay):
    objs = rendered[overlay]
    dep = inference_deployment(objs)
    containers = {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}
    envoy_port = {p["name"]: p["containerPort"] for p in containers["envoy"]["ports"]}["envoy"]
    inference_args = " ".join(containers["inference"].get("args", []))
    assert re.search(r"(--host|--hostname) 127\.0\.0\.1", inference_args), inference_args
    (np,) = [n for n in by_kind(objs, "NetworkPolicy") if n["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "inference"}]
    open_ports = set()
    for rule in np["spec"]["ingress"]:
        for p in rule.get("ports", []):
            open_ports.add(p["port"])
        if "from" not in rule:
            assert [p["port"] for p in rule["ports"]] == [envoy_port], "only Envoy's port may be open to all"
    assert 8888 not in open_ports and 9191 not in open_ports
    (svc,) = [s for s in by_kind(objs, "Service") if s["metadata"]["name"] == "inference"]
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["envoy"]
    (pdb,) = [p for p in by_kind(objs, "PodDisruptionBudget") if p["metadata"]["name"] == "inference"]
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_single_keeps_sqlite_on_a_volume(rendered):
    objs = rendered["single"]
    dep = inference_deployment(objs)
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    claim = vols["state"]["persistentVolumeClaim"]["claimName"]
    assert "emptyDir" not in vols["state"]
    assert [p["metadata"]["name"] for p in by_kind(objs, "PersistentVolumeClaim")] == [claim]
    (cm,) = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("inferguard-config")]
    assert yaml.safe_load(cm["data"]["inferguard.yaml"])["store"]["url"].startswith("sqlite:///var/lib/inferguard/")


def test_replicated_shares_postgres_and_exports_to_the_siem(rendered):
    objs = rendered["replicated"]
    dep = inference_deployment(objs)
    assert dep["spec"]["replicas"] >= 2
    (cm,) = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("inferguard-config")]
    cfg = yaml.safe_load(cm["data"]["inferguard.yaml"])
    assert cfg["store"]["url"].startswith("postgres://") and ":" not in cfg["store"]["url"].split("@")[0][len("postgres://"):]
    (ig,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "inferguard"]
    assert "PGPASSWORD" in {e["name"] for e in ig["env"]}
    endpoint = cfg["audit"]["otlp"]["endpoint"]
    (svc,) = [s for s in by_kind(objs, "Service") if s["metadata"]["name"] == "otel-collector"]
    assert endpoint == f"http://otel-collector.inferguard.svc:{svc['spec']['ports'][0]['port']}"
    (col_cm,) = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("otel-collector-config")]
    col = yaml.safe_load(col_cm["data"]["collector.yaml"])
    for signal in ("logs", "traces", "metrics"):
        pipeline = col["service"]["pipelines"][signal]
        assert pipeline["receivers"] == ["otlp"] and pipeline["exporters"], signal
    (pdb,) = [p for p in by_kind(objs, "PodDisruptionBudget") if p["metadata"]["name"] == "inference"]
    assert pdb["spec"]["minAvailable"] < dep["spec"]["replicas"] and "maxUnavailable" not in pdb["spec"]


def test_llm_variant_fronts_an_llm_server(rendered):
    dep = inference_deployment(rendered["llm"])
    (inf,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "inference"]
    assert "text-generation-inference" in inf["image"]
    (cm,) = [o for o in by_kind(rendered["llm"], "ConfigMap") if o["metadata"]["name"].startswith("inferguard-config")]
    assert yaml.safe_load(cm["data"]["inferguard.yaml"])["upstream"]["header"] == "authorization"
    assert set(yaml.safe_load(cm["data"]["policy.yaml"])["apis"]) == {"openai", "tgi"}


def test_istio_variant_uses_a_custom_authorization_policy(rendered):
    objs = rendered["istio"]
    dep = inference_deployment(objs)
    names = [c["name"] for c in dep["spec"]["template"]["spec"]["containers"]]
    assert "envoy" not in names and "inferguard" in names  # istio-proxy is the Envoy
    mesh = yaml.safe_load((K8S / "istio" / "mesh-config.yaml").read_text())
    (provider,) = mesh["spec"]["meshConfig"]["extensionProviders"]
    grpc = provider["envoyExtAuthzGrpc"]
    assert grpc["failOpen"] is False and grpc["includeRequestBodyInCheck"]["maxRequestBytes"] >= 16 * 1024 * 1024
    (policy,) = by_kind(objs, "AuthorizationPolicy")
    assert policy["spec"]["action"] == "CUSTOM" and policy["spec"]["provider"]["name"] == provider["name"]
    assert policy["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    (entry,) = by_kind(objs, "ServiceEntry")
    assert grpc["service"] in entry["spec"]["hosts"] and entry["spec"]["endpoints"] == [{"address": "127.0.0.1"}]
    assert grpc["port"] in [p["number"] for p in entry["spec"]["ports"]]
    (cm,) = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("inferguard-config")]
    assert yaml.safe_load(cm["data"]["inferguard.yaml"])["listen"]["ext_authz"] == f"127.0.0.1:{grpc['port']}"
    (peer,) = by_kind(objs, "PeerAuthentication")
    assert peer["spec"]["mtls"]["mode"] == "STRICT"


def _kubectl_kustomize_v5() -> str | None:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    try:
        out = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"Kustomize Version: v(\d+)", out)
    return kubectl if m and int(m.group(1)) >= 5 else None


def _normalised(objs) -> dict:
    suffix = re.compile(r"-[a-z0-9]{10}$")
    out = {}
    for o in json.loads(json.dumps(list(objs))):
        if o["kind"] == "ConfigMap":
            o["metadata"]["name"] = suffix.sub("", o["metadata"]["name"])
        spec = o.get("spec", {}).get("template", {}).get("spec")
        if spec:
            for v in spec.get("volumes", []):
                if "configMap" in v:
                    v["configMap"]["name"] = suffix.sub("", v["configMap"]["name"])
            spec["containers"] = sorted(spec["containers"], key=lambda c: c["name"])
            spec["volumes"] = sorted(spec.get("volumes", []), key=lambda v: v["name"])
            for c in spec["containers"]:
                if "env" in c:
                    c["env"] = sorted(c["env"], key=lambda e: e["name"])
        out[(o["kind"], o["metadata"]["name"])] = o
    return out


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_kubectl_kustomize_agrees_when_available(rendered, overlay):
    kubectl = _kubectl_kustomize_v5()
    if kubectl is None:
        pytest.skip("no kubectl with kustomize v5 on this machine; kustomize_lite's rendering is checked alone")
    out = subprocess.run([kubectl, "kustomize", str(OVERLAYS[overlay])], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert _normalised(yaml.safe_load_all(out.stdout)) == _normalised(rendered[overlay])


# --- Dockerfile


def test_dockerfile_is_multi_stage_and_runs_as_non_root():
    lines = [l.strip() for l in (REPO / "Dockerfile").read_text().splitlines() if l.strip() and not l.startswith("#")]
    froms = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage: a build stage and a small final stage"
    final = lines[froms[-1]:]
    assert "distroless" in final[0] or "slim" in final[0] or "alpine" in final[0], final[0]
    users = [l.split(None, 1)[1] for l in final if l.upper().startswith("USER ")]
    assert users, "the final stage names a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    assert any(l.startswith("COPY --from=") for l in final)
    assert any(l.startswith("ENTRYPOINT") and "inferguard" in l for l in final)
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "target/" in ignored and "envoy/certs/" in ignored and ".tools/" in ignored
