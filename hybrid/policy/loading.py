"""Reading a policy file: YAML whose line numbers are kept, so every problem is reported with its
line and reason, and a file that is reloaded when it changes.

PyYAML's compose step gives the node tree with each node's position; pydantic checks the values
and `cross_check` the references, and each error's path is looked up in the tree. A policy in
force is replaced only by a file that validates: a broken edit is refused, reported (log, metric,
`status`) and the last good policy stays.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hybrid import observability
from hybrid.errors import InvalidPolicy
from hybrid.policy.schema import Budget, Policy, Tier, cross_check, dotted
from hybrid.settings import Settings


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a policy file, where it is (1-based line and column) and why."""

    line: int
    column: int
    where: str
    message: str

    def __str__(self) -> str:
        place = f"line {self.line}, column {self.column}" if self.line else "file"
        return f"{place}: {self.where + ': ' if self.where else ''}{self.message}"


@dataclass
class LoadedPolicy:
    """A validated policy as loaded from its file, with what is looked up on every request."""

    policy: Policy
    path: Path
    version: str
    """The first 12 hex digits of the file's SHA-256."""
    loaded_at: datetime
    keys: dict[str, tuple[str | None, bool]] = field(default_factory=dict)
    """Key hash → (tenant, admin)."""
    caches: dict[str, Any] = field(default_factory=dict)
    """Per-policy values computed on first use (the semantic examples' embeddings)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for key in self.policy.admins:
            self.keys[key] = (None, True)
        for name, tenant in self.policy.tenants.items():
            for key in tenant.keys:
                self.keys[key] = (name, False)

    @property
    def has_keys(self) -> bool:
        return bool(self.keys)

    def tier(self, name: str | None) -> Tier | None:
        return self.policy.tiers.get(name) if name else None

    def tier_of(self, tenant: str | None) -> str | None:
        """A tenant's tier; the default tier for requests without a tenant."""
        if tenant:
            found = self.policy.tenants.get(tenant)
            return found.tier if found else None
        return self.policy.default_tier

    def budget_of(self, tenant: str | None) -> Budget | None:
        """The budget that applies to a tenant (its own, else its tier's)."""
        own = self.policy.tenants[tenant].budget if tenant and tenant in self.policy.tenants else None
        tier = self.tier(self.tier_of(tenant))
        return own or (tier.budget if tier else None)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _node_at(root: yaml.Node, path: tuple[Any, ...]) -> yaml.Node:
    """The deepest node along `path`; parts not in the tree (a missing field, pydantic's union
    member names) are skipped, so the report points at the closest thing the file does have."""
    node = root
    for part in path:
        if isinstance(node, yaml.MappingNode):
            found = next((value for key, value in node.value if key.value == str(part)), None)
            if found is not None:
                node = found
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
    return node


def _duplicate_keys(node: yaml.Node, path: str = "") -> list[Problem]:
    """PyYAML keeps the last of two equal keys silently; a policy must not hide a line that way."""
    problems = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(key.value)
            line, column = _mark(key)
            if name in first:
                where = f"{path}.{name}" if path else name
                problems.append(Problem(line, column, where, f"given twice (first at line {first[name]})"))
            first.setdefault(name, line)
            problems += _duplicate_keys(value, f"{path}.{name}" if path else name)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, f"{path}[{index}]")
    return problems


def parse(text: str) -> tuple[Policy | None, list[Problem]]:
    """A policy from YAML text, or every problem found in it (with its line)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        return None, [Problem(line, column, "", f"not valid YAML: {exc.problem or exc.context}")]
    except yaml.YAMLError as exc:
        return None, [Problem(0, 0, "", f"not valid YAML: {exc}")]
    if root is None:
        return None, [Problem(1, 1, "", "the file is empty: a policy needs at least one section")]
    if not isinstance(root, yaml.MappingNode):
        return None, [
            Problem(*_mark(root), "", "a policy is a mapping of sections (tiers, tenants, rules...)")
        ]
    problems = _duplicate_keys(root)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            path = tuple(error["loc"])
            node = _node_at(root, path)
            message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(Problem(*_mark(node), dotted(path), message.removeprefix("Value error, ")))
        return None, sorted(problems, key=lambda p: (p.line, p.column))
    for path, message in cross_check(policy):
        problems.append(Problem(*_mark(_node_at(root, path)), dotted(path), message))
    if problems:
        return None, sorted(problems, key=lambda p: (p.line, p.column))
    return policy, []


def check_file(path: Path) -> tuple[Policy | None, list[Problem], str]:
    """Validate a policy file: the policy, the problems, and the file's SHA-256."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Problem(0, 0, "", f"cannot read {path}: {exc.strerror or exc}")], ""
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem(0, 0, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")], digest
    policy, problems = parse(text)
    return policy, problems, digest


def load(path: Path) -> LoadedPolicy:
    """Read and validate a policy file; `InvalidPolicy` lists every problem with its line."""
    policy, problems, digest = check_file(path)
    if policy is None:
        raise InvalidPolicy(str(path), [str(p) for p in problems])
    return LoadedPolicy(policy, path, digest[:12], datetime.now(UTC))


@dataclass
class _Watched:
    """One policy file: the policy in force, and what the last look at the file found."""

    path: Path
    loaded: LoadedPolicy | None = None
    signature: tuple[int, int, int] | None = None
    digest: str = ""
    problems: list[str] = field(default_factory=list)
    refused_at: datetime | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self) -> LoadedPolicy:
        """The policy in force, re-read first if the file changed (a stat per call: cheap)."""
        try:
            stat = os.stat(self.path)
            signature: tuple[int, int, int] | None = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except OSError:
            signature = None
        if signature == self.signature and self.loaded is not None:
            return self.loaded
        with self.lock:
            if signature != self.signature or self.loaded is None:
                self._reread(signature)
            if self.loaded is None:
                raise InvalidPolicy(str(self.path), self.problems)
            return self.loaded

    def _reread(self, signature: tuple[int, int, int] | None) -> None:
        policy, problems, digest = check_file(self.path)
        self.signature = signature
        if policy is not None and digest == self.digest:
            return  # touched, not changed
        if policy is None:
            self.problems = [str(p) for p in problems]
            self.refused_at = datetime.now(UTC)
            observability.POLICY_RELOADS.labels("refused").inc()
            if self.loaded is not None:
                observability.logger.error(
                    "policy file %s refused, policy %s stays in force: %s",
                    self.path,
                    self.loaded.version,
                    "; ".join(self.problems),
                )
            return
        previous = self.loaded
        self.loaded = LoadedPolicy(policy, self.path, digest[:12], datetime.now(UTC))
        self.digest, self.problems, self.refused_at = digest, [], None
        observability.POLICY_RELOADS.labels("loaded").inc()
        if previous is None:
            observability.logger.info("policy %s loaded from %s", self.loaded.version, self.path)
        else:  # a change in force without a restart: worth a line at the default level
            observability.logger.warning(
                "policy %s replaces %s (reloaded from %s)", self.loaded.version, previous.version, self.path
            )


_watched: dict[Path, _Watched] = {}
_watched_lock = threading.Lock()


def _watch(path: Path) -> _Watched:
    resolved = path.expanduser().resolve()
    with _watched_lock:
        return _watched.setdefault(resolved, _Watched(resolved))


def current_policy(settings: Settings) -> LoadedPolicy | None:
    """The policy in force (None without `HYBRID_POLICY_FILE`). Raises `InvalidPolicy` only if no
    version of the file has validated yet in this process."""
    if settings.policy_file is None:
        return None
    return _watch(settings.policy_file).current()


def policy_status(settings: Settings) -> dict[str, Any]:
    """What is in force and what the last look at the file found (for operators)."""
    if settings.policy_file is None:
        return {"file": None, "version": None}
    watched = _watch(settings.policy_file)
    with contextlib.suppress(InvalidPolicy):  # reported below
        watched.current()
    loaded = watched.loaded
    return {
        "file": str(watched.path),
        "version": loaded.version if loaded else None,
        "loaded_at": loaded.loaded_at.isoformat(timespec="seconds") if loaded else None,
        "refused_at": watched.refused_at.isoformat(timespec="seconds") if watched.refused_at else None,
        "problems": list(watched.problems),
    }


def reset() -> None:
    """Forget loaded policies (tests; a process restart)."""
    with _watched_lock:
        _watched.clear()
