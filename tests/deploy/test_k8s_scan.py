"""A static security scan (checkov) of every rendered overlay and of the Dockerfile: each finding
is fixed or waived in deploy/k8s/checkov-waivers.yaml with its reason, and no waiver is stale.

A deliberately weakened copy of the API Deployment rides in the same scan, to show that the
checks that the real manifests pass do fire."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import missing_service
from tests.deploy.k8s import OVERLAYS, one, rendered, rendered_text
from tests.deploy.tools import CHECKOV, ROOT, run

WAIVERS = ROOT / "deploy" / "k8s" / "checkov-waivers.yaml"
CANARY = "canary.yaml"


def _weakened_api() -> str:
    api = one(rendered("production"), "Deployment", "shipyard-api")
    spec = api["spec"]["template"]["spec"]
    del spec["securityContext"]
    container = spec["containers"][0]
    container["securityContext"] = {"allowPrivilegeEscalation": True}
    del container["resources"], container["livenessProbe"]
    text: str = yaml.safe_dump(api)
    return text


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """check id → the files (overlay renders, Dockerfile, canary) where it failed."""
    if not CHECKOV.exists():
        missing_service(f"checkov is not installed at {CHECKOV} (make venv installs it)")
    scan = tmp_path_factory.mktemp("scan")
    for overlay in OVERLAYS:
        (scan / f"{overlay}.yaml").write_text(rendered_text(overlay))
    (scan / CANARY).write_text(_weakened_api())
    (scan / "Dockerfile").write_text((ROOT / "Dockerfile").read_text())
    args = [str(CHECKOV), "-d", str(scan), "--framework", "kubernetes", "dockerfile"]
    args += ["--output", "json", "--quiet", "--compact", "--skip-download"]
    done = run(args, timeout=600, env={"BC_SKIP_MAPPING": "TRUE"})  # offline: no mapping fetch
    reports: Any = json.loads(done.stdout)
    found: dict[str, set[str]] = {}
    for report in reports if isinstance(reports, list) else [reports]:
        for failed in report["results"]["failed_checks"]:
            found.setdefault(failed["check_id"], set()).add(Path(failed["file_path"]).name)
    return found


def _real(findings: dict[str, set[str]]) -> dict[str, set[str]]:
    real = {check: files - {CANARY} for check, files in findings.items()}
    return {check: files for check, files in real.items() if files}


def test_every_finding_is_waived_with_a_reason(findings: dict[str, set[str]]) -> None:
    waivers = yaml.safe_load(WAIVERS.read_text())
    for check, waiver in waivers.items():
        assert len(waiver["reason"].split()) >= 10, f"{check}: say why"
    unwaived = {check: files for check, files in _real(findings).items() if check not in waivers}
    assert unwaived == {}


def test_no_waiver_is_stale(findings: dict[str, set[str]]) -> None:
    waivers = yaml.safe_load(WAIVERS.read_text())
    assert set(waivers) <= set(_real(findings))


def test_the_scan_fires_on_a_weakened_deployment(findings: dict[str, set[str]]) -> None:
    fired = {check for check, files in findings.items() if CANARY in files}
    # root allowed, privilege escalation, no read-only root, capabilities kept, no limits, no
    # liveness probe
    expected = {"CKV_K8S_23", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_37", "CKV_K8S_11", "CKV_K8S_8"}
    assert expected <= fired
