"""One CTC run of a study (``recipes/finetune_ctc.py``): what it is, where it goes, the key its result is kept under."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .results import file_sha256, upstream_key


@dataclass(frozen=True)
class CtcRun:
    """A frozen or fine-tuned CTC run on one representation, labeled subset and seed.

    Args:
        kind (`str`): the results folder: ``ctc`` (frozen, characters), ``ctc_phone``, ``ctc_mix``, ``finetune``.
        name (`str`): the representation's name in the study.
        upstream (`str`): its ``--upstream`` argument (a baseline's name or a checkpoint folder).
        subset (`str`): the labeled subset (``10min``, ``1h``, ``10h``).
        seed (`int`): the run's seed.
        config (`str`): the CTC config file.
        max_steps (`int`): the step budget (already scaled).
        training (`dict`, defaults to `None`): overrides of the config's ``training`` section.
        unit (`str`, defaults to `"char"`): the ``--tokenizer`` (``char`` or ``phone``).
        model (`dict`, defaults to `None`): overrides of the config's ``model`` section (e.g. ``weighted_sum``).
        init_from (`CtcRun`, defaults to `None`): the (frozen) CTC run whose ``final/`` this one starts from; its key
            is part of this one's.
    """

    kind: str
    name: str
    upstream: str
    subset: str
    seed: int
    config: str
    max_steps: int
    training: Optional[dict] = None
    unit: str = "char"
    model: Optional[dict] = None
    init_from: Optional["CtcRun"] = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name} train-{self.subset} seed {self.seed}"

    @property
    def folder(self) -> Path:
        """Where the run goes, relative to the study's output and results folders."""
        return Path(self.kind) / self.name / self.subset / f"seed{self.seed}"

    @property
    def log_name(self) -> str:
        return f"{self.kind}-{self.name}-{self.subset}-seed{self.seed}.log"

    def key(self, base: dict) -> dict:
        """The result's key: ``base`` (the study's corpus and scale) and every setting the result depends on, the
        upstream's own key standing for its weights. The settings left at their defaults are not named, so that the
        keys of results made before those settings existed stay valid (character runs' keys name no unit)."""
        return {**base, "config": self.config, "config_sha256": file_sha256(self.config), "max_steps": self.max_steps,
                "upstream_key": upstream_key(self.upstream), **({"training": self.training} if self.training else {}),
                **({"init": self.init_from.key(base)} if self.init_from else {}), **({"unit": self.unit} if self.unit != "char" else {}),
                **({"model": self.model} if self.model else {})}

    def arguments(self, data: str, cache_dir: Path, init_from: Optional[Path] = None) -> list:
        """``recipes/finetune_ctc.py``'s arguments, but ``--output_dir`` and ``--resume`` (``init_from``: the
        folder of :attr:`init_from`'s ``final/``)."""
        return ["--config", self.config, "--upstream", self.upstream, "--subset", self.subset, "--seed", self.seed, "--data", data,
                "--max_steps", self.max_steps, "--data.cache_dir", cache_dir, "--tokenizer", self.unit,
                *(["--init_from", init_from] if init_from else []), *[f"--training.{k}={v}" for k, v in (self.training or {}).items()],
                *[f"--model.{k}={json.dumps(v)}" for k, v in (self.model or {}).items()]]
