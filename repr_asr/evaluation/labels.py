"""What a result table calls a row: a representation's name as a reader knows it, and a run's settings in words.

:func:`representation_name` is the one place that names an upstream for a table (``report.html``,
``comparison.md``, the study's ``README.md``): the study's name for it (``cpc``, ``hub-cpc`` for the
committed checkpoint) where the ``results.json`` lies in a study's results folder, else the upstream's
own name. :func:`setting_words` turns one flattened setting (``study.upstream_key.flops``) into what a
user would write (``3e13 FLOPs``); :func:`differing_words` picks the settings that tell rows apart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence, Union


UNITS = {"char": "characters", "phone": "phones", "sentencepiece": "sentencepiece units"}
MISSING = object()  # a setting one run records and another does not (written before the field existed)


def representation_name(results: dict, folder: Optional[Union[str, Path]] = None) -> str:
    """The name a reader knows a representation by.

    A ``results.json`` that ``recipes/study.py`` wrote (it holds a ``study`` record) lies where the study put
    it, under the study's name for the representation: ``ctc*/NAME/SUBSET/seedS/`` for CTC runs,
    ``TASK/NAME/`` for analyses, ``HUB_DIR/NAME/`` for pretraining. That name is the one the study's tables
    use (``hub-cpc`` is the committed ``hub/cpc``, ``cpc`` the one pretrained here, though both upstreams
    call themselves ``cpc``). Any other result is named by its upstream (``upstream_name``, else
    :func:`repr_asr.models.upstream_display_name` of ``upstream``), else by its run folder.

    Args:
        results (`dict`): the run's ``results.json``.
        folder (`str` or `Path`, *optional*): the folder holding that ``results.json``.
    """
    if folder is not None and isinstance(results.get("study"), dict):
        folder = Path(folder)
        if results.get("task", "ctc") != "ctc":
            return folder.name
        if re.fullmatch(r"seed\d+", folder.name) and folder.parent.name == str(results.get("subset")):
            return folder.parent.parent.name
    if results.get("upstream_name"):
        return str(results["upstream_name"])
    if results.get("upstream"):  # written before results recorded the name: the rule that names it now
        from ..models import upstream_display_name

        return upstream_display_name(str(results["upstream"]), results.get("model_type"))
    return Path(folder).name if folder is not None else "?"


def number(value) -> str:
    """``3e13``, ``1.26e13``, ``0.0003``, ``4``: as short as the value allows, without ``e+``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e6:  # counts and hours: 2400 steps, 4 h
        return str(int(value))
    text = f"{value:.3g}"
    return text.replace("e+", "e").replace("e0", "e") if "e" in text else text


def _value(value) -> str:
    if value is MISSING or value is None:
        return "not recorded"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, dict)):
        return ", ".join(map(str, value)) if isinstance(value, list) else ", ".join(f"{k} {v}" for k, v in value.items())
    return number(value)


def _stem(value) -> str:
    return Path(str(value)).stem if value not in (MISSING, None) else "not recorded"


def _unit(value) -> str:
    return UNITS.get(value, str(value)) if value not in (MISSING, None) else "units not recorded"


def _words_of(name: str) -> str:
    return name.replace("_", " ")


def setting_words(key: str, value, context: int = 1) -> str:
    """One setting in a reader's words: ``("study.corpus.hours", 4.0)`` → ``corpus 4 h``,
    ``("study.upstream_key.flops", 3e13)`` → ``3e13 FLOPs``, ``("config.training.learning_rate", 3e-4)`` →
    ``learning rate 0.0003``. A key it does not know is said by its last ``context`` parts, underscores as
    spaces (the caller asks for more where two shown keys end alike).

    Args:
        key (`str`): the flattened key (``report.run_settings``), ``config.`` and ``study.`` parts included.
        value: its value; :data:`MISSING` where the run does not record it.
        context (`int`, defaults to 1): how many trailing parts of an unknown key to say.
    """
    upstream = key.startswith("study.upstream_key.")
    tail = key.removeprefix("study.upstream_key.") if upstream else key.removeprefix("study.").removeprefix("config.")
    pre = "pretraining " if upstream else ""
    if tail == "corpus.hours":
        return f"{pre}corpus {_value(value)} h"
    if tail == "corpus.seed":
        return f"{pre}corpus seed {_value(value)}"
    if tail == "flops":
        return f"{_value(value)} FLOPs"
    if tail == "scale":
        return f"{pre}scale {_value(value)}"
    if tail in ("config", "config_name"):
        return f"{'pretrained with ' if upstream else ''}{_stem(value)} config"
    if tail.endswith("config_sha256"):
        return f"{pre}config version {str(value)[:7]}" if value not in (MISSING, None) else f"{pre}config version not recorded"
    if tail in ("tokenizer", "unit", "data.tokenizer"):
        return _unit(value)
    if tail in ("steps", "max_steps", "training.max_steps"):
        return f"{_value(value)} steps"
    if tail == "data" or tail == "data.spec":
        return f"corpus {str(value).partition(':')[2] or value}" if value not in (MISSING, None) else "corpus not recorded"
    if tail == "metric_for_best_model":
        return f"kept at best dev {str(value).removeprefix('eval_').upper()}" if value not in (MISSING, None) else "kept at last step"
    if tail == "init_from":
        return "started from a trained CTC head" if value not in (MISSING, None, False) else "started afresh"
    if tail == "upstream":
        return f"upstream {value}"
    if tail == "decoding.beam_search":
        return "beam search with LM" if value is True else "greedy decoding"
    if tail.startswith("overrides."):  # a pretraining override: say the overridden key itself
        tail = tail.removeprefix("overrides.")
    parts = [p for p in tail.split(".") if p not in ("model", "training", "data")] or tail.split(".")
    return f"{pre}{' '.join(_words_of(p) for p in parts[-context:])} {_value(value)}"


def differing_words(settings: Sequence[dict], hidden: frozenset = frozenset(), aliases: Optional[dict] = None) -> list[list[str]]:
    """For rows given by their flattened settings, the words that tell each row apart from the others.

    Only keys whose values differ between the rows are said; a key in ``hidden`` never (what the row's
    name already shows), a key of ``aliases`` not where the key it repeats is said, a config hash not
    where its config's name is, and of several keys that say the same words on every row (``steps``,
    ``study.max_steps`` and ``config.training.max_steps``) only the first.

    Returns:
        `list[list[str]]`: per row (in the order given), the words of each differing setting.
    """
    aliases = aliases or {}
    # Top-level fields (units, corpus, upstream) first, then the study's record and the config.
    names = sorted({n for s in settings for n in s}, key=lambda n: ("." in n, n))
    differing = [n for n in names if len({repr(s.get(n, MISSING)) for s in settings}) > 1]
    shown = [n for n in differing if n not in hidden and aliases.get(n) not in differing
             and not (n.endswith("config_sha256") and n.removesuffix("_sha256") in differing)]
    # Keys that end alike ("dropout" of model and of training) are said with more of their path.
    last = [n.rsplit(".", 1)[-1] for n in shown]
    words = {n: [setting_words(n, s.get(n, MISSING), 2 if last.count(n.rsplit(".", 1)[-1]) > 1 else 1) for s in settings]
             for n in shown}
    kept, said = [], set()
    for n in shown:
        said_here = tuple(words[n])
        if said_here not in said:
            said.add(said_here)
            kept.append(n)
    return [[words[n][i] for n in kept] for i in range(len(settings))]
