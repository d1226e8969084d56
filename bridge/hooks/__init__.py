"""Policy hooks: decisions the YAML rules cannot express, asked of a Python hook (entry
point group `imbridge.policy_hooks`) or an HTTP service (a DLP product). See
docs/hooks.md. A hook author needs only what this module exports."""

from imbridge.hooks.verdict import HookAction, HookRequest, Span, Verdict
from imbridge.policy import Destination

__all__ = ["Destination", "HookAction", "HookRequest", "Span", "Verdict"]
