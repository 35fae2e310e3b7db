"""LLMOps gateway: an OpenAI-compatible proxy with routing, cost and governance."""

__version__ = "0.1.0"
