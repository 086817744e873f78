"""Golden files: the add-ons rendered for the tutorial's cluster, exactly as ``update cluster`` stores them.

Regenerate with ``PYKOPS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_addons_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pykops.addons.channel import addon_files
from pykops.api.models import IngressControllerSpec
from test_addons import cluster_for

GOLDEN = Path(__file__).parent / "golden" / "addons"
UPDATE = os.environ.get("PYKOPS_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize(
    ("case", "plugin", "kubernetes_version", "ingress"),
    [
        ("tutorial", "kubenet", None, None),
        ("tutorial-calico", "calico", None, None),
        # "Accessing the cluster": the tutorial's cluster with --ingress nginx.
        ("tutorial-ingress", "kubenet", None, "nginx"),
    ],
)
def test_addons_golden(case: str, plugin: str, kubernetes_version: str | None, ingress: str | None) -> None:
    # The tutorial: 3 control-plane machines over eu-west-1a/b/c, 1 node, RBAC, the channel's default version.
    spec = {"ingress_controller": IngressControllerSpec(provider=ingress)} if ingress else {}
    cluster, _ = cluster_for(plugin, kubernetes_version, **spec)
    files = addon_files(cluster)
    directory = GOLDEN / case
    if UPDATE:
        for old in directory.rglob("*.yaml"):
            old.unlink()
        for key, data in files.items():
            path = directory / key.removeprefix("addons/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    stored = {f"addons/{p.relative_to(directory)}": p.read_bytes() for p in directory.rglob("*.yaml")}
    assert sorted(stored) == sorted(files), f"run with PYKOPS_UPDATE_GOLDEN=1 to regenerate {directory}"
    for key, data in files.items():
        assert data.decode() == stored[key].decode(), key
