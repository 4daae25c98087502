"""A tenant's key in the web app, in Debian's Chromium: the app asks for a key when keys are
configured, and a tier's key sees only its own tenant's review queue."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect

from hybrid.policy import hash_key
from tests.test_browser import HYBRID, Pages, browser, pages, server_env, shoot, start_ui  # noqa: F401

pytestmark = pytest.mark.e2e

ACME, GLOBEX = "acme-browser-key", "globex-browser-key"
POLICY = f"""\
tiers:
  pro: {{models: [small]}}
tenants:
  acme: {{tier: pro, keys: ["{hash_key(ACME)}"]}}
  globex: {{tier: pro, keys: ["{hash_key(GLOBEX)}"]}}
rules:
  - name: reviewed-by-a-person
    when: {{keywords: [REVIEWME]}}
    action: human_review
"""
QUESTIONS = {
    ACME: "REVIEWME: when is the Acme invoice due?",
    GLOBEX: "REVIEWME: where is the Globex shipment?",
}


def test_a_tenants_key_sees_only_its_own_review_queue(tmp_path: Path, pages: Pages) -> None:  # noqa: F811
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    data = tmp_path / "data"
    settings = {"HYBRID_POLICY_FILE": str(policy), "HYBRID_RETRIEVAL": "never"}
    for key, question in QUESTIONS.items():  # one case waiting for each tenant
        asked = subprocess.run(
            [HYBRID, "ask", "--key", key, question, "--json"],
            env=server_env(data, **settings),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert asked.returncode == 0, asked.stderr
        assert json.loads(asked.stdout)["status"] == "pending_review"

    with start_ui(data, **settings) as url:
        page = pages.open(f"{url}/review")
        key_box = page.get_by_label("API key")
        key_box.fill("not-a-key")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("invalid API key")).to_be_visible()
        shoot(page, "policy-sign-in-refused")

        key_box.fill(ACME)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as tenant acme (pro tier)")).to_be_visible()
        expect(page.get_by_text("1 case(s) waiting, oldest first.")).to_be_visible()
        expect(page.get_by_text(QUESTIONS[ACME])).to_be_visible()
        expect(page.get_by_text(QUESTIONS[GLOBEX])).to_have_count(0)
        shoot(page, "policy-review-queue-of-one-tenant", height=1100)
