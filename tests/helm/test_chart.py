"""The Helm chart: lint, render, validate (built-in and custom kinds) and check policy.

helm comes from scripts/install-helm.sh (a pinned PyPI wheel), so this runs offline.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

# (helpers live in conftest.py as fixtures; it is not imported, since several conftest
# modules share that name)
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "taskbroker"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
CRD_API_VERSIONS = ("monitoring.coreos.com/v1", "keda.sh/v1alpha1")
Rendered = Any  # conftest.Rendered: returncode, stdout, stderr, docs, kind(), one()
RenderFn = Any  # the `render` fixture
KUBERNETES_VERSION = "1.30.0"
CUSTOM_KINDS = {
    "ServiceMonitor": "servicemonitor.json",
    "PrometheusRule": "prometheusrule.json",
    "ScaledObject": "scaledobject.json",
    "TriggerAuthentication": "triggerauthentication.json",
}
SCHEMAS = Path(__file__).parent / "schemas"
DASHBOARD = CHART / "dashboards" / "taskbroker.json"
ALERTS = CHART / "files" / "alerts.yaml"

# The metrics the code exports (the product contract); histograms add _bucket/_sum/_count.
EXPORTED_METRICS = {
    "taskbroker_operations_total",
    "taskbroker_tasks_total",
    "taskbroker_active_tasks",
    "taskbroker_rate_limit_denials_total",
    "taskbroker_worker_up",
    "taskbroker_waited_tasks",
    "taskbroker_wait_reads_total",
} | {
    f"{h}{suffix}"
    for h in (
        "taskbroker_operation_duration_seconds",
        "taskbroker_task_runtime_seconds",
        "taskbroker_task_queue_wait_seconds",
    )
    for suffix in ("_bucket", "_sum", "_count")
}
# Labels those metrics carry, plus the ones Prometheus adds when scraping.
KNOWN_LABELS = {"operation", "task_type", "outcome", "state", "le"} | {
    "namespace",
    "pod",
    "job",
    "instance",
    "service",
    "container",
}
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|DATABASE_URL|REDIS_URL|API_KEY", re.I)

DEV_SECRETS = (
    "devSecrets.enabled=true",
    "devSecrets.databaseUrl=postgresql+psycopg://u:p@db:5432/tb",
    "devSecrets.tokens=alice: secret",
    "devSecrets.jwtSecret=hs256-secret",
    "auth.jwt.enabled=true",
)
# (id, values files, --set values) rendered for the generic checks
SCENARIOS = {
    "default": ((), ()),
    "production": ((PRODUCTION_VALUES,), ()),
    "dev-secrets": ((), DEV_SECRETS),
    "worker-hpa-netpol": (
        (),
        (
            "worker.autoscaling.enabled=true",
            "server.autoscaling.enabled=true",
            "networkPolicy.enabled=true",
            "networkPolicy.restrictEgress=true",
            "ingress.enabled=true",
            "ingress.hosts[0].host=tb.example.com",
        ),
    ),
}


def scenario(render: RenderFn, name: str, crds: bool = True) -> Rendered:
    files, sets = SCENARIOS[name]
    return render(files, sets, CRD_API_VERSIONS if crds else ())


def containers(doc: dict) -> list[dict]:
    spec = doc["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def kubernetes_validate_bin() -> str:
    beside = Path(sys.executable).parent / "kubernetes-validate"
    found = str(beside) if beside.exists() else shutil.which("kubernetes-validate")
    assert found, "kubernetes-validate is not installed (pip install kubernetes-validate)"
    return found


def workloads(r: Rendered) -> list[dict]:
    return [d for d in r.docs if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]


# ---------------------------------------------------------------- lint and validation


@pytest.mark.parametrize("values", [None, PRODUCTION_VALUES], ids=["default", "production"])
def test_helm_lint_strict(helm_bin: str, values: Path | None) -> None:
    cmd = [helm_bin, "lint", "--strict", str(CHART)]
    if values:
        cmd += ["-f", str(values)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_install_helm_is_idempotent(helm_bin: str) -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-helm.sh")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == helm_bin
    assert "already installed" in proc.stderr
    version = subprocess.run([helm_bin, "version", "--short"], capture_output=True, text=True)
    assert version.stdout.startswith("v3.19."), version.stdout


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_builtin_kinds_pass_kubernetes_validate_strict(
    render: RenderFn, name: str, tmp_path: Path
) -> None:
    docs = [d for d in scenario(render, name).docs if d["kind"] not in CUSTOM_KINDS]
    assert docs
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    proc = subprocess.run(
        [
            kubernetes_validate_bin(),
            "--strict",
            "--kubernetes-version",
            KUBERNETES_VERSION,
            "--quiet",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout + proc.stderr
    assert "WARN" not in proc.stdout + proc.stderr  # e.g. a kind without a schema


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_custom_kinds_match_kept_schemas(render: RenderFn, name: str) -> None:
    for doc in scenario(render, name).docs:
        if doc["kind"] in CUSTOM_KINDS:
            schema = json.loads((SCHEMAS / CUSTOM_KINDS[doc["kind"]]).read_text())
            jsonschema.Draft202012Validator.check_schema(schema)
            jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


def test_production_renders_every_custom_kind(render: RenderFn) -> None:
    kinds = {d["kind"] for d in scenario(render, "production").docs}
    assert set(CUSTOM_KINDS) <= kinds


def test_kept_schemas_reject_mistakes(render: RenderFn) -> None:
    """The hand-kept schemas are not vacuous: typical mistakes fail them."""
    r = scenario(render, "production")
    so = json.loads(json.dumps(r.kind("ScaledObject")[0]))
    so["spec"]["triggers"][0]["metadata"]["listLength"] = 5  # KEDA wants strings
    sm = json.loads(json.dumps(r.kind("ServiceMonitor")[0]))
    sm["spec"]["endpoints"][0]["intervall"] = "30s"
    pr = json.loads(json.dumps(r.kind("PrometheusRule")[0]))
    pr["spec"]["groups"][0]["rules"][0]["fore"] = "5m"
    for doc in (so, sm, pr):
        schema = json.loads((SCHEMAS / CUSTOM_KINDS[doc["kind"]]).read_text())
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


def test_crd_objects_only_when_the_cluster_serves_them(render: RenderFn) -> None:
    with_crds = {d["kind"] for d in scenario(render, "production", crds=True).docs}
    without = {d["kind"] for d in scenario(render, "production", crds=False).docs}
    assert {"ServiceMonitor", "PrometheusRule", "ScaledObject"} <= with_crds
    assert not (set(CUSTOM_KINDS) & without)
    # Without KEDA the worker Deployments keep a fixed replica count.
    for dep in scenario(render, "production", crds=False).kind("Deployment"):
        assert "replicas" in dep["spec"] or dep["metadata"]["name"].endswith("-server")


def test_schema_rejects_typos(render: RenderFn) -> None:
    for bad in ("replicaCount=3", "worker.concurency=4", "server.autoscaling.enable=true"):
        r = render((), (bad,))
        assert r.returncode != 0, bad
        assert "additional properties" in r.stderr, r.stderr
    r = render((), ("externalRedis.url=redis://user:pw@redis:6379/0", "redis.enabled=false"))
    assert r.returncode != 0


# ---------------------------------------------------------------- rendered objects


def test_beat_is_a_singleton(render: RenderFn) -> None:
    for name in SCENARIOS:
        beat = scenario(render, name).one("Deployment", "-beat")
        assert beat["spec"]["replicas"] == 1
        assert beat["spec"]["strategy"] == {"type": "Recreate"}
        assert not [
            h
            for h in scenario(render, name).kind("HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"]["name"].endswith("-beat")
        ]


def test_worker_grace_period_exceeds_task_time_limit(render: RenderFn) -> None:
    seen = 0
    for name in SCENARIOS:
        for dep in scenario(render, name).kind("Deployment"):
            if dep["metadata"]["labels"]["app.kubernetes.io/component"] != "worker":
                continue
            limit = int(dep["metadata"]["annotations"]["taskbroker.io/max-task-time-limit-seconds"])
            grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            assert grace > limit >= 600, dep["metadata"]["name"]
            seen += 1
    assert seen >= 5  # production has two worker groups


@pytest.mark.parametrize(
    "sets",
    [
        ("worker.terminationGracePeriodSeconds=600",),
        ("worker.maxTaskTimeLimitSeconds=900",),
        ("worker.groups.heavy.maxTaskTimeLimitSeconds=3600",),
    ],
)
def test_grace_period_not_above_time_limit_fails(render: RenderFn, sets: tuple[str]) -> None:
    r = render((), sets)
    assert r.returncode != 0
    assert "must exceed maxTaskTimeLimitSeconds" in r.stderr


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_container_is_hardened_with_limits(render: RenderFn, name: str) -> None:
    r = scenario(render, name)
    assert workloads(r)
    for doc in workloads(r):
        pod = doc["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext", {})
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"
        for c in containers(doc):
            where = f"{doc['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"].get(part, {})), (where, part)
            # something writable for /tmp, since the root filesystem is read-only
            assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])}, where
        assert pod.get("automountServiceAccountToken") is False


def test_taskbroker_pods_run_as_uid_10001(render: RenderFn) -> None:
    for doc in workloads(scenario(render, "production")):
        assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001


@pytest.mark.parametrize("name", ["default", "production", "worker-hpa-netpol"])
def test_no_secret_values_inlined_by_default(render: RenderFn, name: str) -> None:
    r = scenario(render, name)
    assert not r.kind("Secret")
    for doc in workloads(r):
        for c in containers(doc):
            for env in c.get("env", []):
                if SECRET_NAME.search(env["name"]) and "value" in env:
                    # only *_FILE variables may be literal: they hold a mounted path
                    assert env["name"].endswith("_FILE"), env
                    assert env["value"].startswith("/etc/taskbroker/"), env
    for cm in r.kind("ConfigMap"):
        for key, value in cm.get("data", {}).items():
            if key.endswith(".json"):
                continue
            assert not SECRET_NAME.search(key) or key in {
                "TASKBROKER_REDIS_URL"  # built-in Redis: a host name, no credentials
            }, key
            assert "@" not in value, (key, "credentials in a ConfigMap")


def test_secret_references_point_at_existing_secrets(render: RenderFn) -> None:
    r = scenario(render, "production")
    server = r.one("Deployment", "-server")
    env = {e["name"]: e for e in containers(server)[0]["env"]}
    assert env["TASKBROKER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == (
        "taskbroker-database"
    )
    assert env["TASKBROKER_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"] == "taskbroker-redis"
    assert env["TASKBROKER_JWT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "taskbroker-jwt"
    assert env["TASKBROKER_TOKEN_FILE"]["value"] == "/etc/taskbroker/tokens/tokens"
    assert env["TASKBROKER_CONSOLE_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "taskbroker-console", "key": "console-secret"}
    volumes = {v["name"]: v for v in server["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tokens"]["secret"]["secretName"] == "taskbroker-tokens"
    # workers and beat get broker and database, but no client auth material
    for suffix in ("-worker-default", "-beat"):
        names = {e["name"] for e in containers(r.one("Deployment", suffix))[0]["env"]}
        assert {"TASKBROKER_DATABASE_URL", "TASKBROKER_REDIS_URL"} <= names
        assert not {"TASKBROKER_JWT_SECRET", "TASKBROKER_TOKEN_FILE",
                    "TASKBROKER_CONSOLE_SECRET"} & names


def test_console_settings(render: RenderFn) -> None:
    config = scenario(render, "production").one("ConfigMap", "-config")["data"]
    assert config["TASKBROKER_CONSOLE"] == "true"
    assert config["TASKBROKER_TRACE_URL_TEMPLATE"] == (
        "https://grafana.example.com/explore?traceId={trace_id}")
    off = render((), ("console.enabled=false",))
    assert off.returncode == 0 and "TASKBROKER_CONSOLE: \"false\"" in off.stdout
    bad = render((), ("console.traceUrlTemplate=javascript:alert(1)",))
    assert bad.returncode != 0 and "traceUrlTemplate" in bad.stderr
    assert "TASKBROKER_CONSOLE_SECRET" not in render((), ()).stdout  # the ledger keeps one


def test_dev_secrets_render_only_when_enabled(render: RenderFn) -> None:
    r = scenario(render, "dev-secrets")
    (secret,) = r.kind("Secret")
    assert set(secret["stringData"]) == {"database-url", "tokens", "jwt-secret"}
    server = r.one("Deployment", "-server")
    env = {e["name"]: e for e in containers(server)[0]["env"]}
    assert (
        env["TASKBROKER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
        == (secret["metadata"]["name"])
    )
    assert "checksum/dev-secret" in server["spec"]["template"]["metadata"]["annotations"]


def test_keda_and_worker_hpa_are_mutually_exclusive(render: RenderFn) -> None:
    for crds in (CRD_API_VERSIONS, ()):
        r = render((), ("worker.autoscaling.enabled=true", "worker.keda.enabled=true"), crds)
        assert r.returncode != 0
        assert "mutually exclusive" in r.stderr, r.stderr
    # per group, too
    r = render(
        (PRODUCTION_VALUES,), ("worker.groups.heavy.autoscaling.enabled=true",), CRD_API_VERSIONS
    )
    assert r.returncode != 0
    assert 'worker group "heavy"' in r.stderr and "mutually exclusive" in r.stderr


def test_keda_scales_workers_on_their_celery_queues(render: RenderFn) -> None:
    r = scenario(render, "production")
    objects = {so["spec"]["scaleTargetRef"]["name"]: so for so in r.kind("ScaledObject")}
    workers = [d for d in r.kind("Deployment") if "-worker-" in d["metadata"]["name"]]
    assert {d["metadata"]["name"] for d in workers} == set(objects)
    for dep in workers:
        so = objects[dep["metadata"]["name"]]
        queues = dep["metadata"]["annotations"]["taskbroker.io/queues"].split(",")
        args = containers(dep)[0]["args"]
        assert args[args.index("--queues") + 1] == ",".join(queues)
        assert [t["metadata"]["listName"] for t in so["spec"]["triggers"]] == queues
        assert {t["type"] for t in so["spec"]["triggers"]} == {"redis"}
        assert "replicas" not in dep["spec"]  # KEDA owns the replica count
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in r.kind("HorizontalPodAutoscaler")}
    assert not hpa_targets & set(objects)


def test_server_probes_and_ports(render: RenderFn) -> None:
    r = scenario(render, "default")
    server = containers(r.one("Deployment", "-server"))[0]
    assert server["args"][:3] == ["serve", "--transport", "http"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    worker = containers(r.one("Deployment", "-worker-default"))[0]
    assert worker["args"][0] == "worker"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"  # cheap, no broker
    assert worker["readinessProbe"]["exec"]["command"] == ["taskbroker", "ping", "--local"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["PROMETHEUS_MULTIPROC_DIR"] == "/run/prometheus-multiproc"
    assert env["TASKBROKER_WORKER_METRICS_PORT"] == "9808"


def test_config_change_rolls_pods(render: RenderFn) -> None:
    def checksums(r: Rendered) -> set[str]:
        return {
            d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for d in r.kind("Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] != "redis"
        }

    before = checksums(render())
    after = checksums(render((), ("config.logLevel=DEBUG",)))
    assert len(before) == 1 and len(after) == 1  # server, workers, beat share it
    assert before != after
    assert checksums(render((), ("server.replicas=5",))) == before  # not config


def test_dashboard_configmap(render: RenderFn) -> None:
    r = scenario(render, "default")
    (cm,) = [c for c in r.kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["taskbroker.json"]) == json.loads(DASHBOARD.read_text())


def test_prometheusrule_is_the_alert_file(render: RenderFn) -> None:
    (rule,) = scenario(render, "production").kind("PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_pdbs_and_network_policies(render: RenderFn) -> None:
    r = scenario(render, "production")
    pdbs = {p["metadata"]["name"] for p in r.kind("PodDisruptionBudget")}
    assert pdbs == {"taskbroker-server", "taskbroker-worker-default", "taskbroker-worker-heavy"}
    assert {n["metadata"]["name"] for n in r.kind("NetworkPolicy")} == {
        "taskbroker-server",
        "taskbroker-worker",
        "taskbroker-beat",
    }
    server = r.one("Deployment", "-server")
    anti = server["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in anti
    assert server["spec"]["template"]["spec"]["topologySpreadConstraints"]
    hard = render((), ("server.podAntiAffinity=hard",)).one("Deployment", "-server")
    assert (
        "requiredDuringSchedulingIgnoredDuringExecution"
        in (hard["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"])
    )
    assert not render().kind("NetworkPolicy")


# ---------------------------------------------------------------- dashboard and alerts

PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
}


def promql_metrics(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) in a PromQL expression (Grafana variables allowed)."""
    labels: set[str] = set()
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    for matchers in re.findall(r"\{([^}]*)\}", s):
        labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    for grouping in re.findall(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", s
    ):
        labels |= {x.strip() for x in grouping.split(",") if x.strip()}
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", s):
        if s[m.end() :].lstrip().startswith("(") or m.group(0) in PROMQL_KEYWORDS:
            continue
        names.add(m.group(0))
    return names, labels


def dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels: list[dict]) -> None:
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dash["panels"])
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if var.get("type") == "query" and q:
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q.strip())
            assert m, q
            exprs.append(m.group(1))
    return exprs


def alert_queries() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for g in doc["groups"] for rule in g["rules"]]


def test_promql_extraction_is_not_vacuous() -> None:
    names, labels = promql_metrics(
        'sum by (task_type, le) (rate(foo_bucket{state="x", a=~"$v"}[$__rate_interval])) '
        "/ on (task_type) group_left bar > 0.5 unless absent(baz)"
    )
    assert names == {"foo_bucket", "bar", "baz"}
    assert labels == {"task_type", "le", "state", "a"}


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_queries_use_only_exported_metrics(source: str) -> None:
    exprs = dashboard_queries() if source == "dashboard" else alert_queries()
    assert len(exprs) >= 7
    used: set[str] = set()
    for expr in exprs:
        names, labels = promql_metrics(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= EXPORTED_METRICS, (sorted(names - EXPORTED_METRICS), expr)
        assert labels <= KNOWN_LABELS, (sorted(labels - KNOWN_LABELS), expr)
        used |= names
    if source == "dashboard":
        # every panel family the brief asks for is there
        assert {
            "taskbroker_operations_total",
            "taskbroker_operation_duration_seconds_bucket",
            "taskbroker_tasks_total",
            "taskbroker_task_runtime_seconds_bucket",
            "taskbroker_task_queue_wait_seconds_bucket",
            "taskbroker_active_tasks",
            "taskbroker_rate_limit_denials_total",
            "taskbroker_worker_up",
        } <= used


def test_alert_rules_cover_the_failure_modes() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    rules = {r["alert"]: r for g in doc["groups"] for r in g["rules"]}
    assert {
        "TaskbrokerHighTaskFailureRate",
        "TaskbrokerQueueWaitHigh",
        "TaskbrokerTasksStuck",
        "TaskbrokerRateLimitSpike",
        "TaskbrokerNoWorker",
    } <= set(rules)
    assert "absent(taskbroker_worker_up)" in rules["TaskbrokerNoWorker"]["expr"]
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not on PATH (Debian package: prometheus)"
)
def test_promtool_checks_the_alert_rules() -> None:
    proc = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- container image


def test_dockerfile_passes_hadolint(hadolint_bin: str) -> None:
    proc = subprocess.run(
        [hadolint_bin, "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_shape() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    assert len(stages) >= 2, "multi-stage build"
    final = text[text.rindex("\nFROM ") :]
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final)
    assert re.search(r"^USER 10001", final, re.M)
    assert 'ENTRYPOINT ["taskbroker"]' in final
    assert 'CMD ["serve", "--transport", "http", "--host", "0.0.0.0"]' in final
    assert "python:3.11" in text


def test_builtin_redis_keeps_its_queue_across_restarts(render: RenderFn) -> None:
    default = render()
    redis = default.one("Deployment", "-redis")
    container = redis["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    claim = default.one("PersistentVolumeClaim", "-redis")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    volumes = {v["name"]: v for v in redis["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    ephemeral = render(set_values=("redis.persistence.enabled=false",))
    assert not ephemeral.kind("PersistentVolumeClaim")
    volumes = {v["name"]: v for v in
               ephemeral.one("Deployment", "-redis")["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["data"]


def test_migrations_run_as_a_pre_install_and_pre_upgrade_job(render: RenderFn) -> None:
    default = render()
    job = default.one("Job", "-migrate")
    hooks = job["metadata"]["annotations"]
    assert hooks["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["db", "upgrade"]
    env = {e["name"]: e for e in container["env"]}
    assert env["TASKBROKER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]
    config = default.one("ConfigMap", "-config")["data"]
    assert config["TASKBROKER_AUTO_MIGRATE"] == "false", "pods leave migrations to the Job"
    without = render(set_values=("migrations.job=false",))
    assert not without.kind("Job")
    assert without.one("ConfigMap", "-config")["data"]["TASKBROKER_AUTO_MIGRATE"] == "true"


def test_dev_secret_exists_before_the_migration_hook(render: RenderFn) -> None:
    dev = render(set_values=("devSecrets.enabled=true",
                             "devSecrets.databaseUrl=postgresql://u@db/taskbroker"))
    secret = dev.one("Secret", "-dev")
    assert secret["metadata"]["annotations"]["helm.sh/hook-weight"] == "-5"
    job = dev.one("Job", "-migrate")
    assert int(job["metadata"]["annotations"]["helm.sh/hook-weight"]) > -5
