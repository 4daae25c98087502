"""Policies: who may use what, rules that always win, and routing that respects objectives and
budgets (docs/policies.md).

- `schema`: what a policy file may say; `loading`: reading it with line numbers, reloading it;
- `callers`: API keys to tenants and tiers; `tenancy`: which conversations a tenant owns;
- `rules`: which rule decides a question and what its data class allows;
- `shifts` and `budgets`: how far the threshold moves under load and as budgets run low, and
  holds that keep replicas from overspending; `limits`: per-key rate limits;
- `turn`: all of it for one turn, as the router and the answering step use it.
"""

from hybrid.policy.callers import Caller, authenticate, hash_key, keys_configured, new_key, operator
from hybrid.policy.loading import LoadedPolicy, Problem, check_file, current_policy, policy_status
from hybrid.policy.turn import TurnPolicy, for_turn, guard_call

__all__ = [
    "Caller",
    "LoadedPolicy",
    "Problem",
    "TurnPolicy",
    "authenticate",
    "check_file",
    "current_policy",
    "for_turn",
    "guard_call",
    "hash_key",
    "keys_configured",
    "new_key",
    "operator",
    "policy_status",
]
