"""Project-wide conventions: no reaching into libraries' private attributes, and a machine without the
speech synthesisers (a non-root `make test`) runs every test that does not need them and skips the rest
with the reason."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYNTH_TEST_FILES = ["tests/test_builtin_corpus.py", "tests/test_finetune_ctc.py"]


def _private_accesses(path: Path) -> list[str]:
    """``obj._name`` (not dunder) where ``obj`` is not ``self`` / ``cls`` / ``super()``, and
    ``getattr(obj, "_name")``: reads of another object's private state."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                continue  # overriding a hook of the parent class (e.g. transformers' _init_weights)
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and str(node.args[1].value).startswith("_") and not str(node.args[1].value).startswith("__")):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    return found


def test_no_private_attributes_of_other_objects_are_read():
    found = [hit for path in sorted((ROOT / "repr_asr").rglob("*.py")) for hit in _private_accesses(path)]
    found += [hit for path in sorted((ROOT / "recipes").glob("*.py")) for hit in _private_accesses(path)]
    assert not found, "private attributes read (use the library's public API):\n" + "\n".join(found)


def _imports_of_package(path: Path, package: str, root: Path = ROOT) -> list[str]:
    """``import PACKAGE`` / ``from PACKAGE import ...`` in ``path``, written absolutely or relatively
    (``from ... import X`` climbing up to it): what makes a subpackage depend on its parent's ``__init__``."""
    here = list(path.relative_to(root).parent.parts)  # the package the file belongs to
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [f"{path.relative_to(root)}:{node.lineno}: import {a.name}" for a in node.names if a.name == package]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else []))
            if target == package:
                found.append(f"{path.relative_to(root)}:{node.lineno}: from {'.' * node.level}{node.module or ''} import ...")
    return found


def test_models_never_import_the_top_level_package(tmp_path):
    # The detector itself: each spelling of the upward import is caught, imports of sibling modules are not.
    sample = tmp_path / "repr_asr" / "models" / "x" / "m.py"
    sample.parent.mkdir(parents=True)
    sample.write_text("import repr_asr\nfrom repr_asr import MODEL_TYPES\nfrom ... import MODEL_TYPES\n"
                      "def f():\n    import repr_asr\n"
                      "from ...audio import load_audio\nfrom ..upstream import UpstreamMixin\nimport repr_asr.audio\n")
    assert [hit.rsplit(":", 1)[0] for hit in _imports_of_package(sample, "repr_asr", tmp_path)] == [
        "repr_asr/models/x/m.py:1", "repr_asr/models/x/m.py:2", "repr_asr/models/x/m.py:3", "repr_asr/models/x/m.py:5"]

    # models/ sits below the package: registration (models/auto.py) and loading (models/loading.py) live in it,
    # and `import repr_asr` imports it, never the other way round.
    found = [hit for path in sorted((ROOT / "repr_asr" / "models").rglob("*.py")) for hit in _imports_of_package(path, "repr_asr")]
    assert not found, "modules under repr_asr/models/ import the top-level package:\n" + "\n".join(found)


def _pytest(*args: str, env: dict) -> subprocess.Popen:
    """A nested pytest, started in the background (``_finished`` waits for it): the three below are independent
    and the suite runs one test at a time, so they share the cores."""
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_without_synthesisers_their_tests_skip_with_the_reason_and_the_others_run(tmp_path):
    # A machine without Festival: nothing on PATH but the virtual environment, no Festival dictionaries.
    bare = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    bare.update(PATH=str(Path(sys.executable).parent), REPR_ASR_FESTIVAL_DICTS=str(tmp_path / "no_dicts"),
                OMP_NUM_THREADS="1", REPR_ASR_CACHE=str(tmp_path / "cache"))
    # Which tests need them, as marked (directly or through the `synthesiser` fixture) on this machine; what runs
    # of them on the bare machine; and the corpus tests that need no synthesiser there.
    listing = _pytest("--collect-only", "-m", "needs_synthesiser", *SYNTH_TEST_FILES, env=dict(os.environ))
    synthesising = _pytest("-rs", "-m", "needs_synthesiser", *SYNTH_TEST_FILES, env=bare)
    not_synthesising = _pytest("-rs", "-m", "not needs_synthesiser", "tests/test_builtin_corpus.py", env=bare)

    listed = _finished(listing)
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-3000:]
    needing = [line for line in listed.stdout.splitlines() if "::" in line]
    assert any("test_two_process_recipe" in t for t in needing)  # marked through corpus_dir -> synthesiser
    assert any("test_layout_and_speakers_file" in t for t in needing)

    run = _finished(synthesising)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert re.search(rf"\b{len(needing)} skipped\b", out), out[-3000:]
    assert not re.search(r"\b\d+ (passed|failed|errors?)\b", out), out[-3000:]
    assert "needs the speech synthesisers, missing: the `festival` command" in out
    assert "festlex-poslex" in out  # the missing dictionaries are named too

    others = _finished(not_synthesising)
    out = others.stdout + others.stderr
    assert others.returncode == 0 and re.search(r"\b\d+ passed\b", out) and "skipped" not in out, out[-3000:]


def test_system_deps_script_goes_on_when_it_cannot_install(tmp_path):
    # A non-root user on a machine without the packages: `id -u` says 1000 and dpkg knows none of them.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bin_dir / "dpkg").write_text("#!/bin/sh\nexit 1\n")
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(ROOT / "scripts" / "install_system_deps.sh")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr  # `make install` / `make test` go on
    assert re.search(r"sudo apt-get install .*festival", run.stderr) and "libespeak-ng1" in run.stderr


def test_the_readme_counts_the_tests_there_are(request):
    """The README's figure for the suite ("| tests | N tests, ...") is this suite's size: checked whenever the
    whole suite runs (`make test`, CI), so a figure that went stale fails where the count changed."""
    from conftest import SUITE_SIZE

    size = request.config.stash.get(SUITE_SIZE, None)
    if size is None:
        pytest.skip("only part of the suite was selected: its size is checked when all of it runs")
    figure = re.search(r"^\| tests \| (\d+) tests\b", (ROOT / "README.md").read_text(), re.MULTILINE)
    assert figure, "README.md: its headline table has no '| tests | N tests ...' row"
    assert int(figure.group(1)) == size, f"README.md says {figure.group(1)} tests; the suite has {size}: update the row"
