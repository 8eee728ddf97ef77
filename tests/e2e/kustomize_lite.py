"""A small kustomize renderer for the features k8s/ uses, so CI can render every overlay without
a kubectl binary (Debian's `kubernetes-client` is 1.20, whose embedded kustomize predates
`patches:`). When a kubectl with kustomize v5 is on the PATH, tests/e2e/test_deploy.py also
renders with it and compares.

Supported: resources (files and directories), namespace, configMapGenerator (files, literals;
behavior create/merge/replace; name-hash suffixes with references rewritten in pod specs),
patches (strategic merge from the patch's own kind/name, or JSON 6902 with a target), replicas,
images (newName/newTag/digest). Anything else in a kustomization.yaml is an error, so a new
feature cannot be silently ignored.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import yaml

SUPPORTED = {
    "apiVersion", "kind", "namespace", "resources", "configMapGenerator", "patches", "replicas", "images",
}
# Strategic-merge keys of the lists k8s/ patches (everything else is replaced whole).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "envFrom": None,
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


class KustomizeError(Exception):
    pass


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _find(objs: list[dict], kind: str, name: str) -> dict:
    for o in objs:
        if _key(o) == (kind, name):
            return o
    raise KustomizeError(f"no {kind}/{name} to patch")


def strategic_merge(base, patch, list_key: str | None = None):
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list):
        mk = MERGE_KEYS.get(list_key or "")
        if not mk or not all(isinstance(x, dict) for x in base + patch):
            return copy.deepcopy(patch)
        out = list(base)
        for item in patch:
            idx = next((i for i, b in enumerate(out) if b.get(mk) == item.get(mk)), None)
            if item.get("$patch") == "delete":
                if idx is not None:
                    out.pop(idx)
            elif idx is None:
                out.append(copy.deepcopy(item))
            else:
                out[idx] = strategic_merge(out[idx], item)
        return out
    return copy.deepcopy(patch)


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json6902(obj: dict, ops: list[dict]) -> dict:
    obj = copy.deepcopy(obj)
    for op in ops:
        *parents, last = _pointer(op["path"])
        node = obj
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        kind = op["op"]
        if isinstance(node, list):
            i = len(node) if last == "-" else int(last)
            if kind == "remove":
                node.pop(i)
            elif kind == "replace":
                node[i] = copy.deepcopy(op["value"])
            elif kind == "add":
                node.insert(i, copy.deepcopy(op["value"]))
            else:
                raise KustomizeError(f"unsupported op {kind}")
        else:
            if kind == "remove":
                del node[last]
            elif kind in ("replace", "add"):
                if kind == "replace" and last not in node:
                    raise KustomizeError(f"replace of missing {op['path']}")
                node[last] = copy.deepcopy(op["value"])
            else:
                raise KustomizeError(f"unsupported op {kind}")
    return obj


def _pod_specs(obj: dict):
    spec = obj.get("spec", {})
    if "template" in spec:
        yield spec["template"]["spec"]
    if obj["kind"] == "Pod":
        yield spec


def _matches(obj: dict, target: dict) -> bool:
    group, _, version = obj["apiVersion"].rpartition("/")
    return (
        target.get("kind", obj["kind"]) == obj["kind"]
        and target.get("name", obj["metadata"]["name"]) == obj["metadata"]["name"]
        and target.get("group", group) == group
        and target.get("version", version) == version
    )


def _render(directory: Path) -> tuple[list[dict], set[str]]:
    """(objects, names of generated ConfigMaps) before name hashing."""
    kfile = directory / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    unknown = set(k) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported fields {sorted(unknown)}")
    objs: list[dict] = []
    generated: set[str] = set()
    for res in k.get("resources", []):
        p = (directory / res).resolve()
        if p.is_dir():
            sub, gen = _render(p)
            objs += sub
            generated |= gen
        else:
            objs += _docs(p)
    for g in k.get("configMapGenerator", []):
        data = {}
        for f in g.get("files", []):
            key, _, src = f.partition("=") if "=" in f else (Path(f).name, "", f)
            data[key] = (directory / src).read_text()
        for lit in g.get("literals", []):
            key, _, value = lit.partition("=")
            data[key] = value
        behavior = g.get("behavior", "create")
        if behavior == "create":
            if g["name"] in generated:
                raise KustomizeError(f"ConfigMap {g['name']} generated twice")
            objs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g["name"]}, "data": data})
            generated.add(g["name"])
        else:
            cm = _find(objs, "ConfigMap", g["name"])
            cm["data"] = {**cm.get("data", {}), **data} if behavior == "merge" else data
    for patch in k.get("patches", []):
        text = patch["patch"] if "patch" in patch else (directory / patch["path"]).read_text()
        body = yaml.safe_load(text)
        if isinstance(body, list):
            target = patch.get("target") or {}
            hits = [i for i, o in enumerate(objs) if _matches(o, target)]
            if not hits:
                raise KustomizeError(f"patch target {target} matches nothing")
            for i in hits:
                objs[i] = json6902(objs[i], body)
        else:
            i = objs.index(_find(objs, body["kind"], body["metadata"]["name"]))
            objs[i] = strategic_merge(objs[i], body)
    for r in k.get("replicas", []):
        _find(objs, "Deployment", r["name"])["spec"]["replicas"] = r["count"]
    for img in k.get("images", []):
        for o in objs:
            for spec in _pod_specs(o):
                for c in spec.get("containers", []) + spec.get("initContainers", []):
                    name = c["image"].split("@")[0].rsplit(":", 1)[0] if ":" in c["image"].split("/")[-1] else c["image"].split("@")[0]
                    if name != img["name"]:
                        continue
                    new = img.get("newName", name)
                    if "digest" in img:
                        new += "@" + img["digest"]
                    elif "newTag" in img:
                        new += ":" + str(img["newTag"])
                    c["image"] = new
    if "namespace" in k:
        for o in objs:
            o["metadata"]["namespace"] = k["namespace"]
    return objs, generated


def _hash(cm: dict) -> str:
    digest = hashlib.sha256(json.dumps(cm.get("data", {}), sort_keys=True).encode()).hexdigest()
    return digest[:10]


def render(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize DIRECTORY` would print (generated names get a content
    hash suffix, as kustomize does, though not kustomize's exact hash)."""
    objs, generated = _render(Path(directory).resolve())
    renamed = {}
    for o in objs:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] in generated:
            new = f"{o['metadata']['name']}-{_hash(o)}"
            renamed[o["metadata"]["name"]] = new
            o["metadata"]["name"] = new
    for o in objs:
        for spec in _pod_specs(o):
            for v in spec.get("volumes", []):
                if "configMap" in v:
                    v["configMap"]["name"] = renamed.get(v["configMap"]["name"], v["configMap"]["name"])
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("configMapKeyRef")
                    if ref:
                        ref["name"] = renamed.get(ref["name"], ref["name"])
                for e in c.get("envFrom", []):
                    ref = e.get("configMapRef")
                    if ref:
                        ref["name"] = renamed.get(ref["name"], ref["name"])
    return objs
