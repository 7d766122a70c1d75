"""The errors a user's input causes, and how every recipe reports them: one line, a non-zero exit, no traceback.

A wrong command line, config file, corpus, transcript, alignment, audio file (with ``--strict``), LM or
lexicon file, upstream, or a run folder that another process holds is not a bug of this toolkit: the
recipe says what is wrong in one line, ``RECIPE: error: MESSAGE``, and exits with status 1. Anything else
(a bug) keeps its traceback. Every recipe's ``__main__`` guard is ``run_recipe(main)``.

:data:`USER_ERRORS` lists the classes; each message names the file, key or folder at fault.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional

from .audio import AudioError
from .data.builtin import CorpusExistsError
from .data.librispeech import CorpusError  # BadAudioError, MissingSplitError
from .data.phones import AlignmentError
from .evaluation.abx import ItemFileError
from .evaluation.feature_export import ExportFolderError
from .evaluation.ngram import LMFileError
from .models.foreign import UpstreamError
from .run_lock import RunFolderInUseError
from .tokenization import TranscriptError
from .training.checkpoint import CheckpointError
from .training.config import ConfigError
from .training.trainer import NonFiniteError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,  # config files and command-line overrides
    CheckpointError,  # a run folder holding checkpoints without --resume, or none that verifies
    RunFolderInUseError,  # a run folder another process is writing
    NonFiniteError,  # training diverged: lower the learning rate or check the data, then --resume
    CorpusError,  # corpus layout, text files, splits, bad audio found by verify
    CorpusExistsError,  # make_corpus into a folder that holds another corpus
    TranscriptError,  # transcripts a tokenizer cannot encode
    AlignmentError,  # phone alignment files
    AudioError,  # undecodable audio with --strict
    LMFileError,  # LM, LM text and lexicon files
    ItemFileError,  # ABX item files
    ExportFolderError,  # a feature export into a folder another export wrote
    UpstreamError,  # --upstream that is not a usable upstream
)


def run_recipe(main: Callable[[], Optional[int]], prog: Optional[str] = None) -> None:
    """Run a recipe's ``main()``: a :data:`USER_ERRORS` error prints ``PROG: error: MESSAGE`` and exits with
    status 1, without a traceback; an integer ``main()`` returns is the exit status."""
    prog = prog or os.path.basename(sys.argv[0])
    try:
        status = main()
    except USER_ERRORS as error:
        sys.exit(f"{prog}: error: {error}")
    if isinstance(status, int):
        sys.exit(status)
