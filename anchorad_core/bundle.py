"""A trained model on disk: JSON config + safetensors weights + peft adapters, hashed.

Layout of a bundle folder::

    bundle.json                       format version, task labels, training config,
                                      aggregation, provenance, SHA-256 of every file
    backbones/<modality>/...          files a backbone needs besides weights (tokenizer,
                                      HF config, gradient CSV)
    weights/<modality>.safetensors    phase-1 backbone ("backbone.*") and head ("head.*")
    rounds/<modality>/round.safetensors   the anchored round's Q-former and head
    rounds/<modality>/adapter/        its LoRA adapter (peft ``save_pretrained``)
    atlas/                            a user fMRI atlas (label image and table), when the
                                      preprocessing uses one (its paths in bundle.json are
                                      relative to the bundle)

No pickles anywhere: loading never executes code from the bundle. Every file's hash is
checked before anything is read.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .backbones.registry import build_backbone
from .data.atlas import atlas_paths_in, copy_atlas_files
from .errors import BundleError
from .fusion.lora import base_state_dict, load_lora
from .io_utils import atomic_directory, atomic_write_json, sha256_file
from .model import AnchorADModel, AnchorStacker
from .modality import Modality, keys_from_json, keys_to_json
from .training.config import TrainConfig

FORMAT_VERSION = 1
MANIFEST = "bundle.json"


@dataclass
class Bundle:
    """A loaded bundle: the model plus its manifest."""

    model: AnchorADModel
    config: TrainConfig
    manifest: dict[str, Any]
    path: Path
    hash: str = ""

    @property
    def labels(self) -> list[str]:
        """Class labels in output order."""
        return self.model.labels

    @property
    def provenance(self) -> dict[str, Any]:
        """What is real and what is synthetic about this model."""
        return self.manifest.get("provenance", {})


@dataclass
class Provenance:
    """Where a bundle's data and weights come from (said in every report)."""

    training_data: str = "unspecified"
    synthetic_data: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"training_data": self.training_data, "synthetic_data": self.synthetic_data, "notes": self.notes}


def save_bundle(
    model: AnchorADModel,
    config: TrainConfig,
    path: "str | Path",
    provenance: "Provenance | None" = None,
    extra: "dict[str, Any] | None" = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bundle folder at ``path`` (atomically: all or nothing)."""
    path = Path(path)
    try:
        context = atomic_directory(path, overwrite=overwrite)
        root = context.__enter__()
    except FileExistsError:
        raise BundleError("already exists (use --force to replace it)", path) from None
    try:
        backbone_configs: dict[str, Any] = {}
        referenced: dict[str, dict[str, str]] = {}
        for m in model.modalities:
            backbone = model.backbone(m)
            state = base_state_dict(backbone)
            tensors = {}
            if m in model.pretrained_frozen:
                # Unchanged pretrained weights: reference them by content hash, don't copy.
                backbone_configs[m.value] = config.backbones[m]
                referenced[m.value] = {"sha256": state_fingerprint(state)}
            else:
                folder = root / "backbones" / m.value
                folder.mkdir(parents=True, exist_ok=True)
                cfg = dict(backbone.get_config())
                cfg.update(backbone.export_files(folder))
                backbone_configs[m.value] = cfg
                tensors = {f"backbone.{k}": v for k, v in state.items()}
            tensors.update({f"head.{k}": v for k, v in model.head(m).state_dict().items()})
            _save_tensors(tensors, root / "weights" / f"{m.value}.safetensors")
        for anchor in model.anchors():
            folder = root / "rounds" / anchor.value
            folder.mkdir(parents=True, exist_ok=True)
            _save_tensors(model.anchored_round(anchor).state_dict(), folder / "round.safetensors")
            model._peft[anchor].save_pretrained(str(folder / "adapter"))
        config_dict = config.to_dict()
        config_dict["backbones"] = backbone_configs
        config_dict["preprocess"] = copy_atlas_files(config.preprocess, root)
        files = {
            str(p.relative_to(root)): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST
        }
        manifest = {
            "format": "anchorad-bundle",
            "format_version": FORMAT_VERSION,
            "anchorad_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "labels": model.labels,
            "modalities": [m.value for m in model.modalities],
            "anchors": [m.value for m in model.anchors()],
            "aggregation": {"rule": model.aggregation_rule, "round_weights": keys_to_json(model.round_weights),
                            "temperatures": keys_to_json(model.round_temperatures),
                            "stacker": None if model.stacker is None else model.stacker.to_json(),
                            "selection": model.aggregation_selection},
            "config": config_dict,
            "provenance": (provenance or Provenance()).to_dict(),
            "pretrained_backbones": referenced,
            "files": files,
            **(extra or {}),
        }
        atomic_write_json(root / MANIFEST, manifest)
    except BaseException as error:
        context.__exit__(type(error), error, error.__traceback__)
        raise
    context.__exit__(None, None, None)
    return path


def read_manifest(path: "str | Path") -> dict[str, Any]:
    """Read and check ``bundle.json`` (format and version) without loading weights."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise BundleError("is not a bundle folder (not found or not a directory)", path)
    if not manifest_path.is_file():
        raise BundleError(f"missing {MANIFEST}: not an AnchorAD bundle", path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"unreadable JSON ({error})", manifest_path) from None
    if manifest.get("format") != "anchorad-bundle":
        raise BundleError("not an AnchorAD bundle manifest", manifest_path)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"unknown bundle format version {version!r} (this AnchorAD reads version {FORMAT_VERSION})",
            manifest_path,
        )
    return manifest


def verify_files(path: Path, manifest: dict[str, Any]) -> str:
    """Check every listed file exists with its recorded SHA-256; return the bundle's hash."""
    import hashlib

    digest = hashlib.sha256()
    for name, expected in sorted(manifest.get("files", {}).items()):
        file = path / name
        if not file.is_file():
            raise BundleError("file listed in bundle.json is missing", file)
        actual = sha256_file(file)
        if actual != expected:
            raise BundleError("content hash mismatch: the file was changed after the bundle was written", file)
        digest.update(f"{name}:{actual}\n".encode())
    return digest.hexdigest()


def load_bundle(path: "str | Path", device: "str | torch.device" = "cpu") -> Bundle:
    """Load a bundle folder written by :func:`save_bundle` (hashes verified first)."""
    path = Path(path)
    manifest = read_manifest(path)
    bundle_hash = verify_files(path, manifest)
    config = TrainConfig.from_dict(manifest["config"])
    config.preprocess = atlas_paths_in(config.preprocess, path)
    referenced = keys_from_json(manifest.get("pretrained_backbones", {}))
    backbones = {}
    for name in manifest["modalities"]:
        m = Modality.parse(name)
        if m in referenced:
            backbones[m] = build_backbone(config.backbones[m], load_weights=True)
            if state_fingerprint(backbones[m].state_dict()) != referenced[m]["sha256"]:
                raise BundleError(
                    f"the pretrained {name} backbone found on this machine differs from the one the "
                    "bundle was trained with (weights hash mismatch)", path / MANIFEST,
                )
        else:
            backbones[m] = build_backbone(config.backbones[m], base_dir=path / "backbones" / name, load_weights=False)
    model = AnchorADModel(backbones, manifest["labels"])
    model.pretrained_frozen = set(referenced)
    for m in model.modalities:
        tensors = _load_tensors(path / "weights" / f"{m.value}.safetensors")
        if m not in referenced:
            _load_prefixed(model.backbone(m), tensors, "backbone.", path / "weights" / f"{m.value}.safetensors")
        _load_prefixed(model.head(m), tensors, "head.", path / "weights" / f"{m.value}.safetensors")
    for name in manifest.get("anchors", []):
        anchor = Modality.parse(name)
        folder = path / "rounds" / name
        peft_model = load_lora(model.backbone(anchor), str(folder / "adapter"))
        round_ = model.add_round(anchor, config.num_queries, config.lora, peft_model=peft_model,
                                 **config.round_options())
        round_file = folder / "round.safetensors"
        try:
            round_.load_state_dict(_load_tensors(round_file))
        except RuntimeError as error:
            raise BundleError(f"weights do not fit the round's architecture ({_first_line(error)})", round_file) from None
    aggregation = manifest.get("aggregation", {})
    model.aggregation_rule = aggregation.get("rule", "mean")
    model.round_weights = keys_from_json(aggregation.get("round_weights", {}))
    model.round_temperatures = keys_from_json(aggregation.get("temperatures", {}))
    stacker = aggregation.get("stacker")
    model.stacker = None if stacker is None else AnchorStacker.from_json(stacker)
    model.aggregation_selection = dict(aggregation.get("selection", {}))
    model.requires_grad_(False)
    model.eval()
    model.to(device)
    return Bundle(model, config, manifest, path, bundle_hash)


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and bytes (order-independent)."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _save_tensors(tensors: dict[str, torch.Tensor], file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(file))


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except Exception as error:  # safetensors raises its own error types
        raise BundleError(f"unreadable safetensors file ({_first_line(error)})", file) from None


def _load_prefixed(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, file: Path) -> None:
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise BundleError(f"weights do not fit the architecture ({_first_line(error)})", file) from None


def _first_line(error: BaseException) -> str:
    """The error on one line. torch's ``load_state_dict`` error says what is wrong only after its
    first line ("Error(s) in loading state_dict for X:"): keep those lines too, each list of
    keys cut to its first three names and a count."""
    import re

    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if not lines[0].endswith(":") or len(lines) == 1:
        return lines[0]

    def short(line: str) -> str:
        head, sep, keys = line.partition(": ")
        names = re.findall(r'"([^"]+)"', keys)
        if not sep or len(names) <= 3:
            return line.rstrip(".")
        return f"{head}: {', '.join(names[:3])} and {len(names) - 3} more"

    keys = [short(line) for line in lines[1:] if not line.startswith("size mismatch for ")]
    sizes = [re.match(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) from "
                      r"checkpoint, the shape in current model is torch\.Size\((\[.*?\])\)", line)
             for line in lines[1:] if line.startswith("size mismatch for ")]
    if sizes:
        first = sizes[0]
        example = (f"{first.group(1)} is {first.group(2)} in the file, {first.group(3)} in the model"
                   if first is not None else "")
        keys.append(f"size mismatch for {len(sizes)} tensor{'s' if len(sizes) > 1 else ''}"
                    + (f" (e.g. {example})" if example else ""))
    return lines[0] + " " + "; ".join(keys)
