"""The alert rules under `promtool test rules`, and the HAProxy and Prometheus configurations
(the cluster's, rendered, and docker-compose's) under the tools' own checks: Debian's haproxy and
promtool, offline. Tier e2e: Debian's haproxy and prometheus come from scripts/test-services.sh,
which only `make test` and `make test-e2e` run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e

PROMETHEUS = REPO / "deploy" / "prometheus"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/test-services.sh (make test and make test-e2e do)")
    return found


def run(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    assert "SUCCESS" in run(tool("promtool"), "check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert "SUCCESS" in run(tool("promtool"), "test", "rules", str(PROMETHEUS / "alerts_test.yml"))


def test_the_alert_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """A rule that fires too early must fail its test: the tests pin behaviour, not just syntax."""
    broken = (PROMETHEUS / "alerts.yml").read_text().replace("> 0.05", "> 0.01")
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copyfile(PROMETHEUS / "alerts_test.yml", tmp_path / "alerts_test.yml")
    command = [tool("promtool"), "test", "rules", str(tmp_path / "alerts_test.yml")]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "HybridErrorRateHigh" in result.stdout + result.stderr


def test_the_cluster_and_compose_configurations_are_valid(tmp_path: Path) -> None:
    from hybrid.cluster.plan import ALERT_RULES, ClusterConfig, build_plan, haproxy_config, prometheus_config

    config = ClusterConfig(replicas=3, port=18000, prometheus_port=19090, health_path="/ready")
    names = ["postgres", "chroma", "model-small", "model-large", "haproxy-stats"]
    names += [f"replica-{n}" for n in (1, 2, 3)]
    ports = {name: 20000 + n for n, name in enumerate(names)} | {"haproxy": 18000, "prometheus": 19090}
    plan = build_plan(tmp_path, config, ports)
    (tmp_path / "haproxy.cfg").write_text(haproxy_config(plan))
    (tmp_path / "prometheus.yml").write_text(prometheus_config(plan, ALERT_RULES))

    run(tool("haproxy"), "-c", "-q", "-f", str(tmp_path / "haproxy.cfg"))
    run(tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml"))
    cfg = (tmp_path / "haproxy.cfg").read_text()
    assert "option httpchk GET /ready" in cfg  # the check path is configuration
    assert cfg.count("check\n") == 3
    # docker-compose's HAProxy names hosts only Docker's resolver knows: checked for syntax alone.
    compose_cfg = (
        (REPO / "deploy" / "compose" / "haproxy.cfg")
        .read_text()
        .replace("resolvers docker init-addr none", "init-addr none")
    )
    (tmp_path / "compose-haproxy.cfg").write_text(
        compose_cfg.replace("    nameserver dns 127.0.0.11:53\n", "").replace("resolvers docker\n", "")
    )
    run(tool("haproxy"), "-c", "-q", "-f", str(tmp_path / "compose-haproxy.cfg"))
