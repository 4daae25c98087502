"""A local cluster started by one command: `hybrid cluster up|down|status`.

HAProxy in front of N `hybrid serve` replicas, PostgreSQL, a Chroma server, one OpenAI-compatible
llama.cpp server per model tier and Prometheus, all on 127.0.0.1 from Debian's and PyPI's
packages, kept running by a supervisor. `plan` says what runs, `supervisor` runs it, `control` is
what the command and `hybrid eval chaos` call. docs/cluster.md is the worked example.
"""

from __future__ import annotations

from hybrid.cluster.control import down, format_status, status, up
from hybrid.cluster.plan import ClusterConfig, Plan

__all__ = ["ClusterConfig", "Plan", "down", "format_status", "status", "up"]
