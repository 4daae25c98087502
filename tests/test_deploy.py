"""The deployment files in deploy/ and docker-compose.yml, checked offline: Kubernetes manifests
against a current Kubernetes release's schema, the Grafana dashboard against the metrics the
server really exports, and every HYBRID_* variable against the settings that exist."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.unit

KUBERNETES = REPO / "deploy" / "kubernetes"
DASHBOARD = REPO / "deploy" / "grafana" / "hybrid-dashboard.json"
KUBERNETES_VERSION = "1.37.0"  # the newest release kubernetes-validate carries schemas for


def manifests() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(KUBERNETES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == kind]


def test_every_manifest_is_valid_against_the_kubernetes_schema_strictly() -> None:
    import kubernetes_validate

    assert kubernetes_validate.latest_version() == KUBERNETES_VERSION
    for doc in manifests():
        # strict: a misspelt or misplaced field is an error, not silently dropped by the API server
        assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == "1.37"

    broken = by_kind("Deployment")[0]
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/health"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_manifests_hold_together() -> None:
    kinds = {doc["kind"] for doc in manifests()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret"} <= kinds
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in manifests()}
    api = next(d for d in by_kind("Deployment") if d["metadata"]["name"] == "hybrid-api")
    pod = api["spec"]["template"]
    container = pod["spec"]["containers"][0]

    for source in container["envFrom"]:  # what the pods read exists
        if "configMapRef" in source:
            assert ("ConfigMap", source["configMapRef"]["name"]) in names
        else:
            assert ("Secret", source["secretRef"]["name"]) in names
    service = next(d for d in by_kind("Service") if d["metadata"]["name"] == "hybrid-api")
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    hpa = by_kind("HorizontalPodAutoscaler")[0]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "hybrid-api"
    # PostgreSQL and Chroma are external: names the settings point at.
    external = {d["metadata"]["name"] for d in by_kind("Service") if d["spec"].get("type") == "ExternalName"}
    assert external == {"postgres", "chroma"}
    from hybrid.cluster.plan import ClusterConfig

    assert container["readinessProbe"]["httpGet"]["path"] == ClusterConfig().health_path


def test_every_setting_in_the_manifests_and_compose_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    from hybrid.settings import Settings

    config = by_kind("ConfigMap")[0]["data"]
    secret = by_kind("Secret")[0]["stringData"]
    for name, value in {**config, **secret}.items():
        monkeypatch.setenv(name, value)
    settings = Settings()  # every HYBRID_* is a real setting with a valid value
    assert settings.openai_url_for("gemma-3-270m") == "http://model-large:8000/v1"
    assert settings.chroma_url == "http://chroma:8000"

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        environment = service.get("environment") or {}
        unknown = {k for k in environment if k.startswith("HYBRID_")} - {
            f"HYBRID_{name.upper()}" for name in Settings.model_fields
        }
        assert not unknown


_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "irate", "increase", "delta", "histogram_quantile",
    "abs", "vector", "scalar", "clamp_min", "clamp_max", "topk", "bottomk", "and", "or", "unless",
    "bool", "offset", "time",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (strings, label matchers, ranges and grouping
    clauses removed; what is left that is not a function or keyword is a metric)."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    return {t for t in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr) if t not in _PROMQL_WORDS}


def test_the_metric_name_reader() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, node) (rate(hybrid_node_seconds_bucket{route="x"}[5m])))'
    assert metric_names(expr) == {"hybrid_node_seconds_bucket"}
    assert metric_names("sum(increase(a_total[1h])) * 24 > max(b)") == {"a_total", "b"}


def exported_names() -> set[str]:
    """Every sample name the server's /metrics serves: families scraped from the real app, and
    those it reports only once there is a value (the review backlog, the budget)."""
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from hybrid import observability
    from hybrid.server import create_app

    text = TestClient(create_app()).get("/metrics").text  # no lifespan: nothing to prepare
    families = [(f.name, f.type) for f in text_string_to_metric_families(text)]
    families += [(f.name, f.type) for f in observability.STORES.describe()]
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("", "_info"),
    }
    return {name + suffix for name, kind in families for suffix in suffixes.get(kind, ("",))}


def test_every_dashboard_query_reads_metrics_the_server_exports(fakes: Any) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names()
    assert {
        "hybrid_requests_total",
        "hybrid_node_seconds_bucket",
        "process_resident_memory_bytes",
    } <= exported

    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    expressions = [t["expr"] for p in panels for t in p["targets"]]
    assert len(expressions) >= 20
    for expr in expressions:
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, f"{sorted(names - exported)} in {expr}"
    for panel in panels:  # every panel uses the dashboard's data source variable
        assert panel["datasource"]["uid"] == "${datasource}"


def test_alert_rules_read_metrics_the_server_exports(fakes: Any) -> None:
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    exported = exported_names()
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert {a["alert"] for a in alerts} >= {
        "HybridErrorRateHigh",
        "HybridReviewBacklogGrowing",
        "HybridBudgetBurnFast",
        "HybridLargeModelShareOutOfBand",
    }
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        names = metric_names(rule["expr"])
        assert names <= exported | recorded, f"{sorted(names - exported - recorded)} in {rule['expr']}"


def test_compose_describes_the_cluster_layout() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"haproxy", "postgres", "chroma", "model-small", "model-large", "prometheus"} <= set(services)
    replicas = [
        name for name, s in services.items() if (s.get("command") or [None])[:2] == ["hybrid", "serve"]
    ]
    assert len(replicas) >= 2
    haproxy_cfg = (REPO / "deploy" / "compose" / "haproxy.cfg").read_text()
    for name in replicas:  # HAProxy balances every replica, checking the same path as the cluster
        assert f"server {name} {name}:8000 check" in haproxy_cfg
    assert "option httpchk GET /health" in haproxy_cfg
    prometheus = yaml.safe_load((REPO / "deploy" / "compose" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert {f"{name}:8000" for name in replicas} <= targets
