"""The Kubernetes overlays as ``kubectl kustomize`` renders them (once per test session)."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from tests.deploy.tools import ROOT, run, tool

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())

Object = dict[str, Any]


@cache
def _render(overlay: str) -> str:
    done = run([tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)])
    assert done.returncode == 0, done.stderr
    return done.stdout


def rendered(overlay: str) -> list[Object]:
    """Fresh objects each call: a test may change its copy."""
    return [doc for doc in yaml.safe_load_all(_render(overlay)) if doc]


def rendered_text(overlay: str) -> str:
    return _render(overlay)


def one(objects: list[Object], kind: str, name: str) -> Object:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_templates(objects: list[Object]) -> list[tuple[str, Object]]:
    """(Kind/name, pod template spec with its metadata) of every workload."""
    return [
        (f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"])
        for o in objects
        if o["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}
    ]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())
