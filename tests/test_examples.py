"""The example manifests in examples/ are valid Kubernetes objects (strict schema) and say what they claim."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_is_valid_in_strict_mode(name: str) -> None:
    for doc in _docs(name):
        try:
            kubernetes_validate.validate(doc, "1.34.2", strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {exc.message}")


def test_test_app_has_what_the_tutorial_needs() -> None:
    kinds = {d["kind"]: d for d in _docs("test-app.yaml")}
    assert set(kinds) == {"Namespace", "Deployment", "Service", "Ingress", "PodDisruptionBudget"}
    deployment, pdb = kinds["Deployment"], kinds["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]  # a drain can always evict one
    backend = kinds["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == kinds["Service"]["metadata"]["name"]
    (lb,) = _docs("test-app-loadbalancer.yaml")
    assert (
        lb["spec"]["type"] == "LoadBalancer"
        and lb["spec"]["selector"] == kinds["Service"]["spec"]["selector"]
    )
