"""A CTC run's records say what ran, and its evaluation never loses a finished training (issue 26).

- ``--init_from`` a run over another upstream is refused by name (results.json would name an upstream the
  model does not hold), and a tokenizer that differs is described token by token;
- ``--resume`` with a changed setting names each change (old -> new) and records it in results.json;
- a dev / test transcript that normalises to nothing (only symbols) is named, skipped and counted instead of
  failing the scoring after training.

Tiny: the tone corpus as an hf: corpus, random masked-reconstruction upstreams, a few steps.
"""

import json
import logging
import shutil

import pytest

from repr_asr.training import ConfigError
from test_foreign_upstreams import _cache, run_ctc  # noqa: F401  (_cache: the module's autouse cache folder)
from test_streaming import save_tiny_upstream
from tone_corpus import build_tone_corpus, save_labeled_tone_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

# One validation (dev) and one test transcript of symbols only: nothing is left of them once normalised.
SYMBOLS_ONLY = {"102-1-0001": "--", "202-1-0001": "?!"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tones = tmp_path_factory.mktemp("tones")
    build_tone_corpus(tones)
    return save_labeled_tone_corpus(tones, tmp_path_factory.mktemp("hf") / "tones", texts=SYMBOLS_ONLY)


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory):
    root = tmp_path_factory.mktemp("upstreams")
    return str(save_tiny_upstream(root / "a", 0)), str(save_tiny_upstream(root / "b", 1))


@pytest.fixture(scope="module")
def frozen(corpus, upstreams, tmp_path_factory):
    """A frozen run over upstream a, 3 steps, a checkpoint at its end."""
    out = tmp_path_factory.mktemp("frozen")
    return out, run_ctc(corpus, upstreams[0], out, 3)


def test_transcripts_of_symbols_only_are_skipped_named_and_counted(frozen):
    out, results = frozen
    for split, utterance in (("dev", "102-1-0001"), ("test", "202-1-0001")):
        assert [s["id"] for s in results["skipped"][split]] == [utterance], split
        assert "normalises to nothing" in results["skipped"][split][0]["error"]
        assert results["metrics"][split]["utterances"] == 1 and results["metrics"][split]["skipped"] == 1
    hypotheses = json.loads((out / "hypotheses.json").read_text())
    assert [h["id"] for h in hypotheses["dev"]] == ["101-1-0001"]
    assert json.loads((out / "results.json").read_text())["skipped"] == results["skipped"]


def test_init_from_a_run_over_another_upstream_is_refused_by_name(corpus, upstreams, frozen, tmp_path):
    out, _ = frozen
    a, b = upstreams
    with pytest.raises(ConfigError) as error:
        run_ctc(corpus, b, tmp_path / "other", 1, init_from=out / "final")
    message = str(error.value)
    assert f"init_from {out / 'final'}" in message and f"--upstream {b!r}" in message
    assert f"trained over {a!r}" in message and "upstream tensors differ" in message
    assert not (tmp_path / "other" / "results.json").exists()
    # The same upstream is accepted, and results.json names both the upstream and where the run started.
    started = run_ctc(corpus, a, tmp_path / "same", 1, init_from=out / "final")
    assert started["upstream"] == a and started["init_from"] == str(out / "final")


def test_init_from_names_the_tokens_that_differ(upstreams, frozen, tmp_path):
    from repr_asr.models import load_upstream
    from repr_asr.models.upstream_ctc import UpstreamForCTC
    from repr_asr.tokenization import build_char_tokenizer
    from repr_asr.downstream.ctc import initialise_from

    out, _ = frozen
    tokenizer = build_char_tokenizer(["HELP"], str(tmp_path / "tokenizer"))  # the run's: HELLO (E H L O)
    model = UpstreamForCTC.from_upstream(load_upstream(upstreams[0]), vocab_size=len(tokenizer),
                                         pad_token_id=tokenizer.pad_token_id, head_hidden_size=16)
    with pytest.raises(ConfigError, match=r"tokenizer differs.*tokens only there: 'O'; tokens only here: 'P'"):
        initialise_from(model, out / "final", tokenizer, upstreams[0])


def test_resume_with_changed_settings_names_and_records_them(corpus, upstreams, frozen, tmp_path, caplog):
    out, _ = frozen
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    from repr_asr.downstream.ctc import load_ctc_config, run_finetune_ctc

    saved = load_ctc_config(str(resumed / "config.yaml"), {})
    changed = {("training", "max_steps"): 4, ("training", "seed"): 1, ("training", "learning_rate"): 0.02}
    run = load_ctc_config(str(resumed / "config.yaml"), changed)
    with caplog.at_level(logging.WARNING):
        results = run_finetune_ctc(run, upstreams[0], str(resumed), resume=True)
    expected = [f"training.learning_rate: {saved.training.learning_rate!r} -> 0.02", "training.seed: 0 -> 1"]
    assert results["resumed_with_changes"] == expected  # max_steps may change on resume: not listed
    assert json.loads((resumed / "results.json").read_text())["resumed_with_changes"] == expected
    warning = next(r.getMessage() for r in caplog.records if "resuming with a config that differs" in r.getMessage())
    assert all(change in warning for change in expected)
    assert results["steps_run"] == 4
