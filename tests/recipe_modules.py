"""What several test files share about recipes and their records: loading ``recipes/NAME.py`` as a module
(recipes are scripts, not a package) and the shared ``results.json`` header every task writes."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_recipe(name: str):
    """``recipes/NAME.py`` as a module (call its ``main(argv)``)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_results_header(results: dict, kind: str) -> None:
    """``results`` starts with :func:`repr_asr.downstream.results_header`'s fields, in its order, for ``kind``,
    and they say what ran (a weights hash, the feature extractor's settings, the package versions)."""
    from repr_asr.downstream import results_header

    header = results_header(kind, results["upstream"])
    assert list(results)[: len(header)] == list(header), (kind, list(results)[: len(header)])
    assert results["task"] == results["kind"] == kind
    assert len(results["weights_sha256"]) == 64 and results["model_type"], kind
    assert results["feature_extractor"] and {"torch", "transformers", "python"} <= set(results["versions"]), kind
