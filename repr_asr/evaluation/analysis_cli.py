"""The command line the analysis recipes share (``abx``, ``probe``, ``codes``, ``resynthesize``, ``speaker_id``).

Each analysis reads an upstream's frozen features of one split of a corpus and writes ``DIR/results.json``.
:func:`analysis_parser` adds the arguments they all take (``--upstream``, ``--data``, ``--output_dir``,
``--split``, ``--device``, and where the analysis reads cached features ``--cache_dir``; where it compares
probe points, ``--probe_points``), then a settings dataclass's fields as options of their own (e.g.
``ProbeConfig``'s ``--hidden_size``), each with its documented meaning as help.

:func:`run_analysis_recipe` runs one: it holds the output folder (:mod:`repr_asr.run_lock`: a second analysis
writing the same folder stops at once, naming the holder, instead of interleaving its items, features and
results with the first), logs at INFO and writes ``results.json`` atomically.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import fields
from typing import Callable, Optional

from ..run_lock import run_folder_lock
from .report import write_results

DATA_HELP = "builtin:PATH, librispeech:PATH or hf:NAME_OR_PATH (default: %(default)s, the built-in corpus)"


def analysis_parser(doc: str, *, upstream_help: str = "fbank, mfcc, a save_pretrained folder or a transformers encoder",
                    split: Optional[str] = "dev", split_help: Optional[str] = None, probe_points: Optional[str] = None,
                    cache: bool = True, settings=None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the analysis recipes' shared arguments (the first line of ``doc`` is its
    description). ``probe_points``: the help of ``--probe_points`` (None: the analysis has no such choice);
    ``cache``: whether the analysis caches features (``--cache_dir``); ``settings``: a dataclass whose fields
    become options (booleans as ``--name`` / ``--no-name``)."""
    from ..training.config import documented_fields

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--upstream", required=True, help=upstream_help)
    parser.add_argument("--data", default="builtin:data/builtin", help=DATA_HELP)
    parser.add_argument("--output_dir", required=True, help="where results.json (and the analysis's files) go")
    parser.add_argument("--split", default=split, help=split_help or "the corpus split analysed (default: %(default)s)")
    if probe_points is not None:
        parser.add_argument("--probe_points", "--probe_point", dest="probe_points", nargs="+", default=None, help=probe_points)
    if cache:
        parser.add_argument("--cache_dir", default=None, help="feature cache (default: DIR/features)")
    parser.add_argument("--device", default=None, help="where the upstream runs (default: cpu)")
    if settings is not None:
        docs = documented_fields(settings)
        for field in fields(settings):
            meaning = (docs[field.name].meaning if field.name in docs else "").replace("%", "%%")
            if isinstance(field.default, bool):
                parser.add_argument(f"--{field.name}", action=argparse.BooleanOptionalAction, default=field.default, help=meaning)
            else:
                parser.add_argument(f"--{field.name}", type=type(field.default), default=field.default,
                                    help=f"{meaning} (default: %(default)s)")
    return parser


def settings_from(args: argparse.Namespace, settings):
    """The ``settings`` dataclass filled from the parsed options :func:`analysis_parser` added for it."""
    return settings(**{field.name: getattr(args, field.name) for field in fields(settings)})


def cache_dir(args: argparse.Namespace) -> str:
    """``--cache_dir``, or ``DIR/features`` inside the output folder."""
    return args.cache_dir or os.path.join(args.output_dir, "features")


def run_analysis_recipe(args: argparse.Namespace, analyse: Callable[[], dict]) -> dict:
    """Hold ``args.output_dir``, run ``analyse()`` (which returns the ``results.json`` dictionary), write it and
    return it."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with run_folder_lock(args.output_dir):  # creates the folder (and removes it again when refused)
        results = analyse()
        write_results(args.output_dir, results)
    return results
