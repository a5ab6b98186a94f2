"""Ray cluster-launcher files in deploy/, checked offline with Ray's own code.

Each file goes through ``prepare_config`` (merges the provider's defaults.yaml, the per-node-type
min/max workers and the setup commands) and ``validate_config`` (ray-schema.json plus Ray's own
cross-checks), with sockets disabled to prove nothing reaches the network. ``ray up`` then runs the
AWS bootstrap (``bootstrap_aws``: IAM profile, key pair, subnets, security group), which calls EC2
and IAM: that step runs here against moto_server on 127.0.0.1, never against AWS. What only real AWS
can answer (p3 capacity, the SSM AMI lookup) is checked as configuration below.
"""

from __future__ import annotations

import fnmatch
import json
import re
import socket
import zipfile
from pathlib import Path

import pytest
import yaml

from deploy_pins import (
    CPU_TORCH_INDEX,
    ROOT,
    TORCH_VERSION,
    V100_TORCH_INDEX,
    envsubst_vars,
    pip_installs,
    placeholders,
    render,
)

DEPLOY = ROOT / "deploy"
CLUSTER_FILES = sorted(p for p in DEPLOY.glob("*.yaml") if "provider" in (yaml.safe_load(p.read_text()) or {}))
AWS = DEPLOY / "aws-v100.yaml"
ONPREM = DEPLOY / "onprem-v100.yaml"
# Example values for the ${NAME} placeholders that on-prem files leave to envsubst.
EXAMPLES = {
    "IMAGE_REPO": "registry.example.com/uiface-ray",
    "HEAD_IP": "10.0.0.1",
    "WORKER_IP_1": "10.0.0.2",
    "WORKER_IP_2": "10.0.0.3",
    "SSH_USER": "ops",
}
# AWS's published sizes: vCPUs and V100 GPUs per instance.
P3 = {"p3.2xlarge": (8, 1), "p3.8xlarge": (32, 4), "p3.16xlarge": (64, 8)}
PACKAGE = "$HOME/uiface-ray[dlib]"  # the file-mounted checkout: pyproject.toml's pins and its dlib extra
COMMAND_KEYS = (
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
    "initialization_commands",
)


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during config preparation: {args[:2]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def load(path: Path) -> dict:
    text = path.read_text()
    return yaml.safe_load(render(text, {k: EXAMPLES[k] for k in placeholders(text)}))


def prepared(path: Path) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(load(path))
    validate_config(config)
    return config


def test_cluster_files_found():
    assert {AWS, ONPREM} <= set(CLUSTER_FILES), CLUSTER_FILES


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_placeholders_documented(path):
    found = placeholders(path.read_text())
    if found:
        assert found == envsubst_vars(path), f"{path.name}: placeholders {found} vs its envsubst line"


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_ray_prepares_and_validates_offline(path, no_network):
    raw = load(path)
    config = prepared(path)
    # Ray merges defaults.yaml shallowly: every command list must be ours, none of the defaults'
    # (which would pip-install a Ray nightly wheel and run the DLAMI's conda setup).
    for key in COMMAND_KEYS:
        assert key in raw, f"{path.name} must set {key} (else Ray's default commands leak in)"
    assert config["head_setup_commands"] == raw["setup_commands"] + raw["head_setup_commands"]
    assert config["worker_setup_commands"] == raw["setup_commands"] + raw["worker_setup_commands"]
    assert "ray-3.0.0.dev0" not in json.dumps(config) and "anaconda3" not in json.dumps(config)


def test_validation_catches_a_broken_file(no_network):
    """The same check fails on a schema error and on a head type that is not a node type."""
    import jsonschema

    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = load(AWS)
    bad["available_node_types"]["v100x1-spot"]["resources"] = {"GPU": "one"}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(bad))
    bad = load(AWS)
    bad["head_node_type"] = "nope"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(bad))


def test_node_types_cpu_head_and_v100_workers(no_network):
    config = prepared(AWS)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}, "no sampler may land on the head"
    assert head["node_config"]["InstanceType"].startswith("m5.") and head["max_workers"] == 0
    assert any("--num-cpus=0" in c for c in config["head_start_ray_commands"])
    seen = {}
    for name, spec in types.items():
        if name == config["head_node_type"]:
            continue
        itype = spec["node_config"]["InstanceType"]
        cpus, gpus = P3[itype]
        assert spec["resources"] == {"CPU": cpus, "GPU": gpus}, name
        assert spec["min_workers"] == 0 and spec["max_workers"] >= 1, name
        spot = spec["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
        assert name.endswith("-spot") == spot, f"{name}: name and market type disagree"
        seen.setdefault(itype, set()).add(spot)
    assert seen == {t: {True, False} for t in P3}, "each p3 size needs an on-demand and a spot type"
    assert sum(s["min_workers"] for s in types.values()) <= config["max_workers"]


@pytest.mark.parametrize("path", CLUSTER_FILES, ids=lambda p: p.name)
def test_no_keys_in_cluster_files(path):
    text = path.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|aws_access_key_id|aws_credentials", text, re.I)


def test_instance_profiles():
    config = load(AWS)
    for name, spec in config["available_node_types"].items():
        profile = spec["node_config"].get("IamInstanceProfile")
        assert profile and set(profile) <= {"Arn", "Name"} and profile, f"{name}: no IamInstanceProfile"
        want = "uiface-ray-head" if name == config["head_node_type"] else "uiface-ray-worker"
        assert profile.get("Name") == want, name


def _installs(commands: list[str]):
    return [inst for c in commands for inst in pip_installs(c)]


def test_setup_installs_v100_torch_then_the_package():
    config = load(AWS)
    mounts = config["file_mounts"]
    package_dir = "/home/ubuntu/uiface-ray"
    assert mounts[f"{package_dir}/pyproject.toml"] == "./pyproject.toml"
    boto3_docker = re.search(r"boto3==(\S+)", (ROOT / "docker" / "Dockerfile.gpu").read_text()).group(1)
    head = config["available_node_types"][config["head_node_type"]]
    plans = {"head": (config["head_setup_commands"], CPU_TORCH_INDEX, "cpu")}
    for name, spec in config["available_node_types"].items():
        if spec is not head:
            plans[name] = (spec["worker_setup_commands"], V100_TORCH_INDEX, "cu126")
    for name, (commands, index, label) in plans.items():
        installs = _installs(commands)
        torch_at = next(i for i, inst in enumerate(installs) if any(p.name == "torch" for p in inst.pins))
        package_at = next(i for i, inst in enumerate(installs) if PACKAGE in inst.unpinned)
        assert torch_at < package_at, f"{name}: torch must be in place before the package's pins"
        torch = installs[torch_at]
        assert (torch.index_url, torch.pins[0].version) == (index, f"{TORCH_VERSION}+{label}"), name
        for inst in installs:
            assert set(inst.unpinned) <= {PACKAGE}, f"{name}: unpinned {inst.unpinned}"
            for pin in inst.pins:
                if pin.name == "boto3":
                    assert pin.version == boto3_docker, "boto3 differs from the images'"


def test_file_mounts_and_start_commands():
    config = load(AWS)
    for remote, local in config["file_mounts"].items():
        assert local not in (".", "./"), "mounting the checkout would hash and copy its .venv"
        if local.startswith("~"):
            assert remote == "/home/ubuntu/.ray/auth_token" and local == "~/.ray/auth_token"
        else:
            assert (ROOT / local).exists(), f"file mount source {local} missing"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in config[key] if "ray start" in c)
        assert "export PATH=$HOME/venv/bin:$PATH" in start and "RAY_AUTH_MODE=token" in start, key


def test_iam_policies_render_and_cover_the_cluster():
    values = {"BUCKET": "my-bucket", "AWS_ACCOUNT_ID": "123456789012"}
    docs = {p.stem: json.loads(render(p.read_text(), values)) for p in (DEPLOY / "iam").glob("*.json")}
    assert set(docs) == {"trust-ec2", "head-policy", "worker-policy"}

    def allowed(doc, action, resource):
        return any(
            s["Effect"] == "Allow"
            and any(fnmatch.fnmatchcase(action, a) for a in _as_list(s["Action"]))
            and any(fnmatch.fnmatchcase(resource, r) for r in _as_list(s["Resource"]))
            for s in doc["Statement"]
        )

    for name in ("head-policy", "worker-policy"):
        assert allowed(docs[name], "s3:PutObject", "arn:aws:s3:::my-bucket/uiface/shards/shard-00000.parquet")
        assert allowed(docs[name], "s3:ListBucket", "arn:aws:s3:::my-bucket")
        assert not allowed(docs[name], "s3:PutObject", "arn:aws:s3:::other-bucket/x")
    head = docs["head-policy"]
    assert allowed(head, "iam:PassRole", "arn:aws:iam::123456789012:role/uiface-ray-worker")
    assert allowed(head, "ec2:RunInstances", "*") and allowed(head, "ec2:DescribeInstances", "*")
    image = load(AWS)["available_node_types"]["head"]["node_config"]["ImageId"]
    parameter = image.removeprefix("resolve:ssm:")
    assert allowed(head, "ssm:GetParameters", f"arn:aws:ssm:us-east-1::parameter{parameter}")
    assert not allowed(docs["worker-policy"], "ec2:RunInstances", "*")


def _as_list(value):
    return value if isinstance(value, list) else [value]


def test_job_upload_stays_small(tmp_path):
    """What `ray job submit --runtime-env deploy/runtime_env.yaml --working-dir .` would upload,
    built by Ray's own packager (which honours .gitignore, so .venv stays out)."""
    from ray._private.runtime_env.packaging import create_package

    excludes = yaml.safe_load((DEPLOY / "runtime_env.yaml").read_text())["excludes"]
    target = tmp_path / "pkg.zip"
    create_package(str(ROOT), target, include_gitignore=True, excludes=excludes)
    names = zipfile.ZipFile(target).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {"uiface_ray", "pyproject.toml"} <= tops
    assert not tops & {".venv", ".git", "tests", "docs", "deploy", "docker"}, tops
    assert not any("__pycache__" in n for n in names)
    assert target.stat().st_size < 4 * 2**20, f"upload is {target.stat().st_size} bytes"


def test_onprem_runs_the_images(no_network):
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    config = prepared(ONPREM)
    docker = config["docker"]
    repo = EXAMPLES["IMAGE_REPO"]
    assert (docker["image"], docker["head_image"]) == (f"{repo}:{version}-gpu", f"{repo}:{version}-cpu")
    for kind in ("gpu", "cpu"):
        assert f":{version}-{kind}" in (ROOT / "docker" / f"Dockerfile.{kind}").read_text(), "image tags drifted"
    assert "--gpus all" in docker["worker_run_options"] and "--gpus all" not in docker.get("head_run_options", [])
    assert "--env RAY_AUTH_MODE=token" in docker["run_options"]
    assert any(o.startswith("--volume $HOME/.aws:/root/.aws:ro") for o in docker["run_options"])
    assert config["file_mounts"] == {"/root/.ray/auth_token": "~/.ray/auth_token"}
    head_start = next(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--num-cpus=0" in head_start and "--num-gpus=0" in head_start
    commands = config["head_setup_commands"] + config["worker_setup_commands"]
    assert not _installs(commands), "on-prem nodes install nothing: everything is in the images"
    assert config["provider"]["worker_ips"] == [EXAMPLES["WORKER_IP_1"], EXAMPLES["WORKER_IP_2"]]


def test_aws_bootstrap_against_loopback_ec2(s3_server, tmp_path, monkeypatch):
    """`ray up`'s next step, Ray's own bootstrap_aws, run against moto_server on 127.0.0.1 (the
    conftest S3 server also answers EC2 and IAM): it keeps our instance profiles (creates no IAM
    role), makes a key pair (written under a temporary HOME), picks subnets in the listed zones and
    a security group for every node type. Instance-type lookup is not exercised: moto's EC2 data,
    like the real API today, no longer lists p3 types."""
    import boto3

    from ray.autoscaler._private.aws.config import bootstrap_aws

    monkeypatch.setenv("HOME", str(tmp_path))
    config = bootstrap_aws(prepared(AWS))
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=s3_server)
    zones = {s["SubnetId"]: s["AvailabilityZone"] for s in ec2.describe_subnets()["Subnets"]}
    wanted = set(config["provider"]["availability_zone"].split(","))
    for name, spec in config["available_node_types"].items():
        node = spec["node_config"]
        assert node["SubnetIds"] and {zones[s] for s in node["SubnetIds"]} <= wanted, name
        assert node["SecurityGroupIds"] and node["KeyName"], name
    assert Path(config["auth"]["ssh_private_key"]).is_file()
    assert str(tmp_path) in config["auth"]["ssh_private_key"]
    roles = boto3.client("iam", region_name="us-east-1", endpoint_url=s3_server).list_roles()["Roles"]
    assert not [r for r in roles if r["RoleName"].startswith("ray-autoscaler")], "bootstrap made its own role"
