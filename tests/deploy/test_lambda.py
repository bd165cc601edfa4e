"""deploy/lambda/template.yaml (SAM): cfn-lint finds nothing, every reference resolves, and the
functions run the handlers and queues that docs/deploy.md describes."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from shipyard.config import Settings
from shipyard.runtime.tasks import TASK_QUEUE
from tests.deploy.tools import ROOT, run, tool

TEMPLATE = ROOT / "deploy" / "lambda" / "template.yaml"
HANDLERS = {"ApiFunction": "shipyard.serverless.http:handler",
            "TaskFunction": "shipyard.serverless.sqs:handler"}  # fmt: skip


def template() -> dict[str, Any]:
    loaded, problems = decode(str(TEMPLATE))
    assert problems == [] and loaded is not None
    return dict(loaded)


@pytest.fixture(scope="module")
def findings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """cfn-lint's rule ids for the template and for a copy with a misspelt property (one run:
    cfn-lint takes a while to load its schemas)."""
    bad = tmp_path_factory.mktemp("lambda") / "misspelt.yaml"
    bad.write_text(TEMPLATE.read_text().replace("      Timeout: 150", "      Timout: 150"))
    done = run([tool("cfn-lint"), "--format", "json", str(TEMPLATE), str(bad)])
    found: dict[str, list[str]] = {TEMPLATE.name: [], bad.name: []}
    for finding in json.loads(done.stdout or "[]"):
        found[Path(finding["Filename"]).name].append(finding["Rule"]["Id"])
    return found


def test_cfn_lint_finds_nothing(findings: dict[str, list[str]]) -> None:
    assert findings[TEMPLATE.name] == []


def test_cfn_lint_does_find_a_misspelt_property(findings: dict[str, list[str]]) -> None:
    assert findings["misspelt.yaml"] == ["E3002"]


def _references(node: Any) -> list[str]:
    """Every name a Ref, GetAtt or ${} in a Sub points to."""
    if isinstance(node, list):
        return [name for item in node for name in _references(item)]
    if not isinstance(node, dict):
        return []
    found = []
    for key, value in node.items():
        if key == "Ref":
            found.append(value)
        elif key == "Fn::GetAtt":
            found.append(value[0])
        elif key == "Fn::Sub":
            text = value if isinstance(value, str) else value[0]
            found += [m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)]
        else:
            found += _references(value)
    return found


def test_every_reference_resolves() -> None:
    doc = template()
    known = set(doc["Parameters"]) | set(doc["Resources"])
    pseudo = {name for name in _references(doc) if name.startswith("AWS::")}
    assert set(_references(doc)) - pseudo <= known
    assert set(doc["Parameters"]) <= set(_references(doc))  # no unused parameter


def test_the_functions_run_the_serverless_handlers() -> None:
    resources = template()["Resources"]
    for name, handler in HANDLERS.items():
        function = resources[name]["Properties"]
        assert resources[name]["Type"] == "AWS::Serverless::Function"
        assert function["PackageType"] == "Image"
        # the runtime interface client takes Lambda's module.function spelling
        assert function["ImageConfig"]["Command"] == [handler.replace(":", ".")]
        assert function["ImageConfig"]["EntryPoint"][-2:] == ["-m", "awslambdaric"]


def test_the_handlers_exist_in_this_build() -> None:
    if importlib.util.find_spec("shipyard.serverless") is None:
        pytest.skip("this build has no shipyard.serverless (it comes with the SQS broker's branch)")
    for handler in HANDLERS.values():
        module, _, attribute = handler.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute))


def test_sqs_tasks_report_batch_item_failures_on_the_brokers_queue() -> None:
    doc = template()
    resources = doc["Resources"]
    task = resources["TaskFunction"]["Properties"]
    (event,) = task["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = resources[event["Properties"]["Queue"]["Fn::GetAtt"][0]]["Properties"]
    assert queue["QueueName"] == {"Fn::Sub": f"${{QueuePrefix}}-{TASK_QUEUE}-p0"}
    assert task["Timeout"] > Settings().run_timeout_s
    assert queue["VisibilityTimeout"] >= 6 * task["Timeout"]  # AWS's advice for a trigger
    dead = resources[queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]
    assert dead["Properties"]["QueueName"] == {"Fn::Sub": f"${{QueuePrefix}}-{TASK_QUEUE}-dead"}
    env = doc["Globals"]["Function"]["Environment"]["Variables"]
    assert env["SHIPYARD_BROKER_URL"]["Fn::Sub"].startswith("sqs://${QueuePrefix}?")
    assert env["SHIPYARD_HOME"].startswith("/tmp/")  # a function's only writable folder
    assert env["SHIPYARD_MIGRATE_ON_START"] == "false"


def test_the_image_installs_the_runtime_interface_client_its_entry_point_runs() -> None:
    """The functions run the server's image: its Dockerfile installs the ``lambda`` extra, which
    holds the module of the entry point, and the lock has a wheel of it for the image's Python
    on the functions' architecture (the build needs no compiler)."""
    resources = template()["Resources"]
    (module,) = {
        resources[name]["Properties"]["ImageConfig"]["EntryPoint"][-1] for name in HANDLERS
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["lambda"]
    assert [re.split(r"[<>=!~\[ ]", spec)[0] for spec in extra] == [module]
    dockerfile = (ROOT / "Dockerfile").read_text()
    syncs = re.findall(r"uv sync [^\n]*", dockerfile)
    assert len(syncs) == 2 and all("--extra lambda" in sync for sync in syncs), syncs
    python = re.search(r"FROM python:3\.(\d+)-", dockerfile)
    assert python is not None
    arch = {"x86_64": "x86_64", "arm64": "aarch64"}[
        template()["Globals"]["Function"]["Architectures"][0]
    ]
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (package,) = [p for p in lock["package"] if p["name"] == module]
    tag = f"-cp3{python.group(1)}-cp3{python.group(1)}-manylinux"
    assert any(tag in w["url"] and w["url"].endswith(f"{arch}.whl") for w in package["wheels"])


def test_the_queues_have_the_attributes_the_broker_gives_the_queues_it_creates() -> None:
    """One source of truth: the broker, configured by the template's ``SHIPYARD_BROKER_URL``,
    would create the template's work queue and dead letters with the same attributes (so a
    queue of another priority that it creates behaves like ``TaskQueue``)."""
    from shipyard.stores.broker.sqs import SqsBroker
    from shipyard.stores.broker.sqs_queues import dead_queue_attributes, work_queue_attributes

    doc = template()
    url = doc["Globals"]["Function"]["Environment"]["Variables"]["SHIPYARD_BROKER_URL"]["Fn::Sub"]
    broker = SqsBroker.from_url(url.replace("${QueuePrefix}", "shipyard"), region="us-east-1")
    resources = doc["Resources"]
    work = resources["TaskQueue"]["Properties"]
    dead_name = work["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    expected = work_queue_attributes(
        visibility_s=broker.visibility_s, max_receives=broker.max_receives, dead_arn=dead_name
    )
    for queue, attributes in (
        (work, expected),
        (resources[dead_name]["Properties"], dead_queue_attributes()),
    ):
        declared = {k: v for k, v in queue.items() if k != "QueueName"}
        assert set(declared) == set(attributes)
        for key, value in attributes.items():
            if key == "RedrivePolicy":
                policy = json.loads(value)
                assert int(declared[key]["maxReceiveCount"]) == int(policy["maxReceiveCount"])
                assert declared[key]["deadLetterTargetArn"] == {"Fn::GetAtt": [dead_name, "Arn"]}
            else:
                assert str(declared[key]).lower() == value.lower(), key
