"""Access policies: the RIE rules as data (pure: no Flask, no database).

A YAML file (:data:`DEFAULT_POLICY_PATH` unless ``HOSPICONNECT_POLICY_FILE`` says otherwise) declares MIE types
and their homologation, application classes, populations, dated rules and the trajectory's dated targets
(:class:`PolicyTarget`). :func:`load_policy` validates it and returns an immutable :class:`Policy`;
:func:`evaluate` decides one authorization; :func:`compliance` / :func:`is_compliant` is the single definition of
a compliant MIE, for the provider and the trajectory alike.

Modules: ``acr`` (levels), ``policy`` (the model and its settings as of a date), ``context`` (questions and
answers), ``reader``/``schema``/``loader`` (the file), ``rules`` (the decisions), ``explain`` (French text).
"""

from hospiconnect.policies.acr import ACR_LEVELS, MIE_TYPE_NAMES, acr_rank, mie_types_from_amr
from hospiconnect.policies.context import (
    Compliance,
    Decision,
    EvaluationContext,
    IdentitySummary,
    MieSummary,
    Reason,
)
from hospiconnect.policies.loader import (
    DEFAULT_POLICY_PATH,
    PolicyError,
    PolicyUnreadable,
    load_policy,
    parse_policy,
)
from hospiconnect.policies.policy import EffectiveSettings, Policy, PolicyTarget
from hospiconnect.policies.reader import PolicyIssue
from hospiconnect.policies.rules import compliance, evaluate, is_compliant

__all__ = [
    "ACR_LEVELS", "MIE_TYPE_NAMES", "DEFAULT_POLICY_PATH",
    "Compliance", "Decision", "EffectiveSettings", "EvaluationContext", "IdentitySummary", "MieSummary", "Policy",
    "PolicyError", "PolicyIssue", "PolicyTarget", "PolicyUnreadable", "Reason",
    "acr_rank", "compliance", "evaluate", "is_compliant", "load_policy", "mie_types_from_amr", "parse_policy",
]
