#!/usr/bin/env python
"""Paper-size GPU benchmark of AnchorAD: random weights, no download.

Backbones (as in the paper): BrainMVP UniFormer-S at 96^3 (sMRI), Brain-JEPA ViT-B at 450 ROIs x
160 frames (fMRI), a 7B LLaMA-architecture text model built from its config (clinical text) and
a Nucleotide-Transformer-500M-size ESM built from its config (genetics), all with random weights,
in bfloat16. Each modality gets its anchored round (LoRA r=8 + Q-former, N_q=16).

Figures (median of ``--repeats`` after one warm-up):

* per-subject latency of a full 4-round diagnosis (``DiagnosisPipeline.run``: four phase-1
  encodes, four anchored passes, aggregation);
* phase-2 training step time per anchor (cached auxiliary features; forward, backward, AdamW);
* peak GPU memory (``torch.cuda.max_memory_allocated``) of each part.

``--tiny`` shrinks every backbone so that the script runs on a CPU in seconds (what the tests
run). Usage::

    python scripts/gpu_bench.py                      # on a GPU, paper sizes, bf16
    python scripts/gpu_bench.py --tiny --device cpu --dtype float32 --json
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PAPER = {
    "smri": {"preset": "brainmvp-uniformer-s"},  # depth 3-4-8-3, dims 64..512, 96^3
    "fmri": {"preset": "brainjepa-vit-b", "n_rois": 450, "n_frames": 160},
    "llama": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
              "intermediate_size": 11008, "vocab_size": 32000, "max_position_embeddings": 4096},
    "nt": {"hidden_size": 1280, "num_hidden_layers": 24, "num_attention_heads": 20, "intermediate_size": 5120,
           "max_position_embeddings": 1002},
    "note_words": 200, "dna_bases": 6000,
}
TINY = {
    "smri": {"preset": "brainmvp-demo", "img_size": 32},
    "fmri": {"preset": "brainjepa-demo", "n_rois": 450, "n_frames": 32, "embed_dim": 32, "depth": 1, "num_heads": 2},
    "llama": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
              "intermediate_size": 64, "vocab_size": 32000, "max_position_embeddings": 512},
    "nt": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
           "max_position_embeddings": 1002},
    "note_words": 40, "dna_bases": 600,
}
WORDS = ("patient reports memory loss word finding problems mmse moca family history of alzheimer disease "
         "mother no focal neurological deficit on examination lives alone manages finances").split()


def _write_gradient(folder: Path, n_rois: int) -> Path:
    path = folder / f"gradient_{n_rois}.csv"
    np.savetxt(path, np.random.default_rng(0).normal(0, 0.05, (n_rois, 30)), delimiter=",")
    return path


def _write_llama_folder(folder: Path, arch: dict[str, Any]) -> Path:
    """config.json + a small word-level tokenizer: the architecture is built with random weights."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([" ".join(WORDS)], trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>").save_pretrained(str(folder))
    LlamaConfig(bos_token_id=1, eos_token_id=2, tie_word_embeddings=False, rms_norm_eps=1e-5, **arch).save_pretrained(str(folder))
    return folder


def build_model(sizes: dict[str, Any], device: torch.device, dtype: torch.dtype, workdir: Path) -> Any:
    """The four backbones at ``sizes`` with random weights, and one anchored round per modality."""
    from anchorad_core.backbones.registry import build_backbone, presets
    from anchorad_core.fusion.lora import LoraSettings
    from anchorad_core.modality import Modality
    from anchorad_core.model import AnchorADModel

    torch.manual_seed(0)
    fmri = dict(sizes["fmri"], gradient_path=str(_write_gradient(workdir, sizes["fmri"]["n_rois"])))
    text = {"family": "hf-text", "model_path": str(_write_llama_folder(workdir / "llama", sizes["llama"])),
            "kind": "decoder", "pooling": "last", "max_length": 512, "dtype": "float32"}
    nt = presets()["nt-demo"]["config"]
    from anchorad_core.backbones.nucleotide_transformer import NT_DEMO_ESM_CONFIG

    nt["esm_config"] = {**NT_DEMO_ESM_CONFIG, **sizes["nt"]}
    nt["model_path"] = None
    specs = {Modality.SMRI: sizes["smri"], Modality.FMRI: fmri, Modality.CLINICAL: text, Modality.GENETICS: nt}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # weights are created directly in the benchmark dtype ...
    try:
        with torch.device(device):  # ... and on the device (a 7B model never sits in host fp32)
            backbones = {m: build_backbone(spec, load_weights=False) for m, spec in specs.items()}
            model = AnchorADModel(backbones, ["NC", "AD"])
            for m in model.modalities:
                model.add_round(m, num_queries=16, lora=LoraSettings(r=8, alpha=16, dropout=0.0))
    finally:
        torch.set_default_dtype(previous)
    return model.to(device=device, dtype=dtype).eval()


def make_subject(model: Any, sizes: dict[str, Any], seed: int = 0) -> SimpleNamespace:
    """A synthetic preprocessed subject at the backbones' input sizes."""
    from anchorad_core.modality import Modality

    rng = np.random.default_rng(seed)
    img = model.backbone(Modality.SMRI).img_size
    jepa = model.backbone(Modality.FMRI)
    return SimpleNamespace(
        subject_id=f"synthetic-{seed}",
        smri=rng.normal(0, 1, (img,) * 3).astype(np.float32),
        fmri=rng.normal(0, 1, (jepa.n_rois, jepa.n_frames)).astype(np.float32),
        clinical=" ".join(rng.choice(WORDS, sizes["note_words"])),
        genetics=["".join(rng.choice(list("ACGT"), sizes["dna_bases"]))],
    )


def _pipeline(model: Any, device: torch.device, dtype: torch.dtype) -> Any:
    from anchorad_core.inference import DiagnosisPipeline

    pipe = DiagnosisPipeline.__new__(DiagnosisPipeline)  # a pipeline around an in-memory model
    pipe.device, pipe.dtype, pipe.model = device, dtype, model
    pipe.bundle = SimpleNamespace(model=model, labels=model.labels, path="<in-memory>", hash="", manifest={},
                                  provenance={}, config=SimpleNamespace(preprocess={}))
    return pipe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], repeats: int, device: torch.device) -> dict[str, Any]:
    fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        runs.append(time.perf_counter() - start)
    out = {"median_s": statistics.median(runs), "runs_s": runs}
    if device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def run(tiny: bool, device: str, dtype: str, repeats: int, batch: int) -> dict[str, Any]:
    from anchorad_core.device import resolve_device, resolve_dtype
    from anchorad_core.fusion.qformer import AuxiliaryFeatures

    dev, dt = resolve_device(device), resolve_dtype(dtype)
    sizes = TINY if tiny else PAPER
    result: dict[str, Any] = {
        "sizes": "tiny" if tiny else "paper", "device": str(dev), "dtype": str(dt).replace("torch.", ""),
        "repeats": repeats, "warmup": 1, "torch_version": torch.__version__, "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if dev.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(dev)
    with tempfile.TemporaryDirectory(prefix="anchorad-gpu-bench-") as tmp:
        start = time.perf_counter()
        model = build_model(sizes, dev, dt, Path(tmp))
        result["build_s"] = time.perf_counter() - start
    result["parameters"] = {m.value: sum(p.numel() for p in model.backbone(m).parameters()) for m in model.modalities}
    if dev.type == "cuda":
        result["weights_gpu_mb"] = torch.cuda.memory_allocated(dev) / 2**20
    pipe = _pipeline(model, dev, dt)
    subject = make_subject(model, sizes)

    # 1. per-subject latency of a full 4-round diagnosis
    diag = _timed(lambda: pipe.diagnose(subject), repeats, dev)
    d = pipe.diagnose(subject)
    result["diagnosis"] = {**diag, "stages_s": d.timings}

    # 2. phase-2 training step per anchor, on cached auxiliary features (batch of `batch` subjects)
    subjects = [make_subject(model, sizes, seed) for seed in range(batch)]
    batches = {m: pipe._cast(model.backbone(m).collate([getattr(s, m.value) for s in subjects])) for m in model.modalities}
    with torch.no_grad():
        cache = {}
        for m in model.modalities:
            o = model.encode(m, batches[m])
            cache[m] = AuxiliaryFeatures(o.tokens, o.mask, torch.ones(batch, dtype=torch.bool, device=dev))
    y = torch.arange(batch, device=dev) % 2
    steps = {}
    for anchor in model.anchors():
        round_ = model.rounds[anchor.value]
        params = list(round_.parameters()) + [p for n, p in model.backbone(anchor).named_parameters() if "lora_" in n]
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=1e-4)

        def step(anchor: Any = anchor, round_: Any = round_, optimizer: Any = optimizer) -> None:
            round_.train()
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model.anchored(anchor, batches[anchor], cache).logits.float(), y)
            loss.backward()
            optimizer.step()

        steps[anchor.value] = _timed(step, repeats, dev)
        round_.eval()
        for p in params:
            p.requires_grad_(False)
        del optimizer
    result["phase2_step"] = {"batch": batch, **steps}
    result["phase2_step_total_s"] = sum(s["median_s"] for s in steps.values())
    result["diagnosis_s"] = diag["median_s"]
    if dev.type == "cuda":
        result["peak_gpu_mb"] = max([diag["peak_gpu_mb"]] + [s["peak_gpu_mb"] for s in steps.values()])
    return result


def format_result(r: dict[str, Any]) -> str:
    lines = [f"AnchorAD GPU benchmark ({r['sizes']} sizes)  {r['date']}  {r.get('gpu', r['device'])}  {r['dtype']}  "
             f"torch {r['torch_version']}  median of {r['repeats']} after 1 warm-up",
             "parameters: " + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in r["parameters"].items()),
             f"full 4-round diagnosis per subject: {r['diagnosis_s'] * 1000:.1f} ms"
             + (f"  (peak GPU {r['diagnosis']['peak_gpu_mb']:.0f} MB)" if "peak_gpu_mb" in r["diagnosis"] else ""),
             "  stages: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in r["diagnosis"]["stages_s"].items()),
             f"phase-2 training step (batch {r['phase2_step']['batch']}, cached auxiliary features):"]
    for k, v in r["phase2_step"].items():
        if isinstance(v, dict):
            lines.append(f"  anchor {k}: {v['median_s'] * 1000:.1f} ms"
                         + (f"  (peak GPU {v['peak_gpu_mb']:.0f} MB)" if "peak_gpu_mb" in v else ""))
    if "peak_gpu_mb" in r:
        lines.append(f"peak GPU memory: {r['peak_gpu_mb']:.0f} MB (weights {r['weights_gpu_mb']:.0f} MB)")
    return "\n".join(lines)


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny backbones (runs on a CPU in seconds)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default=None, help="default bfloat16 (float32 with --tiny on a CPU)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2, help="subjects per phase-2 training step")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the process default)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from anchorad_core.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = args.dtype or ("float32" if args.tiny and resolve_device(args.device).type == "cpu" else "bfloat16")
    result = run(args.tiny, args.device, dtype, args.repeats, args.batch)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
