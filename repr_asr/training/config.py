"""Run configuration: the YAML file of a recipe, command-line overrides, and the resolved copy.

A YAML config has up to four top-level keys (CONTRIBUTING.md)::

    model_type: wavenet_ae          # a key registered with AutoConfig by ``import repr_asr``
    model: {...}                    # keyword arguments of that config class
    data: {...}                     # fields of the recipe's data dataclass (``PretrainDataConfig`` here)
    training: {...}                 # fields of ``TrainingConfig``

Any key can be overridden on the command line as ``--section.key value`` (or ``--section.key=value``);
values are parsed with ``yaml.safe_load`` so ``--training.learning_rate 1e-3`` is a float and
``--model.speakers '[a, b]'`` a list. Nothing is ever ``eval``-ed. The shortcuts ``--max_steps``,
``--save_steps``, ``--seed`` and ``--data`` stand for ``--training.max_steps``, ``--training.save_steps``,
``--training.seed`` and ``--data.spec``. Unknown sections or keys raise a ``ConfigError`` that names the
key, where it came from, and the valid ones.

Every field is documented once, in its class docstring, in the transformers form
``name (`type`, defaults to `value`): meaning``; :func:`documented_fields` reads that form, and a
recipe's ``--help`` (:func:`config_help`) lists every key it accepts from it.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import textwrap
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

import yaml

SECTIONS = ("model_type", "model", "data", "training")
# Shortcut flag -> (section, key).
SHORTCUTS = {
    "max_steps": ("training", "max_steps"),
    "save_steps": ("training", "save_steps"),
    "seed": ("training", "seed"),
    "data": ("data", "spec"),
}
LR_SCHEDULES = ("linear", "cosine", "constant")
MIXED_PRECISION = ("no", "bf16", "fp16")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key and its source."""


# One documented field in a config class docstring, the transformers form
# ``name (`type`, defaults to `value`): meaning`` (CONTRIBUTING.md); the meaning may go on over more
# indented lines.
_DOC_ENTRY = re.compile(r"^(?P<indent>\s+)(?P<name>\w+) \(`(?P<type>[^`]+)`(?:, \*optional\*)?, defaults to `(?P<default>.*?)`\):?\s*(?P<meaning>.*)$")


@dataclass(frozen=True)
class FieldDoc:
    """A config field as its class docstring documents it: ``default`` is the text between the backticks."""

    name: str
    type: str
    default: str
    meaning: str


def documented_fields(cls) -> dict[str, FieldDoc]:
    """``{name: FieldDoc}`` for every field ``cls.__doc__`` documents as
    ``name (`type`, defaults to `value`): meaning``, in docstring order.

    The single reader of that form: ``--help`` of the recipes lists config keys from it and
    ``tests/test_config_docs.py`` checks it against the code's defaults.
    """
    out: dict[str, FieldDoc] = {}
    current = None  # (entry indent, FieldDoc fields) of the entry whose meaning may continue
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines() + [""]:
        indent = len(line) - len(line.lstrip())
        if current is not None and line.strip() and indent > current[0]:
            current[1]["meaning"] += " " + line.strip()
            continue
        if current is not None:
            out[current[1]["name"]] = FieldDoc(**current[1])
            current = None
        match = _DOC_ENTRY.match(line)
        if match:
            entry = match.groupdict()
            current = (len(entry.pop("indent")), entry)
    return out


@dataclass
class TrainingConfig:
    r"""Hyper-parameters of the shared training loop (`repr_asr.training.Trainer`).

    Args:
        max_steps (`int`, defaults to `1000`): optimisation steps to run (each step may accumulate several batches).
        batch_size (`int`, defaults to `8`): examples per batch on each process.
        learning_rate (`float`, defaults to `0.0002`): peak AdamW learning rate, reached after the warm-up.
        warmup_steps (`int`, defaults to `0`): steps of linear warm-up from 0 to `learning_rate`.
        lr_schedule (`str`, defaults to `"cosine"`): decay after the warm-up down to 0 at `max_steps`:
            `"linear"`, `"cosine"` (half cosine) or `"constant"`.
        weight_decay (`float`, defaults to `0.0`): AdamW decoupled weight decay (not applied to biases and norms).
        adam_beta1 (`float`, defaults to `0.9`): AdamW first-moment decay.
        adam_beta2 (`float`, defaults to `0.999`): AdamW second-moment decay.
        adam_epsilon (`float`, defaults to `1e-08`): AdamW denominator epsilon.
        max_grad_norm (`float`, defaults to `1.0`): clip the global gradient norm to this value; 0 disables clipping.
        gradient_accumulation_steps (`int`, defaults to `1`): batches whose gradients are summed into one step.
        mixed_precision (`str`, defaults to `"no"`): `"no"`, `"bf16"` or `"fp16"` autocast (through Accelerate).
        log_steps (`int`, defaults to `10`): write a `metrics.jsonl` / TensorBoard record every N steps.
        save_steps (`int`, defaults to `500`): write a resumable checkpoint every N steps; 0 saves only at the end.
        save_total_limit (`int`, defaults to `2`): keep only the N newest checkpoints; 0 keeps all.
        eval_steps (`int`, defaults to `0`): run the evaluation every N steps; 0 evaluates only at the end.
        seed (`int`, defaults to `0`): seeds parameters' initialisation (through the recipe), data order,
            crop offsets and every random stream of the model.
        num_workers (`int`, defaults to `0`): DataLoader worker processes.
        pin_memory (`bool`, defaults to `False`): pin host memory of batches (helps GPU transfers).
        drop_last (`bool`, defaults to `True`): drop the last incomplete batch of an epoch.
        shuffle (`bool`, defaults to `True`): shuffle the training set each epoch (seeded by `seed` and the epoch).
        group_by_length (`bool`, defaults to `False`): batch examples of similar length together (transformers'
            length-grouped order, seeded by `seed` and the epoch), so that little of a batch is padding; the
            Trainer then needs the examples' lengths (`train_lengths`).
        max_nonfinite_steps (`int`, defaults to `10`): a step whose loss or gradients are not finite is skipped
            (no update, counted as `nonfinite_steps` in `metrics.jsonl`); after this many such steps in a row
            the run stops with an error, keeping its last good checkpoint. 0 stops at the first one.
        max_loss_ratio (`float`, defaults to `1000.0`): a loss that explodes without overflowing counts as
            non-finite: once 10 steps have gone well, their median loss (over processes) is the run's reference,
            and a later step whose loss exceeds `max_loss_ratio` times it is skipped and counted like a
            non-finite one (`max_nonfinite_steps` of them in a row stop the run). 0 turns the check off, and so
            does a reference that is not positive (a loss that can be negative). The skipped step's forward
            pass has run: buffers it updates (a VQ's EMA statistics) keep its update.
        metric_for_best_model (`str`, defaults to `""`): an evaluation result (e.g. `"eval_cer"`) that picks
            the step whose weights become `final/`; empty: `final/` is the last step.
        greater_is_better (`bool`, defaults to `False`): whether a larger `metric_for_best_model` is better.
        early_stopping_patience (`int`, defaults to `0`): stop after this many evaluations in a row without
            an improvement of `metric_for_best_model`; 0 never stops early.
        flops_budget (`float`, defaults to `0.0`): training FLOPs to spend; when > 0 the recipes that count a
            step's FLOPs (pretraining) set `max_steps` to `flops_budget / FLOPs per step` (equal compute).
        strict (`bool`, defaults to `False`): stop at the first undecodable example instead of skipping it
            (skipped examples are named in the log and counted in the results).
    """

    max_steps: int = 1000
    batch_size: int = 8
    learning_rate: float = 2e-4
    warmup_steps: int = 0
    lr_schedule: str = "cosine"
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "no"
    log_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = 2
    eval_steps: int = 0
    seed: int = 0
    num_workers: int = 0
    pin_memory: bool = False
    drop_last: bool = True
    shuffle: bool = True
    group_by_length: bool = False
    max_nonfinite_steps: int = 10
    max_loss_ratio: float = 1000.0
    metric_for_best_model: str = ""
    greater_is_better: bool = False
    early_stopping_patience: int = 0
    flops_budget: float = 0.0
    strict: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Say in words what is wrong with a combination of fields."""
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"training.lr_schedule must be one of {list(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"training.mixed_precision must be one of {list(MIXED_PRECISION)}, got {self.mixed_precision!r}")
        for name in ("max_steps", "batch_size", "gradient_accumulation_steps", "log_steps"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"training.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "save_steps", "save_total_limit", "eval_steps", "num_workers",
                     "max_nonfinite_steps", "early_stopping_patience"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"training.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.learning_rate <= 0:
            raise ConfigError(f"training.learning_rate must be > 0, got {self.learning_rate!r}")
        if self.max_loss_ratio < 0:
            raise ConfigError(f"training.max_loss_ratio must be >= 0 (0: no check), got {self.max_loss_ratio!r}")
        if self.flops_budget < 0:
            raise ConfigError(f"training.flops_budget must be >= 0, got {self.flops_budget!r}")
        if self.early_stopping_patience and not self.metric_for_best_model:
            raise ConfigError("training.early_stopping_patience needs training.metric_for_best_model (e.g. eval_cer)")


@dataclass
class PretrainDataConfig:
    r"""The `data:` section of a pretraining config.

    Args:
        spec (`str`, defaults to `"builtin:data/builtin"`): corpus spec for `repr_asr.data.load_corpus`
            (`builtin:PATH`, `librispeech:PATH`, `hf:NAME_OR_PATH`); `--data` on the command line.
        split (`str`, defaults to `"pretrain"`): the split whose audio is cropped for training.
        crop_samples (`int`, defaults to `16000`): samples per training crop (16000 = 1 s at 16 kHz); shorter
            utterances are zero-padded with a zero attention mask.
        cache_audio (`bool`, defaults to `False`): keep decoded audio in memory after the first epoch
            (for small corpora; each DataLoader worker holds its own copy).
        normalize (`bool`, defaults to `False`): zero-mean unit-variance normalisation of each crop over its
            real samples; saved into the feature extractor of `final/` so features are computed alike.
        eval_split (`str`, defaults to `""`): a split to compute the pretraining loss on at each evaluation
            (e.g. `"dev"`); empty for none.
        max_eval_utterances (`int`, defaults to `64`): evaluate on at most this many utterances of `eval_split`.
        streaming (`bool`, defaults to `False`): read an `hf:` spec as a stream (`datasets` IterableDataset,
            `repr_asr.data.streaming`): nothing is decoded or measured up front, each process and data-loader
            worker reads its own shards; `--streaming` on the command line.
        shuffle_buffer (`int`, defaults to `1000`): examples in the stream's shuffle buffer (with `streaming`).
    """

    spec: str = "builtin:data/builtin"
    split: str = "pretrain"
    crop_samples: int = 16000
    cache_audio: bool = False
    normalize: bool = False
    eval_split: str = ""
    max_eval_utterances: int = 64
    streaming: bool = False
    shuffle_buffer: int = 1000

    def __post_init__(self):
        if int(self.crop_samples) < 1:
            raise ConfigError(f"data.crop_samples must be >= 1, got {self.crop_samples!r}")
        if self.streaming and not str(self.spec).startswith("hf:"):
            raise ConfigError(f"data.streaming needs an hf:NAME_OR_PATH corpus, got data.spec {self.spec!r}")
        if int(self.shuffle_buffer) < 0:
            raise ConfigError(f"data.shuffle_buffer must be >= 0, got {self.shuffle_buffer!r}")


@dataclass
class RunConfig:
    """A resolved run: ``model_type`` + ``model`` kwargs, the data dataclass and the training dataclass."""

    model_type: Optional[str]
    model: dict = field(default_factory=dict)
    data: Any = field(default_factory=PretrainDataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict:
        return {
            "model_type": self.model_type,
            "model": dict(self.model),
            "data": asdict(self.data),
            "training": asdict(self.training),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the resolved config as YAML (what ``load_config`` reads back)."""
        with open(path, "w") as handle:
            yaml.safe_dump(self.to_dict(), handle, sort_keys=False)

    def build_model_config(self):
        """``AutoConfig.for_model(model_type, **model)`` after checking every key is a config argument."""
        import repr_asr  # noqa: F401  (registers our model types with AutoConfig)
        from transformers import AutoConfig

        if not self.model_type:
            raise ConfigError("the config has no `model_type` (e.g. `model_type: wavenet_ae`)")
        validate_model_kwargs(self.model_type, self.model)
        return AutoConfig.for_model(self.model_type, **self.model)


def config_class_for(model_type: str):
    """The config class registered with ``AutoConfig`` for ``model_type`` (ours, or a transformers one)."""
    import repr_asr
    from transformers import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        raise ConfigError(
            f"unknown model_type {model_type!r}; the model types repr_asr registers are {sorted(repr_asr.MODEL_TYPES)}"
        )
    return CONFIG_MAPPING[model_type]


def model_config_keys(model_type: str) -> list[str]:
    """Keyword arguments the config class of ``model_type`` accepts (its ``__init__`` parameters)."""
    config_cls = config_class_for(model_type)
    keys = set()
    for cls in config_cls.__mro__:
        if cls.__module__.startswith("transformers"):
            break
        # Dataclass-style fields (transformers 5 configs may declare annotated class attributes).
        keys.update(k for k in inspect.get_annotations(cls) if not k.startswith("_"))
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        for name, param in inspect.signature(init).parameters.items():
            if name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                keys.add(name)
    return sorted(keys)


def validate_model_kwargs(model_type: str, kwargs: dict, source: str = "model") -> None:
    valid = model_config_keys(model_type)
    if not valid:  # a config without an explicit signature: nothing to check against
        return
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'model.{k}' for k in unknown)} in {source} for model_type {model_type!r}; "
            f"valid keys: {', '.join(valid)}"
        )


def _dataclass_from_dict(cls, values: dict, section: str, source: str, overridden=()):
    """``cls(**values)`` with every value checked against its field's type; errors name ``source``, or the
    command line for the keys in ``overridden`` (given there)."""
    valid = [f.name for f in fields(cls)]
    unknown = [k for k in values if k not in valid]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)} in {source}; "
            f"valid {section} keys: {', '.join(valid)}"
        )
    typed = {}
    file_source = source
    for f in fields(cls):
        if f.name not in values:
            continue
        source = "the command line" if f.name in overridden else file_source
        value = values[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        # Coerce what YAML may give in another spelling: 1e-3 written as "1e-3" is a str for PyYAML.
        if isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(f"{section}.{f.name} in {source} must be a string, got {value!r}")
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{section}.{f.name} in {source} must be true or false, got {value!r}")
        elif isinstance(default, float) and isinstance(value, (int, str)):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{section}.{f.name} in {source} must be a number, got {value!r}") from None
        elif isinstance(default, int) and not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{section}.{f.name} in {source} must be an integer, got {value!r}")
        typed[f.name] = value
    return cls(**typed)


def parse_overrides(args: list[str]) -> dict:
    """``["--training.max_steps", "5", "--model.x=1", "--seed", "3"]`` → ``{("training", "max_steps"): 5, ...}``.

    Values are parsed with ``yaml.safe_load``; a flag with no value is an error (booleans are written
    ``--data.cache_audio true``).
    """
    overrides: dict = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected command-line argument {arg!r}: overrides are written --section.key value")
        key = arg[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args) or (args[i + 1].startswith("--") and not _is_number(args[i + 1])):
                raise ConfigError(f"override --{key} has no value (write --{key} VALUE)")
            raw = args[i + 1]
            i += 2
        if key == "data":  # a corpus spec is a string, whatever YAML would make of it
            overrides[SHORTCUTS[key]] = raw
            continue
        if key in SHORTCUTS:
            target = SHORTCUTS[key]
        elif key == "model_type":
            target = ("model_type", None)
        elif "." in key:
            section, name = key.split(".", 1)
            if section not in ("model", "data", "training"):
                raise ConfigError(
                    f"unknown override --{key}: the section must be one of model, data, training "
                    f"(or a shortcut: {', '.join('--' + s for s in SHORTCUTS)}, --model_type)"
                )
            target = (section, name)
        else:
            raise ConfigError(
                f"unknown override --{key}: write --section.key value (sections model, data, training) "
                f"or a shortcut: {', '.join('--' + s for s in SHORTCUTS)}, --model_type"
            )
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"cannot parse the value of --{key} ({raw!r}) as YAML: {error}") from None
        overrides[target] = value
    return overrides


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def load_config(
    path: Optional[str | os.PathLike],
    overrides: Optional[list[str] | dict] = None,
    data_cls=PretrainDataConfig,
    training_cls=TrainingConfig,
    check_model_keys: bool = True,
) -> RunConfig:
    """Read a YAML run config, apply command-line overrides, and check every key.

    Args:
        path: the YAML file (``None`` for an all-defaults config, which then needs ``--model_type``).
        overrides: command-line arguments (``["--training.max_steps", "10", ...]``) or an already
            parsed ``{(section, key): value}`` dict.
        data_cls / training_cls: the dataclasses of the ``data`` and ``training`` sections (the CTC recipe
            passes its own data dataclass).
        check_model_keys: check ``model`` keys against the config class of ``model_type``.
    """
    source = str(path) if path is not None else "<defaults>"
    raw: dict = {}
    if path is not None:
        if not os.path.isfile(path):
            raise ConfigError(f"config file {source} does not exist")
        with open(path) as handle:
            try:
                raw = yaml.safe_load(handle) or {}
            except yaml.YAMLError as error:
                raise ConfigError(f"{source}: not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: the top level must be a mapping with keys {list(SECTIONS)}")
    unknown = [k for k in raw if k not in SECTIONS]
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; valid: {list(SECTIONS)}")
    for section in ("model", "data", "training"):
        if raw.get(section) is None:
            raw[section] = {}
        if not isinstance(raw[section], dict):
            raise ConfigError(f"{source}: section `{section}` must be a mapping, got {type(raw[section]).__name__}")

    parsed = parse_overrides(list(overrides)) if isinstance(overrides, (list, tuple)) else dict(overrides or {})
    model_type = raw.get("model_type")
    model = dict(raw["model"])
    data = dict(raw["data"])
    training = dict(raw["training"])
    for (section, key), value in parsed.items():
        if section == "model_type":
            model_type = value
        else:
            {"model": model, "data": data, "training": training}[section][key] = value

    # Field checks name the source of the offending key: the file, or the command line.
    file_keys = {(s, k) for s in ("model", "data", "training") for k in raw[s]}

    def _source(section, keys):
        return "the command line" if any((section, k) in parsed and (section, k) not in file_keys for k in keys) else source

    data_bad = [k for k in data if k not in {f.name for f in fields(data_cls)}]
    training_bad = [k for k in training if k not in {f.name for f in fields(training_cls)}]
    data_cfg = _dataclass_from_dict(data_cls, data, "data", _source("data", data_bad) if data_bad else source,
                                    {k for (s, k) in parsed if s == "data"})
    training_cfg = _dataclass_from_dict(training_cls, training, "training",
                                        _source("training", training_bad) if training_bad else source,
                                        {k for (s, k) in parsed if s == "training"})
    if check_model_keys and model_type:
        valid = model_config_keys(model_type)
        bad = [k for k in model if valid and k not in valid]
        if bad:
            validate_model_kwargs(model_type, model, _source("model", bad))
    return RunConfig(model_type=model_type, model=model, data=data_cfg, training=training_cfg)


# Keys that may legitimately change between a run and its resumption (more steps, other logging or saving).
RESUMABLE_CHANGES = {("training", "max_steps"), ("training", "save_steps"), ("training", "log_steps"),
                     ("training", "eval_steps"), ("training", "save_total_limit"), ("training", "num_workers"),
                     ("training", "flops_budget"), ("training", "strict")}


def config_changes(saved_path: str | os.PathLike, run: RunConfig) -> list[str]:
    """``["section.key: OLD -> NEW", ...]`` for every setting of ``run`` that differs from the resolved config a
    run saved at ``saved_path`` (its ``config.yaml``), except :data:`RESUMABLE_CHANGES` and a model's
    ``speakers`` (filled from the data); empty when the file is missing."""
    if not os.path.isfile(saved_path):
        return []
    with open(saved_path) as handle:
        saved = yaml.safe_load(handle) or {}
    now = run.to_dict()
    # A field added to the code since the run was saved, at its default, is not a change of the run's settings.
    defaults = {name: {f.name: f.default for f in fields(getattr(run, name)) if f.default is not dataclasses.MISSING}
                for name in ("data", "training") if dataclasses.is_dataclass(getattr(run, name))}
    changed = []
    for section in ("model", "data", "training"):
        for key in sorted(set(saved.get(section) or {}) | set(now[section])):
            if (section, key) in RESUMABLE_CHANGES or section == "model" and key == "speakers":
                continue
            if key not in (saved.get(section) or {}) and key in defaults.get(section, {}) and now[section].get(key) == defaults[section][key]:
                continue
            if (saved.get(section) or {}).get(key) != now[section].get(key):
                changed.append(f"{section}.{key}: {(saved.get(section) or {}).get(key)!r} -> {now[section].get(key)!r}")
    if saved.get("model_type") != now["model_type"]:
        changed.append(f"model_type: {saved.get('model_type')!r} -> {now['model_type']!r}")
    return changed


def warn_config_changes(saved_path: str | os.PathLike, run: RunConfig) -> list[str]:
    """:func:`config_changes`, logged as one warning naming each changed key (old -> new) when there are any.
    A resumed run records what it returns (``resumed_with_changes`` in ``results.json``)."""
    import logging

    changed = config_changes(saved_path, run)
    if changed:
        logging.getLogger(__name__).warning("resuming with a config that differs from %s: %s", saved_path, "; ".join(changed))
    return changed


def _key_lines(prefix: str, keys: list[str], docs: dict[str, FieldDoc], defaults: dict) -> list[str]:
    """Help lines of config keys: ``--prefix.key (type, default VALUE)`` and the meaning, wrapped."""
    lines = []
    for key in keys:
        doc = docs.get(key)
        if doc is None:  # tests/test_config_docs.py keeps this from happening in our classes
            default = defaults.get(key, dataclasses.MISSING)
            shown = "" if default is dataclasses.MISSING else f", default {default!r}"
            lines.append(f"  --{prefix}.{key} (undocumented{shown})")
            continue
        lines.append(f"  --{prefix}.{key} ({doc.type}, default {doc.default})")
        lines.extend(textwrap.wrap(doc.meaning, width=100, initial_indent=" " * 6, subsequent_indent=" " * 6,
                                   break_on_hyphens=False))
    return lines


def _dataclass_help(section: str, cls) -> list[str]:
    docs = documented_fields(cls)
    defaults = {f.name: f.default for f in fields(cls)}
    return [f"{section} keys ({cls.__name__}):"] + _key_lines(section, [f.name for f in fields(cls)], docs, defaults)


def _model_help(config_path: Optional[str], model_type: Optional[str], default_model_type: Optional[str]) -> list[str]:
    """The ``model`` keys of the config class of the model type that ``--model_type``, the ``--config``
    file or the recipe's default names (in that order, as :func:`load_config` resolves it); a line saying
    why when none is known."""
    try:
        if not model_type and config_path and os.path.isfile(config_path):
            with open(config_path) as handle:
                raw = yaml.safe_load(handle)
            if isinstance(raw, dict) and isinstance(raw.get("model_type"), str):
                model_type = raw["model_type"]
        model_type = model_type or default_model_type
        if not model_type:
            return ["model keys: the keyword arguments of the config class of `model_type`; "
                    "give --config FILE (or --model_type NAME) with --help to list them."]
        config_cls = config_class_for(model_type)
    except (ConfigError, OSError, yaml.YAMLError) as error:
        return [f"model keys: cannot list them ({error})"]
    docs: dict[str, FieldDoc] = {}
    for cls in config_cls.__mro__:  # our classes only: transformers' own fields are not config keys here
        if cls.__module__.startswith("transformers"):
            break
        docs = {**documented_fields(cls), **docs}  # a subclass documents its own fields first
    init = inspect.signature(config_cls.__init__).parameters
    defaults = {name: p.default for name, p in init.items() if p.default is not inspect.Parameter.empty}
    return ([f"model keys (model_type {model_type}: {config_cls.__name__}):"]
            + _key_lines("model", model_config_keys(model_type), docs, defaults))


def config_help(data_cls=None, training_cls=None, config_path: Optional[str] = None,
                model_type: Optional[str] = None, default_model_type: Optional[str] = None) -> str:
    """The config keys a recipe accepts, with their type, default and meaning, read from the config
    classes' docstrings (:func:`documented_fields`); the ``--help`` epilog of :func:`parse_recipe_args`."""
    data_cls = data_cls or PretrainDataConfig
    training_cls = training_cls or TrainingConfig
    shortcuts = ", ".join(f"--{name} = --{section}.{key}" for name, (section, key) in SHORTCUTS.items())
    lines = [
        *textwrap.wrap("Config keys: set in the --config YAML file under their section, and overridden on the command "
                       f"line as --section.key VALUE (parsed as YAML). Shortcuts: {shortcuts}.", width=100),
        "",
        *_model_help(config_path, model_type, default_model_type),
        "",
        *_dataclass_help("data", data_cls),
        "",
        *_dataclass_help("training", training_cls),
    ]
    return "\n".join(lines)


def parse_recipe_args(argv: Optional[list[str]] = None, description: str = "", extra=None, data_cls=None,
                      model_type: Optional[str] = None):
    """The command line every training recipe shares.

    ``--config PATH --output_dir DIR [--resume] [--max_steps N --save_steps N --seed S --data SPEC]
    [--section.key value ...]`` → ``(args, overrides)`` where ``args`` holds ``config``, ``output_dir``,
    ``resume`` (plus what ``extra(parser)`` adds) and ``overrides`` the ``{(section, key): value}`` dict.

    ``--help`` lists every config key with its type, default and meaning (:func:`config_help`): the
    ``data`` keys of ``data_cls`` (default :class:`PretrainDataConfig`; the CTC recipe passes
    ``CTCDataConfig``), the ``training`` keys, and the ``model`` keys of the model type the ``--config``
    file names (or ``model_type``, for recipes whose configs name none).
    """
    import argparse
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    # The --config file decides which model keys --help lists, so find it before building the parser.
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    early.add_argument("--config")
    early.add_argument("--model_type")
    try:
        known, _ = early.parse_known_args(argv)
    except argparse.ArgumentError:  # e.g. --config without a value: the full parser below says so
        known = argparse.Namespace(config=None, model_type=None)
    parser = argparse.ArgumentParser(
        description=description,
        epilog=config_help(data_cls, TrainingConfig, known.config, known.model_type, model_type),
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the epilog's lines as written
    )
    parser.add_argument("--config", required=True, help="YAML config (sections model_type, model, data, training)")
    parser.add_argument("--output_dir", required=True, help="run folder: checkpoints/, logs/, metrics.jsonl, final/")
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in output_dir")
    parser.add_argument("--max_steps", help="shortcut for --training.max_steps")
    parser.add_argument("--save_steps", help="shortcut for --training.save_steps")
    parser.add_argument("--seed", help="shortcut for --training.seed")
    parser.add_argument("--data", help="shortcut for --data.spec (builtin:PATH, librispeech:PATH, hf:NAME)")
    parser.add_argument("--strict", action="store_true", help="stop at the first undecodable example (--training.strict true)")
    if extra is not None:
        extra(parser)
    args, rest = parser.parse_known_args(argv)
    shortcut_args = []
    for name in SHORTCUTS:
        value = getattr(args, name)
        if value is not None:
            shortcut_args += [f"--{name}", value]
    overrides = parse_overrides(shortcut_args + rest)
    if args.strict:
        overrides[("training", "strict")] = True
    return args, overrides
