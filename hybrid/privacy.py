"""Nothing leaves the machine unasked: every dependency's telemetry is switched off here, in one place.

`disable_telemetry()` is the first thing every entry point does (the `hybrid` command, the server,
the web app's launcher, and the module `langgraph dev` imports our graphs from). It only sets
environment variables the user has not set, so an explicit opt-in (say `LANGSMITH_TRACING=true`
with your own LangSmith endpoint) still wins, and child processes (Streamlit, `langgraph dev`, the
cluster's parts) inherit the same choices. It must run before the libraries are imported: ONNX
Runtime reads its switch when its telemetry starts, the Hugging Face hub when it is imported.
"""

from __future__ import annotations

import os

# What each dependency would otherwise do, found by running our commands under
# `strace -f -e trace=connect,sendto` (tests/test_privacy_e2e.py keeps it that way).
TELEMETRY_OFF: dict[str, str] = {
    # ONNX Runtime (MiniLM): DNS queries for mobile.events.data.microsoft.com every 6-20 s.
    "ORT_DISABLE_TELEMETRY": "1",
    # Chroma's product telemetry (posthog); our clients also pass `anonymized_telemetry=False`.
    "ANONYMIZED_TELEMETRY": "False",
    # Streamlit: the page reports usage to Streamlit's servers from the browser.
    "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    # Hugging Face hub: no model look-ups by name and no usage pings (weights come from packages).
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    # langgraph-cli: a usage report per command; langgraph-api: a version check against PyPI.
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    # The cross-tool convention (consoledonottrack.com), for anything else that honours it.
    "DO_NOT_TRACK": "1",
}


# LangSmith: LangChain traces every run to api.smith.langchain.com when tracing is on. Its switch
# has four spellings, read in an order (the `_V2` ones first): a user who set any one of them has
# chosen. We set `LANGSMITH_TRACING` alone, so that either `_V2` spelling set later still wins.
TRACING_VARIABLES = ("LANGSMITH_TRACING_V2", "LANGCHAIN_TRACING_V2", "LANGSMITH_TRACING", "LANGCHAIN_TRACING")
TRACING_OFF = {"LANGSMITH_TRACING": "false"}


def disable_telemetry() -> dict[str, str]:
    """Switch off every dependency's telemetry for this process and its children; returns what
    was set (variables the user set are left as they are)."""
    wanted = dict(TELEMETRY_OFF)
    if not any(name in os.environ for name in TRACING_VARIABLES):
        wanted |= TRACING_OFF
    applied = {name: value for name, value in wanted.items() if name not in os.environ}
    os.environ.update(applied)
    return applied
