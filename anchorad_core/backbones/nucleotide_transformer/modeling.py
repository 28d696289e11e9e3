"""Genetics backbone: the Nucleotide Transformer (Hugging Face ESM format, 6-mer tokens).

Checkpoints
-----------
* **NT v1** (``nucleotide-transformer-500m-human-ref``, ``-500m-1000g``, ``-2.5b-*``): a local
  Hugging Face folder with ``config.json`` (``model_type: esm``, ``EsmForMaskedLM``), weights
  and an ``EsmTokenizer`` ``vocab.txt`` of 4105 tokens (see :mod:`.kmer_tokenizer`). Set
  ``model_path`` to the folder (preset ``nt-v1-500m-human-ref``). Loaded with
  ``local_files_only=True``; only the encoder (``EsmModel``) is kept, the LM head is dropped.
* **NT v2** (``nucleotide-transformer-v2-*``, rotary positions, SwiGLU) ships its own modelling
  code (``config.json`` has ``auto_map``). That code runs only if the config sets
  ``"allow_remote_code": true`` (off by default; review the folder's ``*.py`` first). The
  encoder is then ``AutoModelForMaskedLM.from_pretrained(..., trust_remote_code=True).esm``.
  Whatever the code, the backbone checks at load time that its embedding path reproduces
  ``model(input_ids=...)`` (see below) and refuses the model otherwise.
* **nt-demo**: a small ESM (hidden 64, 2 layers, 4 heads, NT v1 vocabulary, absolute
  positions; inline config ``NT_DEMO_ESM_CONFIG``) pretrained by masked 6-mer language
  modelling (``anchorad pretrain``), shipped as a Hugging Face folder in
  ``resources/pretrained/nt-demo``.

A subject's sample and the chunking rule
----------------------------------------
A genetics sample is a **list of DNA strings** (e.g. the two APOE haplotypes). Letters must be
``A C G T N`` (lower case is accepted and upper-cased); anything else is an
:class:`~anchorad_core.errors.InputDataError`. Each string is tokenized on its own (6-mers, see
:mod:`.kmer_tokenizer`) and cut into **non-overlapping windows** of ``max_length - s`` tokens
(``s`` = number of special tokens the tokenizer adds, 1 ``<cls>`` for NT v1; ``max_length``
defaults to the model's position limit, 1000 for NT v1). Every window gets its own special
tokens and is encoded **separately** (one row of the model batch). The subject's output token
sequence is the concatenation, in order, of every window's valid token states (its ``<cls>``
included) over all its strings; ``mask`` marks them, ``sequence_index`` / ``base_offsets`` in the
batch map each token back to its string and bases.

Appended tokens (``H_a``)
-------------------------
``H_a`` is appended to **every** window of the subject, directly after the window's last valid
token (layout ``[tokens, H_a, padding]``), so that every window attends to it and it attends to
every window's tokens. The returned ``extra`` states are the mean over the subject's windows.
Pooled = mean over the subject's valid tokens and its unmasked extra tokens. Masked extras are
never attended to and never pooled.

Exactness of the embedding path
-------------------------------
Appending ``H_a`` requires feeding vectors instead of token ids. With transformers >= 5,
``EsmModel(inputs_embeds=...)`` skips the embedding layer, so the backbone calls the model's
own ``embeddings(input_ids, attention_mask)`` first: this applies exactly what
``model(input_ids=...)`` does — ESM *token dropout* rescaling
(``x * (1 - 0.15 * 0.8) / (1 - observed mask ratio)``, mask tokens zeroed), absolute position
embeddings from ``padding_idx``-based position ids, ``emb_layer_norm_before`` and the
attention-mask multiplication. Extra tokens get no absolute position embedding (they are a set;
the Q-former's learned queries identify them), pass through ``emb_layer_norm_before`` when the
model has it, and are multiplied by their mask. With rotary positions the packed row gets
positions ``0, 1, ...``, so tokens keep theirs and the extras follow them. Older code
(transformers 4 or NT v2 remote code), whose ``inputs_embeds`` path adds positions itself, is
detected by a load-time probe and fed word embeddings with the token-dropout rescaling applied
by hand. The tests check both paths agree with ``model(input_ids=...)`` to 1e-5.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence, cast

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
    load_hf_config,
    load_hf_tokenizer,
    masked_mean,
    extra_key_flags,
    pack_with_extras,
    parse_dtype,
    resolve_local_model_folder,
    save_config_and_tokenizer,
    strip_unused_heads,
    unpack_hidden,
)
from ..registry import register_backbone
from .conversion import load_esm_encoder
from .kmer_tokenizer import VALID_BASES, build_nt_v1_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel


#: Mask-ratio constant hard-coded in ESM's token dropout.
_ESM_MASK_RATIO_TRAIN = 0.15 * 0.8
#: Probe sequences of the load-time embedding-path check.
_PROBE = ("ACGTACGTTAGCCATGNACGTAC", "GGATCC")


class _EsmEmbeddings(Protocol):
    """What the backbone uses of an ESM embedding module (transformers' or an NT v2 folder's own).

    ``token_dropout`` and ``layer_norm`` are read with ``getattr``: not every version has them.
    """

    word_embeddings: torch.nn.Module
    mask_token_id: int

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...


@register_backbone
class NucleotideTransformerBackbone(ModalityBackbone):
    """A Nucleotide Transformer (HF ``EsmModel``) encoding a subject's DNA strings.

    Parameters
    ----------
    model
        Bare ESM encoder (``EsmModel`` without pooler / contact head).
    tokenizer
        Its tokenizer (``EsmTokenizer`` with the 6-mer vocabulary for NT v1).
    model_path
        The ``model_path`` config value (``None`` for an inline-config model).
    esm_config
        Inline ``EsmConfig`` keyword arguments (only for ``model_path=None``).
    max_length
        Tokens per window, special tokens included (``None``: the model's position limit).
    max_chunks
        Most windows one subject may have; more is an :class:`InputDataError`.
    dtype
        Compute dtype.
    allow_remote_code
        Whether the folder's own code (NT v2) was allowed to run.
    """

    modality = Modality.GENETICS
    family = "nucleotide-transformer"

    def __init__(
        self,
        model: "PreTrainedModel",
        tokenizer: Any,
        *,
        model_path: "str | None" = None,
        esm_config: "dict[str, Any] | None" = None,
        max_length: "int | None" = None,
        max_chunks: int = 32,
        dtype: "str | torch.dtype" = "float32",
        allow_remote_code: bool = False,
        source_folder: "Path | None" = None,
    ) -> None:
        super().__init__()
        self.model: PreTrainedModel = model
        use_gated_attention(model)
        self.tokenizer = tokenizer
        self.model_path = None if model_path is None else str(model_path)
        self.esm_config = copy.deepcopy(esm_config) if esm_config is not None else None
        self.dtype = parse_dtype(dtype)
        self.allow_remote_code = bool(allow_remote_code)
        self.max_chunks = int(max_chunks)
        self._source_folder = source_folder
        if self.max_chunks < 1:
            raise ConfigError(f"nucleotide-transformer: max_chunks must be >= 1, got {max_chunks}")
        self._prefix_ids, self._suffix_ids = _special_template(tokenizer)
        limit = _position_limit(model.config, tokenizer)
        self.max_length = int(max_length) if max_length is not None else limit
        if self.max_length > limit:
            raise ConfigError(
                f"nucleotide-transformer: max_length {self.max_length} exceeds the model's {limit} token positions"
            )
        self.chunk_tokens = self.max_length - len(self._prefix_ids) - len(self._suffix_ids)
        if self.chunk_tokens < 1:
            raise ConfigError(f"nucleotide-transformer: max_length {self.max_length} leaves no room for DNA tokens")
        self._token_lengths = _token_lengths(tokenizer)
        self.lora_target_modules = attention_lora_regex(model, getattr(model.config, "model_type", "esm"))
        self._embedding_mode = self._calibrate_embedding_path()

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, config: dict[str, Any], base_dir: "Path | None" = None, load_weights: bool = True
    ) -> "NucleotideTransformerBackbone":
        """Build from a config dict (see :meth:`get_config`).

        Config keys: ``model_path`` (local NT folder, relative to ``base_dir``; ``None`` builds
        the inline ``esm_config`` with the NT v1 tokenizer and random weights), ``esm_config``,
        ``max_length``, ``max_chunks`` (32), ``dtype`` (``float32``), ``allow_remote_code``
        (False). With ``load_weights=False`` only ``config.json`` and the tokenizer files of
        ``model_path`` are read (what :meth:`export_files` writes). A preset's
        ``reference_architecture`` is accepted and ignored here (see :meth:`sizing_module`).
        """
        config = checked_config(config, {"model_path", "esm_config", "max_length", "max_chunks", "dtype", "allow_remote_code"}, "nucleotide-transformer")
        dtype = parse_dtype(config.get("dtype", "float32"))
        remote = bool(config.get("allow_remote_code", False))
        model_path = config.get("model_path")
        esm_config = config.get("esm_config")
        common = {
            "max_length": config.get("max_length"),
            "max_chunks": config.get("max_chunks", 32),
            "dtype": dtype,
            "allow_remote_code": remote,
        }
        if model_path is None:
            if not esm_config:
                raise ConfigError(
                    "nucleotide-transformer: set model_path to a local Nucleotide Transformer folder "
                    "(or give an inline esm_config, as the nt-demo preset does)"
                )
            from transformers import EsmConfig, EsmModel

            hf_config = EsmConfig(**esm_config)
            # transformers decorates ``to`` with functools.wraps(nn.Module.to), so typeshed
            # types the bound call as the unbound one (first argument ``self``)
            model = EsmModel(hf_config, add_pooling_layer=False).to(dtype)  # type: ignore[arg-type]
            strip_unused_heads(model)
            model.eval()
            tokenizer = build_nt_v1_tokenizer(model_max_length=_position_limit(hf_config, None))
            if tokenizer.vocab_size != hf_config.vocab_size:
                raise ConfigError(
                    f"nucleotide-transformer: esm_config vocab_size {hf_config.vocab_size} does not match "
                    f"the NT v1 6-mer vocabulary ({tokenizer.vocab_size})"
                )
            return cls(model, tokenizer, model_path=None, esm_config=esm_config, **common)

        folder = resolve_local_model_folder(model_path, base_dir, what="Nucleotide Transformer")
        hf_config = load_hf_config(folder, remote, what="Nucleotide Transformer")
        if getattr(hf_config, "model_type", None) != "esm" or getattr(hf_config, "is_folding_model", False):
            raise CheckpointError(
                f"Nucleotide Transformer: expected an ESM masked-LM folder (model_type 'esm'), got "
                f"model_type {getattr(hf_config, 'model_type', None)!r}",
                path=folder,
            )
        model = load_esm_encoder(folder, hf_config, dtype, remote, load_weights)
        tokenizer = load_hf_tokenizer(folder, remote, what="Nucleotide Transformer")
        return cls(model, tokenizer, model_path=model_path, esm_config=None, source_folder=folder, **common)

    @classmethod
    def sizing_module(cls, config: dict[str, Any], base_dir: "Path | None" = None) -> "torch.nn.Module | None":
        """The bare ESM encoder a config describes, built without tokenizer or load-time probe.

        For :mod:`anchorad_core.backbones.inventory`, which calls it under
        ``torch.device("meta")`` (the probe of :meth:`__init__` runs a forward pass, impossible
        without weights). The encoder comes from ``model_path``'s ``config.json`` when set,
        else from the inline ``esm_config``, else from the preset's ``reference_architecture``
        (the published NT v1 500M dimensions, used only for sizing). ``None`` when none is given.
        """
        config = {k: v for k, v in config.items() if k != "family"}
        remote = bool(config.get("allow_remote_code", False))
        if config.get("model_path") is not None:
            folder = resolve_local_model_folder(config["model_path"], base_dir, what="Nucleotide Transformer")
            hf_config = load_hf_config(folder, remote, what="Nucleotide Transformer")
            return load_esm_encoder(folder, hf_config, torch.float32, remote, load_weights=False)
        architecture = config.get("esm_config") or config.get("reference_architecture")
        if not architecture:
            return None
        from transformers import EsmConfig, EsmModel

        model = EsmModel(EsmConfig(**architecture), add_pooling_layer=False)
        strip_unused_heads(model)
        return model

    def get_config(self) -> dict[str, Any]:
        """JSON-serialisable config (``family`` included)."""
        return {
            "family": self.family,
            "model_path": self.model_path,
            "esm_config": copy.deepcopy(self.esm_config),
            "max_length": self.max_length,
            "max_chunks": self.max_chunks,
            "dtype": dtype_name(self.dtype),
            "allow_remote_code": self.allow_remote_code,
        }

    def export_files(self, directory: Path) -> dict[str, Any]:
        """Write the ESM config and tokenizer (not the weights) to ``directory/nucleotide-transformer``.

        Returns ``{"model_path": "nucleotide-transformer", "esm_config": None}``.
        """
        sub = Path(directory) / "nucleotide-transformer"
        save_config_and_tokenizer(
            self.model.config, self.tokenizer, sub, self._source_folder if self.allow_remote_code else None
        )
        return {"model_path": "nucleotide-transformer", "esm_config": None}

    # -- interface ------------------------------------------------------------------------------

    @property
    def width(self) -> int:
        """Hidden size of the ESM encoder."""
        return int(self.model.config.hidden_size)

    @property
    def attention_heads(self) -> list[int]:
        """One entry per transformer layer: its attention heads."""
        config = self.model.config
        return [int(config.num_attention_heads)] * int(config.num_hidden_layers)

    def tokenize_sequence(self, sequence: str) -> list[int]:
        """Token ids of one DNA string, without special tokens (validated as in :meth:`collate`)."""
        clean = _clean_sequence(sequence, 0, 0)
        return list(self.tokenizer(clean, add_special_tokens=False, verbose=False)["input_ids"])

    def collate(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Tokenize subjects' DNA strings into windows.

        Parameters
        ----------
        samples
            One entry per subject: a list of DNA strings (a bare string counts as a list of one).

        Returns
        -------
        dict
            ``input_ids``, ``attention_mask`` ``(B, K, L)``: the windows of each subject (``K`` =
            most windows in the batch, ``L`` = longest window); ``chunk_mask`` ``(B, K)`` bool;
            ``token_index`` ``(B, N)``: for each output token, its flat index into the subject's
            ``K * L`` window slots; ``token_mask`` ``(B, N)`` bool; ``sequence_index`` ``(B, N)``
            (which string, ``-1`` for special and padding tokens); ``base_offsets``
            ``(B, N, 2)`` (first base, one past the last base, in that string).

        Raises
        ------
        InputDataError
            For an empty sample or string, a letter other than ACGTN, or more than
            ``max_chunks`` windows.
        """
        subjects = list(samples)
        if not subjects:
            raise InputDataError("genetics: empty batch (no samples)")
        cleaned: list[list[str]] = []
        for i, sample in enumerate(subjects):
            seqs = [sample] if isinstance(sample, str) else list(sample)
            if not seqs:
                raise InputDataError(f"genetics sample {i}: no DNA sequence")
            cleaned.append([_clean_sequence(s, i, j) for j, s in enumerate(seqs)])
        flat = [s for seqs in cleaned for s in seqs]
        encoded = self.tokenizer(flat, add_special_tokens=False, verbose=False)["input_ids"]

        windows: list[list[list[int]]] = []  # subject -> window -> ids
        records: list[list[tuple[int, int, int, int, int]]] = []  # (window, slot, seq, start, end)
        cursor = 0
        for i, seqs in enumerate(cleaned):
            subject_windows: list[list[int]] = []
            subject_records: list[tuple[int, int, int, int, int]] = []
            for j, seq in enumerate(seqs):
                ids = list(encoded[cursor])
                cursor += 1
                lengths = [int(self._token_lengths.get(t, 0)) for t in ids]
                if sum(lengths) != len(seq):
                    raise InputDataError(
                        f"genetics sample {i}, sequence {j}: the model's tokenizer does not cover the "
                        f"sequence ({sum(lengths)} of {len(seq)} bases tokenized)"
                    )
                starts = [0]
                for n in lengths[:-1]:
                    starts.append(starts[-1] + n)
                for begin in range(0, len(ids), self.chunk_tokens):
                    body = ids[begin : begin + self.chunk_tokens]
                    w = len(subject_windows)
                    window = self._prefix_ids + body + self._suffix_ids
                    subject_windows.append(window)
                    for slot in range(len(window)):
                        k = slot - len(self._prefix_ids)
                        if 0 <= k < len(body):
                            start = starts[begin + k]
                            subject_records.append((w, slot, j, start, start + lengths[begin + k]))
                        else:
                            subject_records.append((w, slot, -1, 0, 0))
            if len(subject_windows) > self.max_chunks:
                raise InputDataError(
                    f"genetics sample {i}: {sum(len(s) for s in seqs)} bases need {len(subject_windows)} "
                    f"windows of {self.chunk_tokens} tokens, more than max_chunks={self.max_chunks}"
                )
            windows.append(subject_windows)
            records.append(subject_records)

        batch_size = len(windows)
        n_windows = max(len(w) for w in windows)
        length = max(len(win) for w in windows for win in w)
        n_tokens = max(len(r) for r in records)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((batch_size, n_windows, length), pad_id, dtype=torch.long)
        attention = torch.zeros(batch_size, n_windows, length, dtype=torch.long)
        chunk_mask = torch.zeros(batch_size, n_windows, dtype=torch.bool)
        token_index = torch.zeros(batch_size, n_tokens, dtype=torch.long)
        token_mask = torch.zeros(batch_size, n_tokens, dtype=torch.bool)
        sequence_index = torch.full((batch_size, n_tokens), -1, dtype=torch.long)
        base_offsets = torch.zeros(batch_size, n_tokens, 2, dtype=torch.long)
        for b, subject_windows in enumerate(windows):
            for w, window in enumerate(subject_windows):
                input_ids[b, w, : len(window)] = torch.tensor(window, dtype=torch.long)
                attention[b, w, : len(window)] = 1
                chunk_mask[b, w] = True
            if records[b]:
                rec = torch.tensor(records[b], dtype=torch.long)
                n = rec.shape[0]
                token_index[b, :n] = rec[:, 0] * length + rec[:, 1]
                token_mask[b, :n] = True
                sequence_index[b, :n] = rec[:, 2]
                base_offsets[b, :n] = rec[:, 3:5]
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "chunk_mask": chunk_mask,
            "token_index": token_index,
            "token_mask": token_mask,
            "sequence_index": sequence_index,
            "base_offsets": base_offsets,
        }

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        extra_tokens: "torch.Tensor | None" = None,
        extra_mask: "torch.Tensor | None" = None,
    ) -> BackboneOutput:
        """Encode every window, then gather each subject's tokens (see the module docstring)."""
        device = self.device
        input_ids = batch["input_ids"].to(device)
        attention = batch["attention_mask"].to(device).bool()
        chunk_mask = batch["chunk_mask"].to(device).bool()
        token_index = batch["token_index"].to(device)
        token_mask = batch["token_mask"].to(device).bool()
        batch_size, n_windows, length = input_ids.shape
        check_extra_inputs(extra_tokens, extra_mask, batch_size, self.width)

        rows = chunk_mask.reshape(-1).nonzero().squeeze(1)
        row_subject = torch.div(rows, n_windows, rounding_mode="floor")
        ids = input_ids.reshape(-1, length)[rows]
        mask = attention.reshape(-1, length)[rows]
        embeds = self._embed_tokens(ids, mask)
        extras = row_extra_mask = None
        if extra_tokens is not None:
            if extra_mask is None:
                extra_mask = torch.ones(extra_tokens.shape[:2], dtype=torch.bool, device=device)
            extra_mask = extra_mask.to(device).bool()
            row_extra_mask = extra_mask[row_subject]
            extras = self._embed_extras(extra_tokens.to(device=device, dtype=embeds.dtype)[row_subject], row_extra_mask)
        packed = pack_with_extras(embeds, mask, extras, row_extra_mask)
        with extra_keys(extra_key_flags(packed)):
            out = self.model(inputs_embeds=packed.embeds, attention_mask=packed.mask.long())
        hidden = (out[0] if isinstance(out, tuple) else out.last_hidden_state).float()
        row_tokens, row_extra = unpack_hidden(hidden, packed)

        width = hidden.shape[-1]
        slots = hidden.new_zeros(batch_size * n_windows, length, width).index_copy(0, rows, row_tokens)
        slots = slots.reshape(batch_size, n_windows * length, width)
        tokens = torch.gather(slots, 1, token_index.unsqueeze(-1).expand(-1, -1, width))
        tokens = tokens.masked_fill(~token_mask.unsqueeze(-1), 0.0)

        extra = None
        if row_extra is not None:
            assert extra_mask is not None  # set above whenever extra tokens were given
            summed = hidden.new_zeros(batch_size, row_extra.shape[1], width).index_add(0, row_subject, row_extra)
            counts = chunk_mask.sum(dim=1).clamp(min=1).to(hidden.dtype)
            extra = summed / counts.view(-1, 1, 1)
            with_extra = masked_mean(torch.cat([tokens, extra], dim=1), torch.cat([token_mask, extra_mask], dim=1))
            return BackboneOutput(tokens=tokens, mask=token_mask, pooled=masked_mean(tokens, token_mask), extra=extra,
                                  pooled_with_extra=with_extra)
        return BackboneOutput(tokens=tokens, mask=token_mask, pooled=masked_mean(tokens, token_mask), extra=extra)

    # -- embedding path ---------------------------------------------------------------------------

    def _embed_tokens(self, ids: torch.Tensor, mask: torch.Tensor, mode: "str | None" = None) -> torch.Tensor:
        """Input vectors for ``inputs_embeds`` that reproduce ``model(input_ids=ids, attention_mask=mask)``."""
        embeddings = cast(_EsmEmbeddings, self.model.embeddings)
        if (mode or self._embedding_mode) == "post":
            return embeddings(input_ids=ids, attention_mask=mask.long())
        # legacy: the model's inputs_embeds path adds positions / layer norm / mask itself,
        # but skips ESM token dropout, which is applied here exactly as on the input_ids path
        x = embeddings.word_embeddings(ids)
        if getattr(embeddings, "token_dropout", False):
            is_mask = ids == embeddings.mask_token_id
            x = x.masked_fill(is_mask.unsqueeze(-1), 0.0)
            observed = is_mask.sum(-1).float() / mask.sum(-1).float()
            x = (x * (1 - _ESM_MASK_RATIO_TRAIN) / (1 - observed)[:, None, None]).to(x.dtype)
        return x

    def _embed_extras(self, extras: torch.Tensor, extra_mask: torch.Tensor) -> torch.Tensor:
        """Appended tokens as encoder inputs (see the module docstring)."""
        if self._embedding_mode == "post":
            norm = getattr(self.model.embeddings, "layer_norm", None)
            if norm is not None:
                extras = norm(extras)
            return extras * extra_mask.unsqueeze(-1).to(extras.dtype)
        return extras

    @torch.no_grad()
    def _calibrate_embedding_path(self) -> str:
        """Pick the embedding path whose output equals ``model(input_ids=...)`` on a probe batch.

        Raises
        ------
        CheckpointError
            If neither path reproduces the model (unknown modelling code).
        """
        was_training = self.model.training
        self.model.eval()
        try:
            windows = [self._prefix_ids + self.tokenize_sequence(s)[: self.chunk_tokens] + self._suffix_ids for s in _PROBE]
            length = max(len(w) for w in windows)
            ids = torch.full((len(windows), length), self.tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, w in enumerate(windows):
                ids[r, : len(w)] = torch.tensor(w)
                mask[r, : len(w)] = 1
            ids, mask = ids.to(self.device), mask.to(self.device)
            reference = self.model(input_ids=ids, attention_mask=mask)[0].float()
            valid = mask.bool().unsqueeze(-1)
            scale = reference.abs().amax().clamp(min=1.0).item()
            tol = (1e-4 if self.dtype == torch.float32 else 5e-2) * scale
            errors = {}
            for mode in ("post", "legacy"):
                try:
                    got = self.model(inputs_embeds=self._embed_tokens(ids, mask.bool(), mode), attention_mask=mask)[0]
                except Exception:  # noqa: BLE001 - a path the code does not support
                    continue
                errors[mode] = float(((got.float() - reference) * valid).abs().amax())
            best = min(errors, key=errors.__getitem__) if errors else None
            if best is None or errors[best] > tol:
                raise CheckpointError(
                    "Nucleotide Transformer: feeding embeddings does not reproduce model(input_ids=...) "
                    f"(max error {errors}); this modelling code is not supported"
                )
            return best
        finally:
            self.model.train(was_training)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

_INVALID = re.compile(r"[^ACGTN]")


def _clean_sequence(sequence: Any, sample: int, index: int) -> str:
    """Upper-case a DNA string and check that it only holds A, C, G, T, N."""
    where = f"genetics sample {sample}, sequence {index}"
    if not isinstance(sequence, str):
        raise InputDataError(f"{where}: expected a DNA string, got {type(sequence).__name__}")
    seq = sequence.upper()
    if not seq:
        raise InputDataError(f"{where}: empty DNA sequence")
    bad = _INVALID.search(seq)
    if bad is not None:
        letters = sorted(set(_INVALID.findall(seq)))
        raise InputDataError(
            f"{where}: invalid character {bad.group()!r} at position {bad.start()} "
            f"(found {', '.join(repr(c) for c in letters)}); only A, C, G, T and N are allowed"
        )
    assert set(seq) <= VALID_BASES
    return seq


def _special_template(tokenizer: Any) -> "tuple[list[int], list[int]]":
    """Special token ids the tokenizer puts before and after a sequence (NT v1: ``[<cls>]``, ``[]``)."""
    sentinel = -7
    build = getattr(tokenizer, "build_inputs_with_special_tokens", None)
    if build is not None:
        try:
            built = list(build([sentinel]))
            at = built.index(sentinel)
            return built[:at], built[at + 1 :]
        except (ValueError, TypeError, IndexError):
            pass
    cls_id = getattr(tokenizer, "cls_token_id", None)
    return ([cls_id] if cls_id is not None else []), []


def _token_lengths(tokenizer: Any) -> dict[int, int]:
    """Number of bases each token id stands for (0 for special tokens)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    lengths = {}
    for token, idx in tokenizer.get_vocab().items():
        lengths[idx] = 0 if idx in special or not re.fullmatch(r"[ACGTN]+", token) else len(token)
    return lengths


def _position_limit(hf_config: Any, tokenizer: Any) -> int:
    """Most tokens one window may have (incl. special tokens).

    ESM absolute position ids start at ``padding_idx + 1``, so NT v1's 1002 position embeddings
    hold 1000 tokens.
    """
    pad = getattr(hf_config, "pad_token_id", None) or 0
    limit = int(hf_config.max_position_embeddings) - pad - 1
    tokenizer_limit = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < limit:
        limit = tokenizer_limit
    return limit
