"""KubeRay manifests in deploy/kuberay/: they parse, carry the fields KubeRay's ray.io/v1 types
require, use the images from docker/, get S3 access through IRSA (no keys), and the RayJob runs
jobs/synthesize.py on the same cluster spec as the standalone RayCluster.

Required fields, from KubeRay's ray-operator/apis/ray/v1 types (fields without ``omitempty``):
RayCluster spec.headGroupSpec.{rayStartParams, template}; each workerGroupSpecs entry
{groupName, minReplicas, maxReplicas, rayStartParams, template}; a pod template needs
spec.containers with name and image. rayStartParams is map[string]string: every value a string.
KubeRay's validation rejects shutdownAfterJobFinishes together with clusterSelector.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from deploy_pins import ROOT, envsubst_vars, placeholders, pyproject_pins, render

KUBERAY = ROOT / "deploy" / "kuberay"
CLUSTER = KUBERAY / "raycluster.yaml"
JOB = KUBERAY / "rayjob-synthesize.yaml"
VALUES = {
    "IMAGE_REPO": "123456789012.dkr.ecr.us-east-1.amazonaws.com/uiface-ray",
    "IRSA_ROLE_ARN": "arn:aws:iam::123456789012:role/uiface-ray-s3",
    "BUCKET": "my-bucket",
}
P3_2XLARGE = {"cpu": 8, "memory_gi": 61}


def documents(path: Path) -> dict[str, dict]:
    docs = list(yaml.safe_load_all(render(path.read_text(), VALUES)))
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("path", [CLUSTER, JOB], ids=lambda p: p.name)
def test_placeholders_documented_and_filled(path):
    text = path.read_text()
    found = placeholders(text)
    assert found == envsubst_vars(path), f"{path.name}: placeholders {found} vs its envsubst line"
    rendered = render(text, VALUES)
    assert "${" not in rendered
    assert not re.search(r"AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|AKIA[0-9A-Z]{16}", rendered)


def _check_pod_template(template: dict, where: str, service_account: str) -> dict:
    spec = template["spec"]
    assert spec.get("serviceAccountName") == service_account, f"{where}: no IRSA service account"
    containers = spec["containers"]
    assert containers and all(c.get("name") and c.get("image") for c in containers), where
    ray = containers[0]  # KubeRay runs Ray in the first container
    mounts = {m["mountPath"]: m["name"] for m in ray.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory", f"{where}: object store needs /dev/shm"
    return ray


def _gi(quantity: str) -> float:
    m = re.fullmatch(r"(\d+)(Gi|Mi)", str(quantity))
    assert m, quantity
    return int(m[1]) / (1024 if m[2] == "Mi" else 1)


def check_cluster_spec(spec: dict, service_account: str) -> None:
    assert spec["rayVersion"] == pyproject_pins()["ray"].version
    head = spec["headGroupSpec"]
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), "rayStartParams values are strings"
    assert head["rayStartParams"].get("num-cpus") == "0", "no sampler may land on the head"
    ray_head = _check_pod_template(head["template"], "head", service_account)
    assert ray_head["image"] == f"{VALUES['IMAGE_REPO']}:0.1.0-cpu"
    assert "nvidia.com/gpu" not in ray_head.get("resources", {}).get("limits", {})
    groups = spec["workerGroupSpecs"]
    assert groups and len({g["groupName"] for g in groups}) == len(groups)
    for group in groups:
        where = f"worker group {group['groupName']}"
        for key in ("groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"):
            assert key in group, f"{where}: KubeRay requires {key}"
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"], where
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), where
        ray = _check_pod_template(group["template"], where, service_account)
        assert ray["image"] == f"{VALUES['IMAGE_REPO']}:0.1.0-gpu", where
        limits, requests = ray["resources"]["limits"], ray["resources"]["requests"]
        assert int(limits["nvidia.com/gpu"]) >= 1 and requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
        assert int(limits["cpu"]) < P3_2XLARGE["cpu"] and _gi(limits["memory"]) < P3_2XLARGE["memory_gi"], (
            f"{where}: one pod must fit a p3.2xlarge"
        )


def test_raycluster_has_what_kuberay_requires():
    docs = documents(CLUSTER)
    cluster, account = docs["RayCluster"], docs["ServiceAccount"]
    assert cluster["apiVersion"] == "ray.io/v1"
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == VALUES["IRSA_ROLE_ARN"]
    check_cluster_spec(cluster["spec"], account["metadata"]["name"])


def test_spec_check_rejects_a_bad_cluster():
    docs = documents(CLUSTER)
    spec = docs["RayCluster"]["spec"]
    spec["workerGroupSpecs"][0]["rayStartParams"] = {"num-gpus": 1}
    with pytest.raises(AssertionError, match="worker group"):
        check_cluster_spec(spec, "uiface-ray")


def test_rayjob_runs_synthesize_on_the_same_cluster_and_cleans_up():
    docs = documents(JOB)
    job = docs["RayJob"]
    spec = job["spec"]
    assert job["apiVersion"] == "ray.io/v1"
    assert spec["shutdownAfterJobFinishes"] is True and "clusterSelector" not in spec
    assert spec.get("submissionMode", "K8sJobMode") in {"K8sJobMode", "HTTPMode"}
    assert spec["rayClusterSpec"] == documents(CLUSTER)["RayCluster"]["spec"], "RayJob and RayCluster drifted"
    check_cluster_spec(spec["rayClusterSpec"], docs["ServiceAccount"]["metadata"]["name"])
    words = spec["entrypoint"].split()
    assert words[:2] == ["python", "/app/jobs/synthesize.py"]
    assert [w for w in words if w.startswith("--output=")] == [f"--output=s3://{VALUES['BUCKET']}/uiface/synth-v1"]
    # /app is the images' WORKDIR, holding the repository's jobs/ and configs/.
    for dockerfile in ("Dockerfile.gpu", "Dockerfile.cpu"):
        text = (ROOT / "docker" / dockerfile).read_text()
        assert "WORKDIR /app" in text and "COPY jobs ./jobs" in text and "COPY configs ./configs" in text
    assert (ROOT / "jobs" / "synthesize.py").is_file(), "the RayJob's entrypoint job is missing"
    # The job's own parser accepts the arguments (config file present, every key known).
    from uiface_ray.cli import parse_args
    from uiface_ray.synth.config import SynthesisConfig

    args = [w.replace("/app/", f"{ROOT}/", 1) if w.startswith("/app/") else w for w in words[2:]]
    cfg = parse_args(SynthesisConfig, args)
    assert cfg.output == f"s3://{VALUES['BUCKET']}/uiface/synth-v1" and cfg.model.startswith("s3://")
    # An autoscaling cluster has no GPUs when the job starts: the pool must ask for them itself.
    workers = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert cfg.actors.use_gpu is True and 1 <= cfg.actors.num_actors <= sum(g["maxReplicas"] for g in workers)
