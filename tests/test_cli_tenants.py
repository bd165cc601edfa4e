"""``shipyard tenants`` as a real command: a policy that does not validate, a malformed ``set``,
a second ``create`` and an unknown tenant each exit 1 with one line naming the problem, and
nothing is stored. (The round trip with the API is in ``tests/api/test_tenants.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

from tests.servers import ServerProcess


def test_the_cli_names_the_field_and_exits_1(tmp_path: Path) -> None:
    shipyard = ServerProcess(home=tmp_path, app=None)
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text('region = "eu"\n[limits]\nmax_concurrent_runs = -1\n')
    refused = shipyard.cli("tenants", "create", "acme", "--policy-file", str(bad_file))
    assert refused.returncode == 1
    assert "invalid policy: limits.max_concurrent_runs:" in refused.stderr
    typo = shipyard.cli("tenants", "set", "acme", "limits.rpm=5", "retention.runs_days=x")
    assert typo.returncode == 1
    assert "limits.rpm: Extra inputs are not permitted" in typo.stderr
    assert "retention.runs_days: Input should be a valid integer" in typo.stderr
    assert shipyard.cli("tenants", "set", "acme", "region").returncode == 1
    assert "error: no tenant 'acme'" in shipyard.cli("tenants", "show", "acme").stderr

    made = shipyard.cli(
        "tenants", "set", "acme", "retention.runs_days=30", "budgets.usd_per_day=2.5"
    )
    assert made.returncode == 0, made.stderr
    stored = json.loads(made.stdout)
    assert stored["version"] == 1 and stored["policy"]["retention"]["runs_days"] == 30
    again = shipyard.cli("tenants", "create", "acme")
    assert again.returncode == 1 and "policy_conflict" not in again.stderr
    assert "is at version 1, not 0" in again.stderr
    not_a_section = shipyard.cli("tenants", "set", "acme", "region.name=x")
    assert not_a_section.returncode == 1 and "region: is not a section" in not_a_section.stderr
    shown = json.loads(shipyard.cli("tenants", "show", "acme").stdout)
    assert shown == stored  # nothing refused was stored


def test_set_limits_changes_only_the_limits_given(tmp_path: Path) -> None:
    shipyard = ServerProcess(home=tmp_path, app=None)
    nothing = shipyard.cli("tenants", "set-limits", "acme")
    assert nothing.returncode == 1 and "nothing to change" in nothing.stderr
    assert shipyard.cli("tenants", "set-limits", "acme", "--tokens-per-day", "-1").returncode == 2
    made = shipyard.cli(
        "tenants", "set-limits", "acme", "--requests-per-minute", "600", "--tokens-per-day", "9"
    )
    assert made.returncode == 0, made.stderr
    limits = json.loads(made.stdout)["policy"]["limits"]
    assert limits["requests_per_minute"] == 600 and limits["tokens_per_day"] == 9
    changed = shipyard.cli("tenants", "set-limits", "acme", "--tokens-per-day", "0")  # unset
    after = json.loads(changed.stdout)
    assert after["version"] == 2
    assert after["policy"]["limits"]["requests_per_minute"] == 600
    assert after["policy"]["limits"]["tokens_per_day"] is None


def test_set_retention_changes_only_the_periods_given(tmp_path: Path) -> None:
    shipyard = ServerProcess(home=tmp_path, app=None)
    nothing = shipyard.cli("tenants", "set-retention", "acme")
    assert nothing.returncode == 1 and "nothing to change" in nothing.stderr
    assert shipyard.cli("tenants", "set-retention", "acme", "--runs-days", "-1").returncode == 2
    made = shipyard.cli(
        "tenants", "set-retention", "acme", "--runs-days", "30", "--artifacts-days", "7"
    )
    assert made.returncode == 0, made.stderr
    retention = json.loads(made.stdout)["policy"]["retention"]
    assert retention["runs_days"] == 30 and retention["artifacts_days"] == 7
    assert retention["sessions_days"] is None
    changed = shipyard.cli(
        "tenants", "set-retention", "acme", "--artifacts-days", "0", "--memories-days", "90"
    )
    after = json.loads(changed.stdout)
    assert after["version"] == 2
    assert after["policy"]["retention"]["runs_days"] == 30
    assert after["policy"]["retention"]["artifacts_days"] is None  # 0 unsets
    assert after["policy"]["retention"]["memories_days"] == 90
