"""Safeguarding rules (issue 6): declared in ``mappings/rules/safeguarding.yaml``, evaluated per reconciled
identity in the pipeline's transaction (``RulesEngine``) and daily for the clock rules (``run_daily``)."""

from adapter.rules.config import RuleConfig, RuleSet, load_rules
from adapter.rules.engine import DERIVED_TAG, RULE_POLICY, RULE_SOURCE, RulesEngine, daily_identities, run_daily

__all__ = ["RuleConfig", "RuleSet", "load_rules", "RulesEngine", "run_daily", "daily_identities", "DERIVED_TAG",
           "RULE_POLICY", "RULE_SOURCE"]
