"""The keyed result cache: a result is saved with the key it was computed under, and is done only for that key.

A key is a JSON-able dict of what a result depends on besides its own arguments (corpus, scale, config
and its SHA-256, step budget, the upstream's own key...). ``save`` writes it into the result under
``"study"``; ``done`` compares it, so a result made with other settings is redone, and results committed
to git (``docs/study/``) count as done in a fresh clone.
"""

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable, Optional


def file_sha256(path) -> str:
    """The SHA-256 of a file: results depend on what a config says, not only on its name."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def done(path: Path, key: dict, say: Callable[[str], None] = print) -> bool:
    """Whether ``path`` holds a result made under ``key``; when it holds one made under another key, ``say``
    names the fields that differ (it is then redone)."""
    if not path.exists():
        return False
    recorded = json.loads(path.read_text()).get("study") or {}
    if recorded != key:
        changed = sorted(k for k in set(key) | set(recorded) if key.get(k) != recorded.get(k))
        say(f"{path}: made with other settings ({', '.join(changed)}), redoing it")
        return False
    return True


def save(path: Path, results: dict, key: dict) -> None:
    """Write ``results`` to ``path`` (JSON) with ``key`` under ``"study"``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**results, "study": key}, indent=1) + "\n")


def run_has_key(run: Path, key: dict) -> bool:
    """Whether the run folder ``run`` was (last) started under ``key``."""
    marker = run / "study_key.json"
    return marker.exists() and json.loads(marker.read_text()) == key


def fresh_or_resumable(run: Path, key: dict) -> None:
    """Keep the run folder ``run`` only when it holds checkpoints of a run with this very ``key`` (then the
    run resumes); otherwise start it afresh. The key is kept in ``run/study_key.json``."""
    if run.exists() and not ((run / "checkpoints").is_dir() and run_has_key(run, key)):
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    (run / "study_key.json").write_text(json.dumps(key))


def upstream_key(upstream: str) -> Optional[dict]:
    """The key an exported upstream was pretrained under (``UPSTREAM/results.json``), standing for its weights
    in the keys of the results computed from it; None for a baseline or an upstream not pretrained here."""
    path = Path(upstream) / "results.json"
    return json.loads(path.read_text()).get("study") if path.exists() else None
