"""Fixtures shared by several test files.

Tests that synthesise speech (the built-in corpus: Festival, its dictionaries, espeak-ng) either carry
``@pytest.mark.needs_synthesiser`` or use a fixture that requests the ``synthesiser`` fixture (a corpus
built with ``repr_asr.data.builtin.build_corpus``). Where the synthesisers are missing (a machine where
``scripts/install_system_deps.sh`` could not install them, e.g. as a non-root user) both are skipped
with the reason, before any fixture runs, and every other test runs. ``pytest -m "not needs_synthesiser"``
selects the others.
"""

import ctypes
import ctypes.util
import functools
import os
import shutil

import pytest
import torch

INSTALL_HINT = "scripts/install_system_deps.sh, as root, installs them"


@functools.lru_cache(maxsize=None)
def synthesiser_missing() -> str:
    """What the built-in corpus's synthesis needs and this machine lacks, in words ("" when nothing)."""
    from repr_asr.data.synthesis.text import CMUDICT, FESTIVAL_DICTS, POSLEX

    missing = []
    if shutil.which("festival") is None:
        missing.append("the `festival` command (Debian package festival)")
    for name, package in ((POSLEX, "festlex-poslex"), (CMUDICT, "festlex-cmu")):
        if not os.path.isfile(os.path.join(FESTIVAL_DICTS, name)):
            missing.append(f"{os.path.join(FESTIVAL_DICTS, name)} (Debian package {package})")
    try:  # loaded the way repr_asr.data.synthesis.voices loads it
        ctypes.CDLL(ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")
    except OSError:
        missing.append("libespeak-ng (Debian package libespeak-ng1)")
    return "; ".join(missing)


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_synthesiser: synthesises speech (Festival, espeak-ng); skipped without them")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker, so `-m needs_synthesiser` sees these
def pytest_collection_modifyitems(config, items):
    for item in items:
        # item.fixturenames holds every fixture the test uses, directly or through other fixtures.
        if "synthesiser" in item.fixturenames and not item.get_closest_marker("needs_synthesiser"):
            item.add_marker(pytest.mark.needs_synthesiser)
        # Checked only when a collected test needs them (it imports repr_asr).
        if item.get_closest_marker("needs_synthesiser") and synthesiser_missing():
            reason = f"needs the speech synthesisers, missing: {synthesiser_missing()} ({INSTALL_HINT})"
            item.add_marker(pytest.mark.skip(reason=reason))


# The whole suite's size, for the README's figure (test_conventions.py): None when only part of it was selected.
SUITE_SIZE = pytest.StashKey()


def pytest_collection_finish(session):
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    every_file = {os.path.join(tests_dir, f) for f in os.listdir(tests_dir) if f.startswith("test_") and f.endswith(".py")}
    collected = {str(item.path) for item in session.items}
    option = session.config.option
    whole = (collected == every_file and not option.keyword and not option.markexpr
             and not any("::" in arg for arg in session.config.args))
    session.config.stash[SUITE_SIZE] = len(session.items) if whole else None


@pytest.fixture(scope="session")
def synthesiser():
    """Request it from any fixture that synthesises speech: its tests are then marked needs_synthesiser."""
    missing = synthesiser_missing()
    if missing:  # reached only when a test bypasses the collection hook (e.g. a fixture requested dynamically)
        pytest.skip(f"needs the speech synthesisers, missing: {missing} ({INSTALL_HINT})")


@pytest.fixture(scope="session")
def labeled_corpus_dir(synthesiser, tmp_path_factory):
    """The smallest built-in corpus with a real train-10min (0.25 h, seed 5: its pool holds a little over 10
    minutes), synthesised once per session (about 15 s) for every module that needs one: read it, never write
    into it (copy it first, as the study's and the damaged-corpus tests do)."""
    from repr_asr.data.builtin import build_corpus

    root = tmp_path_factory.mktemp("labeled_corpus") / "builtin"
    build_corpus(root, hours=0.25, seed=5, num_workers=2, progress=False)
    return root


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread avoids thread spin on a shared, busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
