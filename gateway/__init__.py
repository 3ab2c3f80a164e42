"""sendbrake: a pre-send guardrail proxy for marketing email."""

__version__ = "0.1.0"
