"""Every config documents each field, the documented defaults are the code's defaults, and every
recipe's ``--help`` lists every config key it accepts from those docstrings.

Docstrings use the transformers convention ``name (`type`, defaults to `value`): meaning``, read by
``repr_asr.training.config.documented_fields`` (the same reader ``--help`` uses).
"""

import ast
import dataclasses
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import PreTrainedConfig

import repr_asr  # noqa: F401  (registers everything)
from repr_asr.downstream.speaker_id import SpeakerIDConfig
from repr_asr.evaluation.probes import ProbeConfig
from repr_asr.training.config import (
    ConfigError,
    PretrainDataConfig,
    TrainingConfig,
    config_class_for,
    documented_fields,
    model_config_keys,
    parse_recipe_args,
)
from repr_asr.downstream.ctc import CTCDataConfig

ROOT = Path(__file__).resolve().parent.parent
DATACLASS_CONFIGS = [TrainingConfig, PretrainDataConfig, CTCDataConfig, ProbeConfig, SpeakerIDConfig]


def _config_classes():
    seen = {}
    stack = list(PreTrainedConfig.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("repr_asr."):
            seen[cls.__name__] = cls
    return [seen[name] for name in sorted(seen)]


def _documented_defaults(cls):
    return {name: doc.default for name, doc in documented_fields(cls).items()}


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


def test_documented_fields_reads_type_default_and_continued_meaning():
    @dataclasses.dataclass
    class Example:
        r"""Something.

        Args:
            rate (`float`, defaults to `0.5`): how fast,
                said over two lines.
            name (`str`, *optional*, defaults to `"x"`): a name.
            other (`int`): no default given, so not a documented field.

        More text at the level of ``Args``, which belongs to no field.
        """

        rate: float = 0.5
        name: str = "x"

    docs = documented_fields(Example)
    assert list(docs) == ["rate", "name"]
    assert (docs["rate"].type, docs["rate"].default) == ("float", "0.5")
    assert docs["rate"].meaning == "how fast, said over two lines."
    assert (docs["name"].default, docs["name"].meaning) == ('"x"', "a name.")


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


@pytest.mark.parametrize("cls", DATACLASS_CONFIGS, ids=lambda c: c.__name__)
def test_dataclass_configs_document_every_field_with_its_default(cls):
    documented = _documented_defaults(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    assert sorted(set(names) - set(documented)) == [], f"{cls.__name__}: undocumented fields"
    assert sorted(set(documented) - set(names)) == [], f"{cls.__name__}: documented fields that do not exist"
    for f in dataclasses.fields(cls):
        assert _literal(documented[f.name]) == f.default, (
            f"{cls.__name__}.{f.name}: docstring says {documented[f.name]!r}, code uses {f.default!r}")


# --- --help of the recipes ---------------------------------------------------------------------------

HELP_LINE = re.compile(r"^  --(?P<section>model|data|training)\.(?P<key>\w+) \((?P<type>.+?), default (?P<default>.*)\)$")


def _help_keys(text: str) -> dict:
    """``{(section, key): default text}`` of the key lines of a recipe's --help."""
    keys = {}
    for line in text.splitlines():
        match = HELP_LINE.match(line)
        if match:
            keys[(match["section"], match["key"])] = match["default"]
    return keys


def _recipe_help(recipe: str, *args: str) -> str:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "recipes" / recipe), *args, "--help"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _check_dataclass_keys(keys: dict, section: str, cls) -> None:
    for f in dataclasses.fields(cls):
        assert (section, f.name) in keys, f"--help does not list --{section}.{f.name}"
        shown = keys[(section, f.name)]
        assert _literal(shown) == f.default, f"--help shows --{section}.{f.name} defaulting to {shown}, the code to {f.default!r}"


def _check_model_keys(keys: dict, model_type: str) -> None:
    listed = sorted(k for s, k in keys if s == "model")
    assert listed == model_config_keys(model_type)
    params = inspect.signature(config_class_for(model_type).__init__).parameters
    for key in listed:
        default = params[key].default if key in params else None
        if default is not None and default is not inspect.Parameter.empty:
            shown = _literal(keys[("model", key)])
            assert shown == (list(default) if isinstance(default, tuple) else default), (
                f"--model.{key}: --help shows {shown!r}, the config class defaults to {default!r}")


def test_pretrain_help_lists_every_key_with_its_default():
    text = _recipe_help("pretrain.py", "--config", "configs/pretrain/wavenet_vq_tiny.yaml")
    keys = _help_keys(text)
    _check_dataclass_keys(keys, "training", TrainingConfig)
    _check_dataclass_keys(keys, "data", PretrainDataConfig)
    _check_model_keys(keys, "wavenet_ae")
    # The meaning comes along (from the docstring, not a second copy).
    assert "peak AdamW learning rate" in text and "samples per training crop" in text
    assert "undocumented" not in text


def test_pretrain_help_without_config_lists_data_and_training_keys():
    keys = _help_keys(_recipe_help("pretrain.py"))
    _check_dataclass_keys(keys, "training", TrainingConfig)
    _check_dataclass_keys(keys, "data", PretrainDataConfig)
    assert not [k for s, k in keys if s == "model"]


def test_ctc_recipe_help_lists_ctc_data_keys_and_head_keys():
    # Needs recipes/finetune_ctc.py to pass data_cls=CTCDataConfig, model_type="upstream_ctc".
    text = _recipe_help("finetune_ctc.py", "--config", "configs/ctc/frozen_tiny.yaml")
    keys = _help_keys(text)
    _check_dataclass_keys(keys, "data", CTCDataConfig)
    _check_dataclass_keys(keys, "training", TrainingConfig)
    _check_model_keys(keys, "upstream_ctc")
    assert "--upstream" in text and "--subset" in text  # the recipe's own arguments stay


def test_parse_recipe_args_help_follows_data_class_and_command_line_model_type(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_recipe_args(["--model_type", "cpc", "--help"], data_cls=CTCDataConfig, model_type="upstream_ctc")
    assert exit_info.value.code == 0
    keys = _help_keys(capsys.readouterr().out)
    _check_dataclass_keys(keys, "data", CTCDataConfig)
    assert ("data", "crop_samples") not in keys  # PretrainDataConfig's keys are not offered
    _check_model_keys(keys, "cpc")  # --model_type on the command line wins over the recipe's default


def test_help_names_an_unknown_model_type_instead_of_failing(capsys, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model_type: no_such_model\n")
    with pytest.raises(SystemExit):
        parse_recipe_args(["--config", str(config), "--help"])
    out = capsys.readouterr().out
    assert "cannot list them" in out and "no_such_model" in out
    _check_dataclass_keys(_help_keys(out), "training", TrainingConfig)


def test_unknown_model_type_lists_ours():
    with pytest.raises(ConfigError) as error:
        config_class_for("no_such_model")
    for ours in ("spectral", "cpc", "masked_recon", "wavenet_ae", "phone_topline", "upstream_ctc"):
        assert ours in str(error.value)
    assert sorted(repr_asr.MODEL_TYPES) == ["cpc", "masked_recon", "phone_topline", "spectral", "upstream_ctc", "wavenet_ae"]
