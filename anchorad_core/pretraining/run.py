"""Pretrain the three small demo backbones end to end and write the shipped weights.

``anchorad pretrain OUT`` (or :func:`pretrain_demo_backbones`) generates an **unlabeled**
pretraining cohort with its own seed (never one of the evaluation cohorts' seeds; no
``diagnosis`` column is written and none is read), preprocesses it exactly as the demo
does, runs each family's self-supervised objective and writes::

    OUT/brainmvp_demo.safetensors      UniFormer state dict (BrainMVP parameter names)
    OUT/brainjepa_demo.safetensors     Brain-JEPA target-encoder state dict
    OUT/nt-demo/                       Hugging Face ESM folder (config, weights, 6-mer tokenizer)
    OUT/PROVENANCE.json                data, objective, steps, loss curves, timings, SHA-256
    OUT/loss_curves.png                the three loss curves
"""
from __future__ import annotations

import hashlib
import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ..backbones.base import ModalityBackbone
from ..backbones.registry import build_backbone
from ..data import PreprocessConfig, load_subject, make_demo_cohort
from ..io_utils import atomic_write_json
from ..modality import Modality
from ..progress import SILENT, Progress
from .common import PretrainCurve
from .jepa import pretrain_jepa
from .masked_dna import pretrain_masked_dna
from .masked_volume import pretrain_masked_volume

#: Seed of the pretraining cohort: far from the evaluation cohorts' seeds (0, 1, 2, ...).
PRETRAIN_SEED = 1_000_003


@dataclass
class PretrainSettings:
    """Size of the pretraining run (defaults: what the shipped weights used)."""

    subjects: int = 360
    seed: int = PRETRAIN_SEED
    smri_steps: int = 700
    fmri_steps: int = 400
    dna_steps: int = 1500


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_inputs(root: Path, preprocess: PreprocessConfig, progress: Progress) -> dict[Modality, list[Any]]:
    """Preprocessed inputs of every subject folder, read without ``participants.tsv``."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("sub-"))
    out: dict[Modality, list[Any]] = {m: [] for m in (Modality.SMRI, Modality.FMRI, Modality.GENETICS)}
    for i, folder in enumerate(folders):
        subject = load_subject(folder, preprocess, modalities=tuple(out), on_error="missing")
        for m in out:
            value = subject.get(m)
            if value is not None:
                out[m].append(value)
        progress.update("pretraining cohort: preprocessing", i + 1, len(folders))
    return out


def pretrain_demo_backbones(out: "str | Path", settings: PretrainSettings | None = None,
                            progress: Progress = SILENT,
                            modalities: "tuple[str, ...]" = ("smri", "fmri", "genetics")) -> dict[str, Any]:
    """Run the objectives of ``modalities`` and write weights + provenance into ``out``.

    Models not in ``modalities`` keep their entry of an existing ``PROVENANCE.json`` (so one
    backbone can be re-pretrained alone). Returns the provenance.
    """
    from ..training.config import TrainConfig

    settings = settings or PretrainSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    demo = TrainConfig.demo()
    preprocess = PreprocessConfig.from_dict(demo.preprocess)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="anchorad-pretrain-") as tmp:
        cohort = Path(tmp) / "cohort"
        make_demo_cohort(cohort, settings.subjects, settings.seed, unlabeled=True, progress=progress,
                         stage="pretraining cohort: generating")
        inputs = _load_inputs(cohort, preprocess, progress)
    data_seconds = time.perf_counter() - start

    curves: dict[str, PretrainCurve] = {}
    files: dict[str, Path] = {}
    backbones: dict[str, ModalityBackbone] = {}
    sequences = [s for sample in inputs[Modality.GENETICS] for s in sample]
    # the architectures of the demo presets, built without their (to-be-written) weights
    if "smri" in modalities:
        from ..backbones.uniformer3d import UniFormer3DBackbone

        smri = backbones["smri"] = _build({"preset": demo.backbones[Modality.SMRI], "checkpoint": None},
                                          UniFormer3DBackbone)
        curves["smri"] = pretrain_masked_volume(smri, inputs[Modality.SMRI], steps=settings.smri_steps,
                                                seed=settings.seed, progress=progress)
        files["smri"] = _save_state(smri, out / "brainmvp_demo.safetensors")
    if "fmri" in modalities:
        from ..backbones.brainjepa import BrainJEPABackbone

        fmri = backbones["fmri"] = _build({"preset": demo.backbones[Modality.FMRI], "checkpoint": None},
                                          BrainJEPABackbone)
        curves["fmri"] = pretrain_jepa(fmri, inputs[Modality.FMRI], steps=settings.fmri_steps,
                                       seed=settings.seed + 1, progress=progress)
        files["fmri"] = _save_state(fmri, out / "brainjepa_demo.safetensors")
    if "genetics" in modalities:
        from ..backbones.nucleotide_transformer import NT_DEMO_ESM_CONFIG, NucleotideTransformerBackbone

        dna = backbones["genetics"] = _build({"preset": demo.backbones[Modality.GENETICS], "model_path": None,
                                              "esm_config": NT_DEMO_ESM_CONFIG}, NucleotideTransformerBackbone)
        curves["genetics"] = pretrain_masked_dna(dna, sequences, steps=settings.dna_steps,
                                                 seed=settings.seed + 2, progress=progress)
        folder = out / "nt-demo"
        getattr(dna.model, "save_pretrained")(str(folder), safe_serialization=True)  # a transformers model
        dna.tokenizer.save_pretrained(str(folder))
        files["genetics"] = folder / "model.safetensors"

    previous: dict[str, Any] = {}
    if (out / "PROVENANCE.json").is_file():
        previous = json.loads((out / "PROVENANCE.json").read_text(encoding="utf-8")).get("models", {})
    models = dict(previous)
    for m, b in backbones.items():
        models[m] = {"preset": demo.backbones[Modality.parse(m)], "file": str(files[m].relative_to(out)), "sha256": _sha256(files[m]),
                     "parameters": int(sum(p.numel() for p in b.parameters())), **curves[m].summary()}
    provenance = {
        "what": "Self-supervised pretraining of the AnchorAD demo backbones (small configurations of the "
                "published BrainMVP UniFormer, Brain-JEPA ViT and Nucleotide Transformer architectures).",
        "data": {
            "generator": "anchorad_core.data.demo.make_demo_cohort(unlabeled=True)",
            "subjects": settings.subjects,
            "seed": settings.seed,
            "labels_used": False,
            "synthetic": True,
            "note": "SYNTHETIC subjects on the shipped real templates; a seed no evaluation cohort uses; "
                    "no diagnosis column is written or read.",
            "inputs": {m.value: len(v) for m, v in inputs.items()},
            "dna_sequences": len(sequences),
            "seconds": round(data_seconds, 1),
        },
        "preprocess": preprocess.to_dict(),
        "models": models,
        "settings": asdict(settings),
        "software": {"torch": torch.__version__, "python": platform.python_version()},
        "command": f"anchorad pretrain {out} --subjects {settings.subjects} --seed {settings.seed}",
    }
    atomic_write_json(out / "PROVENANCE.json", provenance)
    _plot_curves({m: PretrainCurve(v["objective"], v["steps"], v["loss"]) for m, v in models.items()},
                 out / "loss_curves.png")
    return provenance


_B = TypeVar("_B", bound=ModalityBackbone)


def _build(spec: dict[str, Any], kind: "type[_B]") -> _B:
    """The backbone of ``spec``, checked to be a ``kind`` (the architecture an objective trains)."""
    backbone = build_backbone(spec)
    if not isinstance(backbone, kind):
        raise TypeError(f"{spec['preset']} builds a {type(backbone).__name__}, not a {kind.__name__}")
    return backbone


def _save_state(module: torch.nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    tmp = path.with_name(path.name + ".part")
    save_file(state, str(tmp))
    tmp.replace(path)
    return path


def _plot_curves(curves: dict[str, PretrainCurve], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3))
    for ax, (name, curve) in zip(np.atleast_1d(axes), curves.items()):
        loss = np.asarray(curve.loss)  # averaged over windows of steps (PROVENANCE.json)
        ax.plot(np.linspace(0, curve.steps, len(loss)), loss, color="C0")
        ax.set_title(f"{name}: {curve.objective}", fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".part.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
