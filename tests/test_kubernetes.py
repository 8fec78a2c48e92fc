"""k8s/: pcq on Kubernetes, on paper -- checked against the Kubernetes schemas.

No cluster runs on this project's machines, so the manifests are validated
offline: every Kubernetes object with ``kubernetes-validate`` (it ships the
API's JSON schemas; strict: unknown fields are errors), the KEDA objects
structurally (their CRDs are not in those schemas), and all of them against
what the rest of the project says: the settings compose passes, the Redis key
KEDA counts, the grace period above the consumers' drain time, the
NetworkPolicy selecting Redis's pods, the Secret keys the pods mount.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pcq.core.redis_common.keys import Keys

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.30.0"  # a version every maintained cluster understands
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


DOCS = documents()


def by_kind(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_every_manifest_is_found() -> None:
    kinds = sorted({d["kind"] for _, d in DOCS})
    assert kinds == ["ConfigMap", "Deployment", "Job", "Namespace", "NetworkPolicy",
                     "ScaledObject", "Service", "StatefulSet", "TriggerAuthentication"], kinds


@pytest.mark.parametrize(("where", "doc"), [(w, d) for w, d in DOCS if d["kind"] not in KEDA_KINDS],
                         ids=[w for w, d in DOCS if d["kind"] not in KEDA_KINDS])
def test_kubernetes_objects_match_the_schemas(where: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    broken = json.loads(json.dumps(by_kind("Deployment", "consumer")))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 30  # misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def pod_specs() -> dict[str, dict[str, Any]]:
    return {
        "redis": by_kind("StatefulSet", "redis")["spec"]["template"]["spec"],
        "consumer": by_kind("Deployment", "consumer")["spec"]["template"]["spec"],
        "producer": by_kind("Job", "producer")["spec"]["template"]["spec"],
    }


def test_pods_are_hardened_and_read_passwords_from_secret_files() -> None:
    for name, pod in pod_specs().items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        (container,) = pod["containers"]
        ctx = container["securityContext"]
        assert ctx == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                       "capabilities": {"drop": ["ALL"]}}, name
        env = {e["name"]: e for e in container.get("env", [])}
        assert not any("PASSWORD" in k and not k.endswith("_FILE") for k in env), name
        if name != "redis":
            assert env["REDIS_URL"]["value"].startswith("rediss://"), name
            mounted = {m["mountPath"] for m in container["volumeMounts"]}
            assert env["PCQ_REDIS_PASSWORD_FILE"]["value"] in mounted, name


def test_consumer_grace_period_is_above_its_drain_time() -> None:
    settings = by_kind("ConfigMap", "pcq-settings")["data"]
    drain = int(settings["PCQ_BATCH"]) * float(settings["PCQ_MAX_DELAY"])
    pod = pod_specs()["consumer"]
    assert pod["terminationGracePeriodSeconds"] > 2 * drain + 5


def test_settings_are_the_ones_compose_passes() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    pcq_env = set(compose["x-pcq-env"]) - {"PCQ_ITEMS"}  # the Job gives --items
    data = set(by_kind("ConfigMap", "pcq-settings")["data"])
    assert data == pcq_env | {"PCQ_REDIS_CA_FILE"}, data ^ pcq_env


def test_network_policy_lets_only_pcq_pods_reach_redis() -> None:
    policy = by_kind("NetworkPolicy", "redis-only-from-pcq")["spec"]
    redis_labels = by_kind("StatefulSet", "redis")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= redis_labels.items()
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    own, keda = rule["from"]
    assert own == {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "pcq"}}}
    assert keda["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "keda"}
    owners = [by_kind("StatefulSet", "redis"), by_kind("Deployment", "consumer"),
              by_kind("Job", "producer")]
    for owner in owners:
        labels = owner["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "pcq", owner["metadata"]["name"]


def test_keda_scales_the_consumers_on_the_queue_length() -> None:
    scaled = by_kind("ScaledObject", "consumer")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": "consumer"}
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    queue = by_kind("ConfigMap", "pcq-settings")["data"]["PCQ_QUEUE"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == Keys(queue).queue
    assert trigger["metadata"]["address"].startswith("redis.pcq.svc")
    assert int(trigger["metadata"]["listLength"]) > 0
    auth = by_kind("TriggerAuthentication", trigger["authenticationRef"]["name"])
    params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert params == {"username", "password", "tls", "ca"}, params


def test_mounted_secrets_are_generated_by_the_kustomization() -> None:
    kustom = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    keys = {g["name"]: {Path(f).name for f in g.get("files", [])}
            | {lit.split("=")[0] for lit in g.get("literals", [])} for g in kustom["secretGenerator"]}
    assert "ca.key" not in keys["pcq-tls"], "the CA's key never leaves the secrets directory"
    for name, pod in pod_specs().items():
        volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        for mount in pod["containers"][0]["volumeMounts"]:
            if mount["name"] in volumes:
                assert mount["subPath"] in keys[volumes[mount["name"]]], (name, mount)
    refs = by_kind("TriggerAuthentication", "pcq-redis")["spec"]["secretTargetRef"]
    for ref in refs:
        assert ref["key"] in keys[ref["name"]], ref
    listed = {Path(r).name for r in kustom["resources"]}
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "keda.yaml",
                                                              "producer-job.yaml"}

