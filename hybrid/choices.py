"""What a person may choose per run (model profile, route, retrieval), so a UI offers valid options."""

from __future__ import annotations

from typing import get_args

from pydantic import BaseModel, Field

from hybrid.settings import RetrievalMode, Route, resolve_settings


class RunChoices(BaseModel):
    """Valid per-run overrides and the values in force when none is given."""

    profiles: dict[str, dict[str, list[str]]] = Field(description="Profile name → tier → model specs.")
    profile: str = Field(description="The configured profile.")
    routes: list[str]
    force_route: str | None = Field(description="The configured forced route, if any.")
    retrieval_modes: list[str]
    retrieval: str


def run_choices() -> RunChoices:
    """The profiles (built-in and configured), routes and retrieval modes, with current defaults."""
    settings = resolve_settings()
    return RunChoices(
        profiles={
            name: profile.model_dump(include={"small", "large"})
            for name, profile in settings.all_profiles.items()
        },
        profile=settings.profile,
        routes=list(get_args(Route)),
        force_route=settings.force_route,
        retrieval_modes=list(get_args(RetrievalMode)),
        retrieval=settings.retrieval,
    )
