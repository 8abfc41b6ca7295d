"""The cluster recipe of docs/cluster.md cannot be launched here; its files must at least parse and use only
keys Ray documents: the launcher YAML is validated against the schema the installed Ray ships
(ray/autoscaler/ray-schema.json), the KubeRay manifest against the ray.io/v1 RayCluster fields it uses.
Both must install from the lock, pass the auth token to every node and mount the shared run folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "docs" / "cluster"

# ray.io/v1 RayCluster fields (KubeRay CRD API reference, v1.5/v1.6) this recipe may use.
RAYCLUSTER_SPEC = {"rayVersion", "headGroupSpec", "workerGroupSpecs", "enableInTreeAutoscaling", "autoscalerOptions",
                   "authOptions", "headServiceAnnotations", "suspend", "gcsFaultToleranceOptions"}
HEAD_GROUP = {"rayStartParams", "template", "serviceType", "headService", "enableIngress"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template", "numOfHosts",
                "scaleStrategy", "idleTimeoutSeconds", "suspend"}


def _ray_schema() -> dict:
    spec = importlib.util.find_spec("ray")  # located, not imported: importing Ray costs seconds
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "autoscaler" / "ray-schema.json"
    return json.loads(path.read_text())


def test_the_launcher_yaml_is_valid_for_the_installed_rays_schema():
    import jsonschema

    config = yaml.safe_load((CLUSTER / "ray-cluster.aws.yaml").read_text())
    jsonschema.validate(config, _ray_schema())  # additionalProperties: false, so an unknown key fails
    assert config["head_node_type"] in config["available_node_types"]
    setup = " ".join(config["setup_commands"])
    assert "make -C ~/hwsearch setup" in setup and "torch==2.13.0" in setup  # the Makefile's lock
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = " ".join(config[key])
        assert "RAY_AUTH_MODE=token" in start and "RAY_AUTH_TOKEN_PATH=" in start, key
        assert "HWSEARCH_CACHE=/shared/cache" in start, key
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "/shared" in setup


def test_the_kuberay_manifest_uses_documented_raycluster_fields_and_passes_token_and_shared_folder():
    doc = yaml.safe_load((CLUSTER / "raycluster.kuberay.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster") and doc["metadata"]["name"]
    spec = doc["spec"]
    assert set(spec) <= RAYCLUSTER_SPEC
    assert set(spec["headGroupSpec"]) <= HEAD_GROUP
    groups = spec["workerGroupSpecs"]
    assert groups and all(set(g) <= WORKER_GROUP for g in groups)
    for group in [spec["headGroupSpec"], *groups]:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())  # map[string]string
        pod = group["template"]["spec"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        for c in pod["containers"]:
            env = {e["name"]: e for e in c["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "auth_token"
            assert env["HWSEARCH_CACHE"]["value"].startswith("/shared/")
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert claims[mounts["/shared"]] == "hwsearch-shared"


def test_the_docker_image_installs_from_the_lock_and_ray_matches_it():
    lock = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert "make -C /home/ray/hwsearch setup" in dockerfile
    assert f"rayproject/ray:{lock['ray']}-" in dockerfile  # the base image's Ray is the lock's
    manifest = yaml.safe_load((CLUSTER / "raycluster.kuberay.yaml").read_text())
    assert manifest["spec"]["rayVersion"] == lock["ray"]
