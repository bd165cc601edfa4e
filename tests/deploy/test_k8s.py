"""deploy/k8s: every overlay renders with kubectl kustomize, each object is valid against the
Kubernetes schemas (strict: an unknown field fails), and the objects say what docs/deploy.md
promises. KEDA's objects have no schema in kubernetes-validate: their structure and references
are checked here instead."""

from __future__ import annotations

import inspect
import re
from typing import Any

import kubernetes_validate
import pytest

from shipyard.api.routes.health import router as health_router
from shipyard.config import Settings
from shipyard.runtime.tasks import TASK_QUEUE
from shipyard.stores.broker.rabbitmq import RabbitBroker
from shipyard.stores.broker.rabbitmq_wire import Names
from tests.deploy.k8s import OVERLAYS, Object, one, pod_templates, rendered, selects
from tests.deploy.test_dockerfile import cli_commands
from tests.deploy.tools import plain_credentials

K8S_VERSION = "1.37.0"
CRD_GROUPS = ("keda.sh/",)
HOME = "/var/lib/shipyard"


def test_there_are_dev_and_production_overlays() -> None:
    assert {"dev", "production", "production-sqs"} <= set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_against_the_kubernetes_schema(overlay: str) -> None:
    objects = rendered(overlay)
    assert len(objects) > 10
    for obj in objects:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue  # no schema for custom resources: see test_keda_*
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_schema_check_catches_a_misspelt_field() -> None:
    deployment = one(rendered("production"), "Deployment", "shipyard-api")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_objects_and_no_plain_credentials(overlay: str) -> None:
    objects = rendered(overlay)
    assert not [o for o in objects if o["kind"] == "Secret"]
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    for name, value in config.items():
        # a password in a URL is a {secret://...} reference, never a value
        assert not re.search(r"://[^/@{]*:(?!\{secret://)[^/@]+@", value), name
    for name in ("SHIPYARD_ADMIN_KEY", "SHIPYARD_AUDIT_KEY", "SHIPYARD_WEBHOOK_SIGNING_KEY"):
        assert config[name].startswith("secret://")
    assert "token_file=/vault/secrets/token" in config["SHIPYARD_SECRETS_URL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_settings_are_valid_and_hold_no_credential(overlay: str) -> None:
    config = next(o for o in rendered(overlay) if o["kind"] == "ConfigMap")["data"]
    if config["SHIPYARD_BROKER_URL"].startswith("sqs://") and not _knows_sqs():
        pytest.skip("this build has no SQS broker (sqs:// comes with the SQS broker's branch)")
    assert plain_credentials(config) == []


def _knows_sqs() -> bool:
    try:
        Settings(broker_url="sqs://probe")
    except ValueError as exc:
        assert "unsupported scheme 'sqs'" in str(exc)
        return False
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_locked_down(overlay: str) -> None:
    templates = pod_templates(rendered(overlay))
    assert len(templates) == 3  # api, worker, migrate
    for name, template in templates:
        spec = template["spec"]
        assert spec["serviceAccountName"] == "shipyard", name
        assert spec["automountServiceAccountToken"] is False, name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] >= 10000, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["privileged"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"])
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert {HOME, "/tmp"} <= mounts, name  # the only writable places
        annotations = template["metadata"]["annotations"]
        assert annotations["vault.hashicorp.com/agent-inject"] == "true", name
        assert annotations["vault.hashicorp.com/agent-inject-token"] == "true", name
        token_volume = annotations["vault.hashicorp.com/agent-service-account-token-volume-name"]
        volume = next(v for v in spec["volumes"] if v["name"] == token_volume)
        token = volume["projected"]["sources"][0]["serviceAccountToken"]
        assert token["audience"] == "vault" and token["expirationSeconds"] <= 3600


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_service_account_has_no_permissions(overlay: str) -> None:
    objects = rendered(overlay)
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    account = one(objects, "ServiceAccount", "shipyard")
    assert account["automountServiceAccountToken"] is False


def _container(obj: Object) -> dict[str, Any]:
    containers: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_has_probes_a_budget_and_an_autoscaler(overlay: str) -> None:
    objects = rendered(overlay)
    api = one(objects, "Deployment", "shipyard-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    container = _container(api)
    assert container["args"] == ["serve"] and "serve" in cli_commands()
    routes = {getattr(route, "path", None) for route in health_router.routes}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert "replicas" not in api["spec"]  # the autoscaler owns it
    budget = one(objects, "PodDisruptionBudget", "shipyard-api")
    assert selects(budget["spec"]["selector"]["matchLabels"], labels)
    autoscaler = one(objects, "HorizontalPodAutoscaler", "shipyard-api")
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "shipyard-api"
    assert autoscaler["spec"]["minReplicas"] > budget["spec"]["minAvailable"]
    for service in ("shipyard-api", "shipyard-api-sessions"):
        assert selects(one(objects, "Service", service)["spec"]["selector"], labels)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_stops_gracefully_and_the_migration_job_migrates(overlay: str) -> None:
    objects = rendered(overlay)
    worker = one(objects, "Deployment", "shipyard-worker")
    assert _container(worker)["args"][0] == "worker"
    assert "replicas" not in worker["spec"]  # KEDA owns it
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= Settings().run_timeout_s + 30  # a task in flight, then webhook deliveries
    job = one(objects, "Job", "shipyard-migrate")
    assert _container(job)["args"] == ["migrate"] and "migrate" in cli_commands()
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations["vault.hashicorp.com/agent-pre-populate-only"] == "true"  # no sidecar
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    assert config["SHIPYARD_MIGRATE_ON_START"] == "false"


def _scaled_object(objects: list[Object]) -> Object:
    scaled = one(objects, "ScaledObject", "shipyard-worker")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]["name"]
    assert one(objects, "Deployment", target)
    assert scaled["spec"]["minReplicaCount"] == 0  # scale to zero
    assert scaled["spec"]["maxReplicaCount"] >= 1
    for trigger in scaled["spec"]["triggers"]:
        auth = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        assert "secretTargetRef" not in auth["spec"]  # no Secret object behind it
    return scaled


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_keda_scales_workers_on_the_rabbitmq_task_queue(overlay: str) -> None:
    objects = rendered(overlay)
    (trigger,) = _scaled_object(objects)["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    prefix = inspect.signature(RabbitBroker.from_url).parameters["prefix"].default
    assert trigger["metadata"]["queueName"] == Names(prefix).work(TASK_QUEUE)
    # the management API counts unacknowledged messages: a busy last worker is not removed
    assert trigger["metadata"]["protocol"] == "http"
    assert trigger["metadata"]["mode"] == "QueueLength"
    auth = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    vault = auth["spec"]["hashiCorpVault"]
    assert vault["authentication"] == "kubernetes"
    # the same Vault as the pods' SHIPYARD_SECRETS_URL (plain HTTP only in dev)
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    scheme = "http" if config["SHIPYARD_SECRETS_URL"].startswith("vault+http://") else "https"
    host = config["SHIPYARD_SECRETS_URL"].split("://", 1)[1].split("/", 1)[0]
    assert vault["address"] == f"{scheme}://{host}"
    assert [s["parameter"] for s in vault["secrets"]] == ["host"]


def test_keda_scales_workers_on_the_sqs_task_queue() -> None:
    objects = rendered("production-sqs")
    (trigger,) = _scaled_object(objects)["spec"]["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    prefix = config["SHIPYARD_BROKER_URL"].removeprefix("sqs://")
    assert trigger["metadata"]["queueURL"].endswith(f"/{prefix}-{TASK_QUEUE}-p0")
    assert trigger["metadata"]["scaleOnInFlight"] == "true"
    auth = one(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"] == {"podIdentity": {"provider": "aws"}}
    assert not [o for o in objects if o["metadata"]["name"] == "shipyard-rabbitmq"]
    role = one(objects, "ServiceAccount", "shipyard")["metadata"]["annotations"]
    assert "eks.amazonaws.com/role-arn" in role


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sessions_stick_to_a_pod_by_consistent_hash_on_the_session_id(overlay: str) -> None:
    objects = rendered(overlay)
    sessions = one(objects, "Ingress", "shipyard-sessions")
    hash_by = sessions["metadata"]["annotations"]["nginx.ingress.kubernetes.io/upstream-hash-by"]
    (path,) = sessions["spec"]["rules"][0]["http"]["paths"]
    # the hashed variable is the path's named capture, as nginx sets it
    pattern = re.compile("^" + path["path"].replace("(?<", "(?P<"))
    match = pattern.match("/v1/sessions/ses_123/turns")
    assert match and match.group(hash_by.removeprefix("$")) == "ses_123"
    assert not pattern.match("/v1/sessions")  # creating and listing: round robin
    rest = one(objects, "Ingress", "shipyard-api")
    assert "nginx.ingress.kubernetes.io/upstream-hash-by" not in rest["metadata"]["annotations"]
    backends = {
        p["backend"]["service"]["name"]
        for ingress in (sessions, rest)
        for p in ingress["spec"]["rules"][0]["http"]["paths"]
    }
    assert backends == {"shipyard-api-sessions", "shipyard-api"}  # one hash setting each


def _egress_ports(policy: Object) -> set[int]:
    return {port["port"] for rule in policy["spec"]["egress"] for port in rule.get("ports", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_allow_only_the_backends(overlay: str) -> None:
    objects = rendered(overlay)
    deny = one(objects, "NetworkPolicy", "default-deny")
    assert deny["spec"]["podSelector"] == {} and set(deny["spec"]["policyTypes"]) == {
        "Ingress",
        "Egress",
    }
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    egress = one(objects, "NetworkPolicy", "shipyard-egress")
    # DNS, PostgreSQL, Redis, RabbitMQ, the vault, the OTLP collector
    assert _egress_ports(egress) == {53, 5432, 6379, 5672, 8200, 4318}
    for rule in egress["spec"]["egress"]:
        assert rule["to"], "an egress rule without a destination allows every destination"
    api_in = one(objects, "NetworkPolicy", "shipyard-api-ingress")
    (rule,) = api_in["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8000, "protocol": "TCP"}]
    source = rule["from"][0]["namespaceSelector"]["matchLabels"]
    assert source == {"kubernetes.io/metadata.name": "ingress-nginx"}


@pytest.mark.parametrize("overlay", ["production", "production-sqs"])
def test_production_reaches_hosted_model_apis_over_https_only(overlay: str) -> None:
    external = one(rendered(overlay), "NetworkPolicy", "shipyard-egress-external")
    (rule,) = external["spec"]["egress"]
    assert rule["ports"] == [{"port": 443, "protocol": "TCP"}]
    block = rule["to"][0]["ipBlock"]
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(
        block["except"]
    )
