"""The shared training loop (Accelerate), its configuration, checkpoints, and the pretraining entry point."""

from .checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, prepare_output_dir, verify_checkpoint
from .config import (
    ConfigError,
    PretrainDataConfig,
    RunConfig,
    TrainingConfig,
    load_config,
    parse_overrides,
    parse_recipe_args,
)
from .pretrain import pretraining_forward, run_pretraining
from .trainer import Trainer, build_scheduler

__all__ = [
    "CheckpointError",
    "ConfigError",
    "PretrainDataConfig",
    "RunConfig",
    "Trainer",
    "TrainingConfig",
    "build_scheduler",
    "latest_checkpoint",
    "list_checkpoints",
    "load_config",
    "parse_overrides",
    "parse_recipe_args",
    "prepare_output_dir",
    "pretraining_forward",
    "run_pretraining",
    "verify_checkpoint",
]
