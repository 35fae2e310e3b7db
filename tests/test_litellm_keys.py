"""gateway/core/litellm_keys.py holds exactly the names the installed litellm uses.

The gateway never imports litellm to read a config (it takes ~2.6 s), so LiteLLM's key names
are kept as data. When litellm is upgraded this test fails with the difference; regenerate the
module with `python -m tests.test_litellm_keys` and review the diff.
"""

from __future__ import annotations

import os
import re
import typing
import warnings
from importlib.metadata import version
from pathlib import Path

import orjson

from gateway.core import litellm_keys
from gateway.core.config import ModelMode
from gateway.metering.prices import price_map_path

MODULE = Path(__file__).resolve().parent.parent / "gateway" / "core" / "litellm_keys.py"
# The keys of litellm's price-map entries that are not fields: a comment, LiteLLM's own notes.
_MAP_NOTES = {"comment", "source", "metadata", "deprecation_source", "rules"}
_MODE = re.compile(r"[a-z_]+")


def current() -> dict[str, frozenset[str]]:
    """The name sets as the installed litellm defines them."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with warnings.catch_warnings():  # pydantic's notes on litellm's own types
        warnings.simplefilter("ignore", UserWarning)
        import litellm
        from litellm.types.router import GenericLiteLLMParams
        from litellm.types.router import ModelInfo as RouterModelInfo
        from litellm.types.utils import (
            CustomPricingLiteLLMParams,
            ModelInfoBase,
            all_litellm_params,
        )

    path = price_map_path()
    assert path is not None
    entries = [e for e in orjson.loads(path.read_bytes()).values() if isinstance(e, dict)]
    map_keys = {key for entry in entries for key in entry} - _MAP_NOTES
    pricing = frozenset(CustomPricingLiteLLMParams.model_fields)
    info_hints = typing.get_type_hints(ModelInfoBase)
    declared_modes = set(typing.get_args(info_hints["mode"]))
    map_modes = {e["mode"] for e in entries if isinstance(e.get("mode"), str)}
    return {
        "LITELLM_ONLY_PARAMS": frozenset(
            {*all_litellm_params, *GenericLiteLLMParams.model_fields, "additional_drop_params"}
        ),
        "CUSTOM_PRICING_PARAMS": pricing,
        "MODEL_INFO_KEYS": frozenset(
            {*RouterModelInfo.model_fields, *info_hints, *map_keys, *pricing, "off_peak_pricing"}
        ),
        "MODEL_MODES": frozenset(m for m in declared_modes | map_modes if _MODE.fullmatch(m)),
        "OPENAI_PARAMS": frozenset(
            {*litellm.OPENAI_CHAT_COMPLETION_PARAMS, "dimensions", "encoding_format", "extra_body"}
        ),
    }


_COMMENTS = {
    "LITELLM_ONLY_PARAMS": "litellm_params keys LiteLLM consumes itself (all_litellm_params,\n"
    "# GenericLiteLLMParams, additional_drop_params): never a provider's request parameter.",
    "CUSTOM_PRICING_PARAMS": "litellm_params keys that set a deployment's price "
    "(CustomPricingLiteLLMParams).",
    "MODEL_INFO_KEYS": "model_info keys LiteLLM knows: its router's ModelInfo, ModelInfoBase, "
    "the price map's\n# fields and the custom prices (which LiteLLM mirrors onto model_info).",
    "MODEL_MODES": "model_info.mode values: ModelInfoBase's and the price map's.",
    "OPENAI_PARAMS": "OpenAI's request parameters (litellm's OPENAI_CHAT_COMPLETION_PARAMS, "
    "embeddings' own,\n# extra_body): the names a typo in litellm_params is checked against.",
}


def _wrapped(names: frozenset[str]) -> str:
    lines, line = [], ""
    for name in sorted(names):
        if line and len(line) + 1 + len(name) > 96:
            lines.append(line)
            line = name
        else:
            line = f"{line} {name}" if line else name
    lines.append(line)
    return "\n".join(f"    {line}" for line in lines)


def render() -> str:
    parts = [
        '"""LiteLLM\'s own key names, as data: a config is read without importing litellm.\n\n'
        f"Generated from litellm {version('litellm')} by `python -m tests.test_litellm_keys`; "
        "tests/test_litellm_keys.py\nfails when the installed litellm's names differ. "
        'Do not edit by hand.\n"""\n\nfrom __future__ import annotations\n\n'
        f'LITELLM_VERSION = "{version("litellm")}"\n\n\n'
        "def _names(text: str) -> frozenset[str]:\n    return frozenset(text.split())\n"
    ]
    names = current()
    pricing = names["CUSTOM_PRICING_PARAMS"]
    for name, held in sorted(names.items(), key=lambda item: item[0] != "CUSTOM_PRICING_PARAMS"):
        quotes, union = '"""', ""
        if name != "CUSTOM_PRICING_PARAMS" and pricing <= held:  # written once
            held, union = held - pricing, "CUSTOM_PRICING_PARAMS | "
        body = f"{name} = {union}_names(\n    {quotes}\n{_wrapped(held)}\n{quotes}\n)\n"
        parts.append(f"\n\n# {_COMMENTS[name]}\n{body}")
    return "".join(parts)


def test_the_config_takes_litellms_model_modes() -> None:
    assert set(typing.get_args(ModelMode)) == litellm_keys.MODEL_MODES


def test_the_names_are_the_installed_litellms() -> None:
    names = current()
    assert version("litellm") == litellm_keys.LITELLM_VERSION, "regenerate: see the docstring"
    for name, expected in names.items():
        held: frozenset[str] = getattr(litellm_keys, name)
        assert held == expected, (
            f"{name}: missing {sorted(expected - held)}, extra {sorted(held - expected)}; "
            "regenerate with `python -m tests.test_litellm_keys`"
        )


if __name__ == "__main__":
    MODULE.write_text(render())
    print(f"wrote {MODULE}")
