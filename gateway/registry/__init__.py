"""The model registry: registered models, their numbered versions, movable labels, lineage.

Shared by LLMs and (later) classic models: a version names the gateway alias that serves it.
"""

from gateway.core.model_refs import ModelRef, parse_ref
from gateway.registry.store import RegistryStore

__all__ = ["ModelRef", "RegistryStore", "parse_ref"]
