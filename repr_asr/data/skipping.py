"""Undecodable examples in a long job: skipped, named and counted, never a crash deep in a step.

A training dataset's ``__getitem__`` that cannot decode its example returns :func:`skipped_item`
instead of raising (unless it was built ``strict``); its collator passes the items through
:func:`split_skipped`, which drops the markers and lists them under the batch key ``"skipped"``
(:data:`SKIPPED_KEY`; ``[{"id", "error"}, ...]``, the error naming the utterance and its file). The key is
present only when some item was skipped; a batch whose every item was skipped is just
``{"skipped": [...]}``, with no tensors (the Trainer must record the skips and run no forward pass on it).
The ``Trainer`` removes that key before the forward pass, names every skipped example once in the
log, counts them in ``metrics.jsonl`` (``skipped_examples``) and in its final metrics, and writes
their ids and errors to ``DIR/skipped_examples.txt``.

Markers travel inside the batch because DataLoader workers are separate processes: a counter in
the dataset would stay in the worker.
"""

from __future__ import annotations

SKIPPED_KEY = "skipped"
_MARKER = "__skipped__"


def skipped_item(example_id: str, error: BaseException | str) -> dict:
    """The item a dataset returns for an example it cannot read (``error`` says why)."""
    return {_MARKER: True, "id": str(example_id), "error": str(error)}


def is_skipped(item) -> bool:
    return isinstance(item, dict) and item.get(_MARKER, False) is True


def split_skipped(items: list) -> tuple[list, list[dict]]:
    """``items`` → (the usable items, ``[{"id", "error"}, ...]`` for the skipped ones)."""
    kept, skipped = [], []
    for item in items:
        if is_skipped(item):
            skipped.append({"id": item["id"], "error": item["error"]})
        else:
            kept.append(item)
    return kept, skipped
