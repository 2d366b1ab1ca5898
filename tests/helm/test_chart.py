"""Renders helm/ssogate with several value sets and checks what comes out.

For every good value set: the values pass values.schema.json, `helm lint --strict` finds
nothing, every manifest passes `kubernetes-validate --strict` against the oldest
Kubernetes the chart supports and the newest the validator knows, the Deployment runs the
gateway as the values say (image, args, config mount, environment from the Secret, probes,
securityContext, volumes), and the gateway binary itself accepts the rendered config file
with the pod's environment (`ssogate config check`). Bad value sets must fail to render
with a message that names what to set.

Driven through helm-python-sdk (Helm's Go library; there is no helm binary to be had)
and run by tests/helm/run.sh, which makes the virtualenv and passes SSOGATE_BIN.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import subprocess
import sys
import tempfile
import tomllib
import traceback
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ssogate"
RELEASE = "sso"
NAMESPACE = "auth"
FULLNAME = f"{RELEASE}-ssogate"
KV = Path(sys.executable).parent / "kubernetes-validate"
BIN = os.environ.get("SSOGATE_BIN", "")

MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
ADMIN_TOKEN = "admin-token-for-the-chart-test"
PG_URL = "postgres://ssogate:pw@postgres.db.svc:5432/ssogate"
REDIS_URL = "redis://:pw@redis.db.svc:6379/0"


def kube_versions() -> list[str]:
    """The chart's floor (Chart.yaml kubeVersion) and the newest the validator ships."""
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    floor = re.search(r"(\d+\.\d+\.\d+)", meta["kubeVersion"]).group(1)
    return [floor, kv.latest_version()]


# ---------------------------------------------------------------- the value sets


def good_sets() -> list[dict[str, Any]]:
    """name, values, the existing Secret's data when one is used, and what to expect."""
    return [
        {
            "name": "single replica, SQLite (defaults)",
            "values": {},
            "expect": {
                "replicas": 1,
                "image": "ssogate:0.1.0",
                "config_from": "configmap",
                "data_volume": "emptyDir",
                "secret_env": set(),
                "public_url": "http://127.0.0.1:8080",
                "kinds": {"ServiceAccount", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget"},
            },
        },
        {
            "name": "two replicas, Redis + PostgreSQL from an existingSecret",
            "values": {
                "replicaCount": 2,
                "image": {"repository": "registry.example.com/sso/ssogate", "tag": "1.2.3"},
                "secrets": {"existingSecret": "sso-credentials"},
                "config": {
                    "public_url": "https://sso.example.com",
                    "session": {"cookie_domain": "example.com", "lifetime_seconds": 28800, "idle_seconds": 1800},
                    "ingress": {"allowed_domains": [".example.com"]},
                    "http": {"trusted_proxies": ["10.0.0.0/8"]},
                    "state": {"prefix": "sso:", "cache_seconds": 2},
                    "store": {"max_connections": 16},
                },
                "topologySpreadConstraints": [
                    {
                        "maxSkew": 1,
                        "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "ssogate"}},
                    }
                ],
            },
            "existing_secret": {
                "master-key": MASTER_KEY,
                "admin-token": ADMIN_TOKEN,
                "store-url": PG_URL,
                "state-url": REDIS_URL,
            },
            "expect": {
                "replicas": 2,
                "image": "registry.example.com/sso/ssogate:1.2.3",
                "config_from": "configmap",
                "data_volume": None,
                "secret_name": "sso-credentials",
                "secret_env": {"SSOGATE_MASTER_KEY", "SSOGATE_ADMIN_TOKEN", "SSOGATE_STORE__URL", "SSOGATE_STATE__URL"},
                "public_url": "https://sso.example.com",
                "kinds": {"ServiceAccount", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget"},
            },
        },
        {
            "name": "ingress + HPA + PDB + ServiceMonitor + NetworkPolicy, secrets and clients in the values",
            "values": {
                "image": {"repository": "registry.example.com/ssogate", "digest": "sha256:" + "ab" * 32},
                "store": {"url": PG_URL},
                "state": {"url": REDIS_URL},
                "secrets": {"masterKey": MASTER_KEY, "adminToken": ADMIN_TOKEN},
                "clients": [
                    {
                        "client_id": "main-server",
                        "client_secret": "a-client-secret-of-32-characters",
                        "redirect_uris": ["https://app.example.com/oauth/callback"],
                        "name": 'Main "server" \u2603',
                    }
                ],
                "ingress": {
                    "enabled": True,
                    "className": "nginx",
                    "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                    "hosts": [{"host": "sso.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                    "tls": [{"secretName": "sso-example-com-tls", "hosts": ["sso.example.com"]}],
                },
                "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5, "targetMemoryUtilizationPercentage": 80},
                "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
                "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
                "networkPolicy": {
                    "enabled": True,
                    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
                    "egress": [
                        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}], "ports": [{"port": 443, "protocol": "TCP"}]},
                        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "db"}}}], "ports": [{"port": 5432}, {"port": 6379}]},
                    ],
                },
                "containerPort": 9000,
                "extraEnv": [{"name": "SSOGATE_LOG__LEVEL", "value": "ssogate=debug,info"}],
                "config": {"log": {"format": "text"}, "login": {"flow_ttl_seconds": 300, "starts_per_minute": 120}},
            },
            "expect": {
                "replicas": None,
                "image": "registry.example.com/ssogate@sha256:" + "ab" * 32,
                "config_from": "secret",
                "data_volume": None,
                "secret_name": FULLNAME,
                "secret_env": {"SSOGATE_MASTER_KEY", "SSOGATE_ADMIN_TOKEN", "SSOGATE_STORE__URL", "SSOGATE_STATE__URL"},
                "public_url": "https://sso.example.com",
                "kinds": {
                    "ServiceAccount", "Secret", "Service", "Deployment", "PodDisruptionBudget", "Ingress",
                    "HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy",
                },
            },
        },
        {
            "name": "single replica, SQLite on a PersistentVolumeClaim",
            "values": {
                "persistence": {"enabled": True, "size": "2Gi", "storageClass": "standard"},
                "secrets": {"adminToken": ADMIN_TOKEN},
                "config": {"public_url": "http://sso.internal:8080"},
            },
            "expect": {
                "replicas": 1,
                "image": "ssogate:0.1.0",
                "config_from": "configmap",
                "data_volume": "persistentVolumeClaim",
                "secret_name": FULLNAME,
                "secret_env": {"SSOGATE_ADMIN_TOKEN"},
                "public_url": "http://sso.internal:8080",
                "kinds": {"ServiceAccount", "ConfigMap", "Secret", "Service", "Deployment", "PodDisruptionBudget", "PersistentVolumeClaim"},
            },
        },
    ]


def bad_sets() -> list[dict[str, Any]]:
    """Values that must not render: the error must say what to set (all `must` pieces)
    and must not blame what was given (`must_not`)."""
    return [
        {
            "name": "two replicas without Redis",
            "values": {"replicaCount": 2, "store": {"url": PG_URL}, "secrets": {"masterKey": MASTER_KEY}},
            "must": ["replicaCount=2 needs state shared by every replica", "Missing: state.url (Redis"],
            "must_not": ["store.url (PostgreSQL", "secrets.masterKey ("],
        },
        {
            "name": "two replicas on SQLite with Redis",
            "values": {"replicaCount": 2, "state": {"url": REDIS_URL}},
            "must": ["replicaCount=2", "store.url (PostgreSQL", "secrets.masterKey"],
            "must_not": ["state.url (Redis"],
        },
        {
            "name": "autoscaling without shared state",
            "values": {"autoscaling": {"enabled": True, "maxReplicas": 4}},
            "must": ["autoscaling (up to 4 replicas)", "state.url", "store.url", "secrets.masterKey"],
        },
        {
            "name": "existingSecret that does not hold the Redis URL, two replicas",
            "values": {"replicaCount": 3, "secrets": {"existingSecret": "creds", "keys": {"stateUrl": ""}}},
            "must": ["replicaCount=3", "Missing: state.url"],
            "must_not": ["store.url (PostgreSQL"],
        },
        {
            "name": "PostgreSQL without a master key",
            "values": {"store": {"url": PG_URL}},
            "must": ["the store is PostgreSQL", "secrets.masterKey"],
        },
        {
            "name": "a secret in config (ConfigMap)",
            "values": {"config": {"admin_token": ADMIN_TOKEN}},
            "must": ["config.admin_token would put a secret in a ConfigMap", "secrets.adminToken"],
        },
        {
            "name": "the Redis URL in config (ConfigMap)",
            "values": {"config": {"state": {"url": REDIS_URL}}},
            "must": ["config.state.url would put a secret in a ConfigMap", "use state.url"],
        },
        {
            "name": "a key the chart owns in config",
            "values": {"config": {"listen": "0.0.0.0:1"}},
            "must": ["config.listen is set by the chart"],
        },
        {
            "name": "existingSecret and a URL in the values",
            "values": {"secrets": {"existingSecret": "creds"}, "store": {"url": PG_URL}},
            "must": ["secrets.existingSecret is set, so store.url must come from that Secret"],
        },
        {
            "name": "persistence with two replicas",
            "values": {
                "replicaCount": 2, "store": {"url": PG_URL}, "state": {"url": REDIS_URL},
                "secrets": {"masterKey": MASTER_KEY}, "persistence": {"enabled": True},
            },
            "must": ["persistence is the SQLite store of a single replica"],
        },
        # values.schema.json
        {"name": "schema: a state.url that is not Redis", "values": {"state": {"url": "http://redis:6379"}}, "must": ["/state/url"]},
        {"name": "schema: a short master key", "values": {"secrets": {"masterKey": "c2hvcnQ="}}, "must": ["/secrets/masterKey"]},
        {"name": "schema: a misspelt top-level key", "values": {"replicas": 2}, "must": ["additional properties 'replicas' not allowed"]},
        {"name": "schema: zero replicas", "values": {"replicaCount": 0}, "must": ["/replicaCount"]},
        {
            "name": "schema: a client secret under 16 characters",
            "values": {"clients": [{"client_id": "a", "client_secret": "short", "redirect_uris": ["https://a/cb"]}]},
            "must": ["/clients/0/client_secret"],
        },
    ]


# ---------------------------------------------------------------- helpers


class Checks:
    def __init__(self) -> None:
        self.passed = self.failed = self.skipped = 0

    def run(self, name: str, fn: Callable[[], str | None]) -> None:
        try:
            note = fn()
        except Skip as s:
            self.skipped += 1
            print(f"SKIP {name}: {s}")
            return
        except Exception as e:  # noqa: BLE001 - any failure is reported with its cause
            self.failed += 1
            detail = str(e) if isinstance(e, AssertionError) and str(e) else traceback.format_exc()
            print(f"FAIL {name}\n     {detail.strip()}".replace("\n", "\n     "))
            return
        self.passed += 1
        print(f"ok   {name}" + (f" ({note})" if note else ""))


class Skip(Exception):
    pass


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE)


def documents(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__template"] = path
                docs.append(doc)
    return docs


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def clean(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "__template"}


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    data = dict(secret.get("stringData") or {})
    for k, v in (secret.get("data") or {}).items():
        data[k] = base64.b64decode(v).decode()
    return data


# ---------------------------------------------------------------- checks of one good set


def validate_manifests(docs: list[dict[str, Any]], versions: list[str]) -> str:
    """kubernetes-validate --strict on every manifest, for each version. The validator
    has no schema for the Prometheus Operator's ServiceMonitor (a CRD): it warns and
    skips it, which is accepted for that kind only (check_service_monitor covers it)."""
    with tempfile.TemporaryDirectory() as d:
        files = []
        for i, doc in enumerate(docs):
            f = Path(d) / f"{i:02d}-{doc['kind'].lower()}.yaml"
            f.write_text(yaml.safe_dump(clean(doc), sort_keys=False))
            files.append(str(f))
        args = [str(KV), "--strict"] + sum((["-k", v] for v in versions), []) + files
        out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    problems = [line for line in lines if line.startswith(("ERROR", "FATAL"))]
    warnings = [line for line in lines if line.startswith("WARN") and "-servicemonitor.yaml" not in line]
    assert out.returncode == 0 and not problems and not warnings, "\n".join(problems + warnings + [out.stderr])
    passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
    expected = sum(1 for d in docs if d["kind"] != "ServiceMonitor") * len(versions)
    assert len(passed) == expected, f"{len(passed)} passed, expected {expected}:\n" + out.stdout
    return f"{len(passed)} manifest validations against Kubernetes {', '.join(versions)}"


def check_deployment(case: dict[str, Any], docs: list[dict[str, Any]]) -> str:
    v, e = case["values"], case["expect"]
    dep = only(docs, "Deployment", FULLNAME)
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    assert spec.get("replicas") == e["replicas"], f"replicas {spec.get('replicas')} != {e['replicas']}"
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items(), "selector does not match the pod labels"
    annotations = spec["template"]["metadata"]["annotations"]
    assert "checksum/config" in annotations, "no config checksum: a config change would not roll the pods"

    (c,) = pod["containers"]
    assert c["image"] == e["image"], f"image {c['image']} != {e['image']}"
    assert c["args"] == ["--config", "/etc/ssogate/ssogate.toml", "serve"], c["args"]
    port = v.get("containerPort", 8080)
    assert c["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}], c["ports"]

    # Config file: mounted read-only from the ConfigMap (or the Secret when clients are set).
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {vol["name"]: vol for vol in pod["volumes"]}
    assert mounts["config"]["mountPath"] == "/etc/ssogate" and mounts["config"]["readOnly"] is True
    if e["config_from"] == "configmap":
        assert volumes["config"]["configMap"]["name"] == FULLNAME
        only(docs, "ConfigMap", FULLNAME)
    else:
        assert volumes["config"]["secret"]["secretName"] == f"{FULLNAME}-config"
        assert not [d for d in docs if d["kind"] == "ConfigMap"], "clients' secrets must not be in a ConfigMap"

    # Environment: where to listen and write, then each secret from the Secret.
    env = {x["name"]: x for x in c["env"]}
    assert env["SSOGATE_LISTEN"]["value"] == f"0.0.0.0:{port}"
    assert env["SSOGATE_DATA_DIR"]["value"] == "/var/lib/ssogate"
    from_secret = {n: x["valueFrom"]["secretKeyRef"] for n, x in env.items() if "valueFrom" in x}
    assert set(from_secret) == e["secret_env"], f"env from secrets {sorted(from_secret)} != {sorted(e['secret_env'])}"
    for name, ref in from_secret.items():
        assert ref["name"] == e["secret_name"], f"{name} from {ref['name']}"
        assert "optional" not in ref, f"{name}: a missing key must stop the pod, not start it without"
        if not v.get("secrets", {}).get("existingSecret"):
            assert ref["key"] in secret_data(only(docs, "Secret", FULLNAME)), f"{name}: key {ref['key']} not in the chart's Secret"
    for extra in v.get("extraEnv", []):
        assert env[extra["name"]] == extra, f"extraEnv {extra['name']} missing"
    if not e["secret_env"]:
        assert not [d for d in docs if d["kind"] == "Secret"], "no secret in the values, yet a Secret"

    # Probes.
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get == {"path": path, "port": "http"}, f"{probe}: {get}"

    # Hardening.
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0 and psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert c["resources"]["limits"]["memory"], "no memory limit"

    # The writable data volume: only where the gateway writes (SQLite, a generated key).
    if e["data_volume"] is None:
        assert "data" not in volumes and "data" not in mounts, "a writable volume the gateway does not need"
    else:
        assert mounts["data"]["mountPath"] == "/var/lib/ssogate"
        assert e["data_volume"] in volumes["data"], volumes["data"]
        if e["data_volume"] == "persistentVolumeClaim":
            claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
            only(docs, "PersistentVolumeClaim", claim)
            assert spec["strategy"] == {"type": "Recreate"}, "one RWO volume: the old pod must stop first"

    # The Service reaches the pods on the named port.
    svc = only(docs, "Service", FULLNAME)
    assert svc["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    return f"image {c['image']}, {len(from_secret)} secret env vars, data volume {e['data_volume']}"


def config_file(docs: list[dict[str, Any]]) -> str:
    cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == FULLNAME]
    if cms:
        return cms[0]["data"]["ssogate.toml"]
    return secret_data(only(docs, "Secret", f"{FULLNAME}-config"))["ssogate.toml"]


def check_config(case: dict[str, Any], docs: list[dict[str, Any]]) -> str:
    """The TOML is what the values say, integers stay integers, and the client's odd
    characters survive; no secret is in a ConfigMap."""
    text = config_file(docs)
    cfg = tomllib.loads(text)
    assert cfg["public_url"] == case["expect"]["public_url"], cfg["public_url"]
    for k in ("listen", "data_dir", "certs_dir", "master_key", "admin_token"):
        assert k not in cfg, f"{k} in the config file"

    def same(want: Any, got: Any, path: str) -> None:
        if isinstance(want, dict):
            for k, w in want.items():
                if w is None or k == "public_url":  # null: left out; public_url: above
                    continue
                assert k in got, f"{path}{k} missing"
                same(w, got[k], f"{path}{k}.")
        else:
            assert want == got and type(want) is type(got), f"{path[:-1]}: {got!r} ({type(got).__name__}) != {want!r}"

    same(case["values"].get("config", {}), cfg, "")
    if case["values"].get("clients"):
        assert cfg["clients"] == case["values"]["clients"], cfg["clients"]
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        for secret in (MASTER_KEY, ADMIN_TOKEN, PG_URL, REDIS_URL, "a-client-secret"):
            assert secret not in yaml.safe_dump(clean(cm)), "a secret in a ConfigMap"
    return f"{len(text.splitlines())} lines of TOML"


def pod_environment(case: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """The environment a pod would get, secrets resolved from the rendered Secret or the
    test's stand-in for an existing one."""
    dep = only(docs, "Deployment", FULLNAME)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    existing = case.get("existing_secret")
    out = {}
    for x in c["env"]:
        if "value" in x:
            out[x["name"]] = x["value"]
        else:
            ref = x["valueFrom"]["secretKeyRef"]
            data = existing if existing is not None else secret_data(only(docs, "Secret", ref["name"]))
            out[x["name"]] = data[ref["key"]]
    return out


def check_gateway_accepts(case: dict[str, Any], docs: list[dict[str, Any]]) -> str:
    """`ssogate --config <rendered file> config check` with the pod's environment."""
    if not BIN:
        raise Skip("SSOGATE_BIN is not set (tests/helm/run.sh sets it)")
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "ssogate.toml"
        f.write_text(config_file(docs))
        env = {"PATH": "/usr/bin:/bin", **pod_environment(case, docs)}
        out = subprocess.run([BIN, "--config", str(f), "config", "check"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"ssogate config check failed:\n{out.stdout}{out.stderr}"
    assert "configuration is valid" in out.stdout, out.stdout
    url = re.search(r"public_url\s+(\S+)", out.stdout).group(1).rstrip("/")
    assert url == case["expect"]["public_url"], f"the gateway sees public_url {url}"
    store = re.search(r"store\s+(\S+)", out.stdout).group(1)
    want = "postgres://" if "SSOGATE_STORE__URL" in case["expect"]["secret_env"] else "sqlite:///var/lib/ssogate/"
    assert store.startswith(want), f"store {store}, expected {want}..."
    return f"store {store}"


def check_extras(case: dict[str, Any], docs: list[dict[str, Any]]) -> str:
    """Ingress, HPA, PDB, ServiceMonitor and NetworkPolicy point at the right things."""
    kinds = {d["kind"] for d in docs}
    assert kinds == case["expect"]["kinds"], f"kinds {sorted(kinds)} != {sorted(case['expect']['kinds'])}"
    for d in docs:
        assert d["metadata"].get("namespace") == NAMESPACE, f"{d['kind']} without the release namespace"
        assert d["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    svc = only(docs, "Service", FULLNAME)
    notes = []
    if "Ingress" in kinds:
        ing = only(docs, "Ingress")
        backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": FULLNAME, "port": {"name": "http"}}, backend
        notes.append("ingress")
    if "HorizontalPodAutoscaler" in kinds:
        hpa = only(docs, "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
        assert hpa["spec"]["minReplicas"] >= 2
        notes.append("hpa")
    pdb = only(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"])
    if "minAvailable" in (case["values"].get("podDisruptionBudget") or {}):
        assert pdb["spec"]["minAvailable"] == case["values"]["podDisruptionBudget"]["minAvailable"]
    if "ServiceMonitor" in kinds:
        sm = only(docs, "ServiceMonitor")
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(), "selects no Service"
        assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        ep = sm["spec"]["endpoints"][0]
        assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]} and ep["path"] == "/metrics", ep
        assert sm["metadata"]["labels"]["release"] == "prometheus"
        notes.append("servicemonitor")
    if "NetworkPolicy" in kinds:
        np = only(docs, "NetworkPolicy")
        assert np["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        assert np["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
        assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert np["spec"]["egress"][0]["ports"][0] == {"port": 53, "protocol": "UDP"}, "DNS first"
        notes.append("networkpolicy")
    return ", ".join(notes) or "no optional objects"


def check_values_table() -> str:
    """helm/README.md's values table names every value of values.yaml (a value is
    covered by itself or by a documented parent, such as `config`), and nothing else."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(node: Any, prefix: str) -> list[str]:
        if isinstance(node, dict) and node:
            return sum((leaves(v, f"{prefix}{k}.") for k, v in node.items()), [])
        return [prefix[:-1]]

    documented = set()
    for line in (ROOT / "helm" / "README.md").read_text().splitlines():
        if not line.startswith("| `"):
            continue
        names = re.findall(r"`([^`]+)`", line.split("|")[1])
        base = names[0].rsplit(".", 1)[0]
        documented.update(n if not n.startswith(".") else base + n for n in names)
    missing = [p for p in leaves(values, "") if not any(p == d or p.startswith(d + ".") for d in documented)]
    assert not missing, f"values missing from helm/README.md's table: {missing}"
    known = set()
    for p in leaves(values, ""):
        parts = p.split(".")
        known.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    stale = sorted(d for d in documented if d not in known)
    assert not stale, f"helm/README.md's table names values that do not exist: {stale}"
    return f"{len(documented)} documented names cover {len(leaves(values, ''))} values"


# ---------------------------------------------------------------- main


def main() -> int:
    checks = Checks()
    versions = kube_versions()
    print(f"helm SDK {helm.helm_sdk_version()}, kubernetes-validate against {', '.join(versions)}")

    def lint(values: dict[str, Any]) -> Callable[[], str]:
        def run() -> str:
            report = helm.lint(CHART, copy.deepcopy(values), strict=True, kube_version="v" + versions[-1])
            bad = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
            assert not bad, "\n".join(str(m) for m in bad)
            return f"{len(report['messages'])} info message(s)"
        return run

    checks.run("helm/README.md's values table matches values.yaml", check_values_table)
    for case in good_sets():
        name = case["name"]
        state: dict[str, Any] = {}

        def schema(case: dict[str, Any] = case) -> None:
            with helm.Chart.load(CHART) as chart:
                chart.validate_schema(copy.deepcopy(case["values"]))

        def do_render(case: dict[str, Any] = case, state: dict[str, Any] = state) -> str:
            rendered = render(case["values"])
            state["docs"] = documents(rendered)
            notes = rendered[f"ssogate/templates/NOTES.txt"]
            assert case["expect"]["public_url"] in notes, "NOTES.txt does not give the public URL"
            return f"{len(state['docs'])} manifests"

        checks.run(f"[{name}] values.schema.json accepts the values", schema)
        checks.run(f"[{name}] helm lint --strict", lint(case["values"]))
        checks.run(f"[{name}] renders", do_render)
        if "docs" not in state:
            continue
        docs = state["docs"]
        checks.run(f"[{name}] kubernetes-validate --strict", lambda docs=docs: validate_manifests(docs, versions))
        checks.run(f"[{name}] Deployment runs the gateway as the values say", lambda c=case, docs=docs: check_deployment(c, docs))
        checks.run(f"[{name}] config file", lambda c=case, docs=docs: check_config(c, docs))
        checks.run(f"[{name}] the gateway accepts the config (ssogate config check)", lambda c=case, docs=docs: check_gateway_accepts(c, docs))
        checks.run(f"[{name}] optional objects", lambda c=case, docs=docs: check_extras(c, docs))

    for case in bad_sets():
        def refused(case: dict[str, Any] = case) -> str:
            try:
                render(case["values"])
            except (helm.HelmRenderError, helm.HelmValuesError) as e:
                message = str(e)
            else:
                raise AssertionError("rendered, but must fail")
            for piece in case["must"]:
                assert piece in message, f"the message lacks {piece!r}:\n{message}"
            for piece in case.get("must_not", []):
                assert piece not in message, f"the message wrongly names {piece!r}:\n{message}"
            return [line for line in message.splitlines() if line.strip()][-1].strip()[:160]

        checks.run(f"[refused: {case['name']}]", refused)

    print(f"helm chart: {checks.passed} passed, {checks.failed} failed, {checks.skipped} skipped")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
