"""Model cards (``final/README.md``) built with ``huggingface_hub``'s ``ModelCard`` / ``ModelCardData``, so a
hub page renders their metadata: library, tags, pipeline, and for a CTC recogniser a ``model-index`` with
its WER and CER per evaluation split (the dataset named the hub's way) over the upstream it was trained on.

Two steps, because the results come after the folder: the Trainer writes :func:`training_card` when it
saves ``final/`` (what ran: steps, batch, optimiser, processes, device, precision, the recipe's
``card_info``, the final training metrics, how to use the model); the CTC recipe then adds the decoded
results with :func:`add_ctc_results`, which rewrites the card's metadata and its "Evaluation" section.
An upstream the study pretrained (``hub/NAME``) gets the downstream scores the study measured over it
(CER and PER of frozen CTC per labeled subset, mean over seeds) as its ``model-index`` with
:func:`set_study_results`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TAGS = ["repr-asr", "speech", "representation-learning"]
CTC_TAGS = ["automatic-speech-recognition", "ctc"]
EVALUATION_HEADING = "## Evaluation"

# LibriSpeech's splits as the hub's dataset names them: (config, split).
LIBRISPEECH_SPLITS = {
    "dev": ("clean", "validation"), "test": ("clean", "test"),  # dev = dev-clean, test = test-clean (repr_asr.data)
    "dev-clean": ("clean", "validation"), "dev-other": ("other", "validation"),
    "test-clean": ("clean", "test"), "test-other": ("other", "test"),
}
LIBRISPEECH_HUB = "openslr/librispeech_asr"

FEATURE_USAGE = [
    "```python",
    "import repr_asr  # registers the model types",
    "from transformers import AutoFeatureExtractor, AutoModel",
    "model = AutoModel.from_pretrained(PATH)",
    "extractor = AutoFeatureExtractor.from_pretrained(PATH)",
    "inputs = extractor(waveform, sampling_rate=16000, return_tensors='pt')",
    "features = model(**inputs).last_hidden_state  # (batch, frames, dim)",
    "```",
]
CTC_USAGE = [
    "```python",
    "import repr_asr  # registers the model types",
    "from transformers import AutoModelForCTC, AutoProcessor, pipeline",
    "asr = pipeline('automatic-speech-recognition', model=PATH)",
    "asr('utterance.flac')['text']  # a file (decoded with FFmpeg) or a 16 kHz float array",
    "# or step by step:",
    "processor = AutoProcessor.from_pretrained(PATH)  # feature extractor + tokenizer",
    "model = AutoModelForCTC.from_pretrained(PATH)",
    "inputs = processor(waveform, sampling_rate=16000, return_tensors='pt')",
    "processor.batch_decode(model(**inputs).logits.argmax(-1))  # greedy CTC decoding",
    "```",
]


def is_ctc_model(model) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "upstream_ctc"


def _card(data: ModelCardData, body: str) -> ModelCard:
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}")


def training_card(model, metrics: dict, config, run_info: dict, card_info: dict) -> ModelCard:
    """The card of a folder the Trainer saves: ``config`` is its ``TrainingConfig``, ``run_info`` what really
    ran (``Trainer.run_info()``: processes, precision, device), ``card_info`` the recipe's ``{name: value}``
    lines and ``metrics`` the final training metrics."""
    ctc = is_ctc_model(model)
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    params = sum(p.numel() for p in model.parameters())
    data = ModelCardData(
        library_name="transformers",
        tags=TAGS + (CTC_TAGS if ctc else []),
        pipeline_tag="automatic-speech-recognition" if ctc else "feature-extraction",
    )
    processes = run_info["num_processes"]
    lines = [
        f"# {model_type} ({type(model).__name__})",
        "",
        f"Trained with repr-asr's shared training loop for {metrics.get('step', 0)} steps ({params:,} parameters).",
        "",
        "## Run",
        "",
    ]
    lines += [f"- **{key}**: `{value}`" for key, value in card_info.items()]
    c = config
    lines += [
        f"- **steps**: {c.max_steps}, batch size {c.batch_size} × {c.gradient_accumulation_steps} accumulation "
        f"× {processes} process(es)",
        f"- **optimiser**: AdamW, lr {c.learning_rate:g}, {c.warmup_steps} warm-up steps, {c.lr_schedule} decay, "
        f"weight decay {c.weight_decay:g}, clip {c.max_grad_norm:g}",
        f"- **seed**: {c.seed}; ran on {processes} process(es), device `{run_info['device']}`, "
        f"mixed precision `{run_info['mixed_precision']}`",
        "",
        "## Final metrics",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key in sorted(metrics):
        value = metrics[key]
        lines.append(f"| {key} | {value:.6g} |" if isinstance(value, float) else f"| {key} | {value} |")
    lines += ["", "## Use", "", *(CTC_USAGE if ctc else FEATURE_USAGE), ""]
    return _card(data, "\n".join(lines))


def dataset_identity(spec: str, split: str) -> dict:
    """How the hub names the dataset of ``spec`` and ``split``: ``{"type", "name", "config", "split"}``
    (``type`` is a hub dataset id where there is one: LibriSpeech, or an ``hf:`` hub name)."""
    kind, _, location = str(spec).partition(":")
    if kind == "librispeech":
        config, hub_split = LIBRISPEECH_SPLITS.get(split, (None, split))
        return {"type": LIBRISPEECH_HUB, "name": f"LibriSpeech ({split})", "config": config, "split": hub_split}
    if kind == "hf" and not os.path.exists(location):
        return {"type": location, "name": location, "config": None, "split": split}
    if kind == "builtin":
        return {"type": "repr-asr-builtin", "name": f"repr-asr built-in corpus ({split})", "config": None, "split": split}
    return {"type": os.path.basename(location.rstrip("/")) or kind, "name": f"{spec} ({split})", "config": None,
            "split": split}


METRIC_NAMES = {"wer": ("wer", "WER"), "cer": ("cer", "CER"), "per": ("per", "PER"),
                "wer_lm": ("wer", "WER with n-gram LM"), "cer_lm": ("cer", "CER with n-gram LM")}


def ctc_eval_results(results: dict) -> list[EvalResult]:
    """The ``model-index`` entries of a CTC run's ``results.json``: WER and CER (in percent; with an LM also
    the beam-search ones) for each evaluation split; training splits decoded for diagnosis are left out."""
    subset = results["subset"]
    task_name = f"CTC on {results['upstream_name']} features, {subset} of labels"
    out = []
    for split, values in results["metrics"].items():
        if split.startswith("train"):
            continue
        dataset = dataset_identity(results["data"], split)
        for key, (metric_type, label) in METRIC_NAMES.items():
            if key not in values:
                continue
            out.append(EvalResult(
                task_type="automatic-speech-recognition", task_name=task_name,
                dataset_type=dataset["type"], dataset_name=dataset["name"], dataset_config=dataset["config"],
                dataset_split=dataset["split"], dataset_args={"labeled_subset": f"train-{subset}"},
                metric_type=metric_type, metric_value=round(100 * float(values[key]), 2),
                metric_name=f"{split} {label} (%)",
            ))
    return out


def _evaluation_section(results: dict) -> str:
    lm = any("wer_lm" in m for m in results["metrics"].values())
    phones = results.get("tokenizer") == "phone"
    head = "| split | utterances | PER (%) |" if phones else "| split | utterances | WER (%) | CER (%) |"
    head += " WER, LM (%) | CER, LM (%) |" if lm else ""
    lines = [EVALUATION_HEADING, "",
             f"Upstream `{results['upstream']}` ({results['upstream_type']}, probe point `{results['probe_point']}`, "
             f"{'frozen' if results['frozen'] else 'fine-tuned'}), trained on `train-{results['subset']}` of "
             f"`{results['data']}`; the weights of step {results.get('best_step') or results.get('steps_run')}.",
             "", head, ("| --- | ---: | ---: |" if phones else "| --- | ---: | ---: | ---: |") + (" ---: | ---: |" if lm else "")]
    for split, m in results["metrics"].items():
        scores = f"{100 * m['per']:.2f}" if phones else f"{100 * m['wer']:.2f} | {100 * m['cer']:.2f}"
        row = f"| {split} | {m.get('utterances', '')} | {scores} |"
        if lm:
            row += f" {100 * m['wer_lm']:.2f} | {100 * m['cer_lm']:.2f} |" if "wer_lm" in m else " | |"
        lines.append(row)
    decoding = results.get("decoding") or {}
    if decoding.get("beam_search"):
        lines += ["", f"Beam search: `{decoding['lm_path']}` ({decoding['lm_format']}, {decoding['lm_unit']} LM), beam "
                      f"{decoding['beam_size']}, LM weight {decoding['lm_weight']:g}, word score {decoding['word_score']:g}."]
    return "\n".join(lines) + "\n"


def _without_section(text: str, heading: str) -> str:
    """``text`` without the section that starts at ``heading`` (up to the next ``## `` heading)."""
    start = text.find(heading + "\n")
    if start < 0:
        return text
    end = text.find("\n## ", start + len(heading))
    return text[:start] + (text[end + 1:] if end >= 0 else "")


def add_ctc_results(card_path: str | os.PathLike, results: dict, upstream_hub_id: Optional[str] = None) -> ModelCard:
    """Put a CTC run's decoded results (``results.json``'s dict) into the card at ``card_path``: the
    ``model-index`` and an "Evaluation" section before "Use" (replacing any from an earlier call)."""
    card = ModelCard.load(Path(card_path))
    card.data.model_name = f"{results['upstream_name']}-ctc-{results['subset']}"
    card.data.eval_results = ctc_eval_results(results)
    hub_datasets = sorted({r.dataset_type for r in card.data.eval_results if "/" in r.dataset_type})
    card.data.datasets = hub_datasets or None
    card.data.metrics = ["per"] if results.get("tokenizer") == "phone" else ["wer", "cer"]
    if upstream_hub_id:
        card.data.base_model = upstream_hub_id
    text = _without_section(card.text, EVALUATION_HEADING)
    use = text.find("\n## Use\n")
    section = _evaluation_section(results)
    text = text[: use + 1] + section + "\n" + text[use + 1:] if use >= 0 else text.rstrip("\n") + "\n\n" + section
    card.text = text
    card.save(Path(card_path))
    return card


def set_card_section(card_path: str | os.PathLike, heading: str, body: str) -> ModelCard:
    """Put the section ``heading`` (``## ...``) with ``body`` into the card at ``card_path``, before "Use"
    when there is one, replacing the section of that heading from an earlier call."""
    card = ModelCard.load(Path(card_path))
    text = _without_section(card.text, heading)
    section = f"{heading}\n\n{body.rstrip()}\n"
    use = text.find("\n## Use\n")
    card.text = text[: use + 1] + section + "\n" + text[use + 1:] if use >= 0 else text.rstrip("\n") + "\n\n" + section
    card.save(Path(card_path))
    return card


def study_eval_results(model_name: str, scores: list[dict]) -> list[EvalResult]:
    """The ``model-index`` entries of an upstream from the study's measured downstream scores
    (``repr_asr.evaluation.study_report.downstream_scores``): task ``automatic-speech-recognition`` on the
    study's corpus and split named the hub's way, a CER and a PER in percent per labeled subset. The hub
    groups a card's results by task and dataset, so the subset a recogniser was trained on is the
    metric's (its name and ``args``), not the dataset's."""
    out = []
    for score in scores:
        dataset = dataset_identity(score["data"], score["split"])
        corpus = score.get("corpus") or {}
        seeds = f"mean of {score['n']} seed{'s' if score['n'] != 1 else ''}"
        out.append(EvalResult(
            task_type="automatic-speech-recognition", task_name=f"CTC on frozen {model_name} features",
            dataset_type=dataset["type"], dataset_name=dataset["name"], dataset_config=dataset["config"],
            dataset_split=dataset["split"],
            dataset_args={f"corpus_{key}": value for key, value in corpus.items() if key in ("hours", "seed")} or None,
            metric_type=score["metric"], metric_value=round(float(score["value"]), 2),
            metric_name=f"{score['split']} {METRIC_NAMES[score['metric']][1]} (%), train-{score['subset']} ({score['units']}, {seeds})",
            metric_args={"labeled_subset": f"train-{score['subset']}", "units": score["units"], "seeds": score["n"]},
        ))
    return out


def set_study_results(card_path: str | os.PathLike, model_name: str, scores: list[dict]) -> ModelCard:
    """Put the study's measured downstream scores of an upstream into its card's metadata (``model-index``,
    ``metrics``, ``datasets``), as transformers' ASR cards carry theirs; the card's text is left as it is.
    No scores: the card keeps no ``model-index``."""
    card = ModelCard.load(Path(card_path))
    results = study_eval_results(model_name, scores)
    card.data.model_name = model_name if results else None
    card.data.eval_results = results or None
    card.data.metrics = sorted({r.metric_type for r in results}) or None
    hub_datasets = sorted({r.dataset_type for r in results if "/" in r.dataset_type})
    card.data.datasets = hub_datasets or None
    card.save(Path(card_path))
    return card
