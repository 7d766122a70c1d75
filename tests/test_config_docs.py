"""Every config documents each field, and the documented defaults are the code's defaults.

Docstrings use the transformers convention ``name (`type`, defaults to `value`): meaning``.
"""

import ast
import inspect
import re

import pytest
from transformers import PreTrainedConfig

import repr_asr  # noqa: F401  (registers everything)


def _config_classes():
    seen = {}
    stack = list(PreTrainedConfig.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("repr_asr."):
            seen[cls.__name__] = cls
    return [seen[name] for name in sorted(seen)]


DOC_ENTRY = re.compile(r"^\s{4,}(\w+) \(`[^`]+`(?:, \*optional\*)?, defaults to `(.*?)`\)", re.MULTILINE)


def _documented_defaults(cls):
    return {name: value for name, value in DOC_ENTRY.findall(cls.__doc__ or "")}


def _literal(text):
    if text == "None":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text.strip("\"'")


def test_configs_are_found():
    names = [cls.__name__ for cls in _config_classes()]
    assert "SpectralConfig" in names


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda c: c.__name__)
def test_documented_defaults_match_code(cls):
    documented = _documented_defaults(cls)
    params = {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name not in ("self", "kwargs") and p.kind is not inspect.Parameter.VAR_KEYWORD
    }
    undocumented = sorted(set(params) - set(documented))
    assert not undocumented, f"{cls.__name__}: fields without a documented default: {undocumented}"
    config = cls()
    for name, text in documented.items():
        if name not in params:
            continue
        expected = _literal(text)
        code_default = params[name]
        # A list default is often written as None in the signature and filled in __init__.
        actual = getattr(config, name, code_default) if code_default is None else code_default
        if isinstance(actual, tuple):
            actual = list(actual)
        assert actual == expected, f"{cls.__name__}.{name}: docstring says {text!r}, code uses {actual!r}"
