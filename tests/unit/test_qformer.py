"""The modality-aware Q-former: shapes, masking of missing modalities, N_q = 0."""
import torch

from anchorad_core.fusion.qformer import AuxiliaryFeatures, ModalityAwareQFormer
from anchorad_core.modality import Modality

S, F, G = Modality.SMRI, Modality.FMRI, Modality.GENETICS


def _aux(b=3, widths={S: 6, F: 5, G: 7}, lengths={S: 4, F: 9, G: 2}, present=None):
    out = {}
    for m, w in widths.items():
        p = torch.ones(b, dtype=torch.bool) if present is None else present[m]
        mask = torch.ones(b, lengths[m], dtype=torch.bool)
        out[m] = AuxiliaryFeatures(torch.randn(b, lengths[m], w), mask, p)
    return out


def test_output_shape_is_four_blocks_of_nq_tokens():
    q = ModalityAwareQFormer({S: 6, F: 5, G: 7}, out_width=16, width=8, num_queries=4, num_heads=4)
    out = q(_aux(), batch_size=3, return_attention=True)
    assert out.tokens.shape == (3, 16, 16)
    assert out.mask.shape == (3, 16) and out.mask.all()
    assert out.block_names == ["smri", "fmri", "genetics", "cross"]
    assert out.attention["fmri"].shape == (3, 4, 4, 9)
    assert out.attention["cross"].shape == (3, 4, 4, 12)


def test_attention_rows_sum_to_one_over_keys():
    q = ModalityAwareQFormer({S: 6, F: 5, G: 7}, out_width=16, width=8, num_queries=4)
    out = q(_aux(), batch_size=3, return_attention=True)
    for weights in out.attention.values():
        torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))


def test_missing_modality_block_is_masked_and_ignored():
    present = {S: torch.tensor([True, False, True]), F: torch.ones(3, dtype=torch.bool), G: torch.ones(3, dtype=torch.bool)}
    q = ModalityAwareQFormer({S: 6, F: 5, G: 7}, out_width=16, width=8, num_queries=4).eval()
    aux = _aux(present=present)
    out = q(aux, batch_size=3, return_attention=True)
    assert not out.mask[1, :4].any() and out.mask[1, 4:].all()
    assert torch.all(out.tokens[1, :4] == 0)
    # The cross-modal queries of subject 1 never attend to the missing sMRI block...
    assert torch.all(out.attention["cross"][1, :, :, :4] == 0)
    # ...so changing the missing modality's placeholder tokens changes nothing for subject 1.
    aux[S].tokens[1] = torch.randn_like(aux[S].tokens[1]) * 100
    again = q(aux, batch_size=3)
    torch.testing.assert_close(again.tokens[1], out.tokens[1])


def test_all_auxiliaries_missing_masks_everything_and_stays_finite():
    absent = {m: torch.zeros(2, dtype=torch.bool) for m in (S, F, G)}
    q = ModalityAwareQFormer({S: 6, F: 5, G: 7}, out_width=16, width=8, num_queries=4)
    out = q(_aux(b=2, present=absent), batch_size=2)
    assert not out.mask.any()
    assert torch.isfinite(out.tokens).all()


def test_modality_absent_from_dict_counts_as_missing():
    q = ModalityAwareQFormer({S: 6, F: 5, G: 7}, out_width=16, width=8, num_queries=2)
    aux = _aux()
    del aux[F]
    out = q(aux, batch_size=3)
    assert not out.mask[:, 2:4].any() and out.mask[:, :2].all()


def test_zero_queries_gives_empty_h_a():
    q = ModalityAwareQFormer({S: 6, F: 5, G: 7}, out_width=16, width=8, num_queries=0)
    out = q(_aux(), batch_size=3)
    assert out.tokens.shape == (3, 0, 16) and out.mask.shape == (3, 0)


def test_paper_size_llama_round_trains_a_q_former_under_30m_parameters():
    """LLaMA-2-13B anchor, UniFormer-S / Brain-JEPA ViT-B / NT-500M auxiliaries, N_q = 16, width 256.

    Counted on the meta device (nothing allocated), widths read from the presets.
    """
    from anchorad_core.backbones.registry import resolve_config
    from anchorad_core.fusion.anchored_round import AnchoredRound
    from anchorad_core.training.config import TrainConfig

    smri = resolve_config("brainmvp-uniformer-s")["embed_dim"][-1]
    fmri = resolve_config("brainjepa-vit-b")["embed_dim"]
    dna = resolve_config("nt-v1-500m-human-ref")["reference_architecture"]["hidden_size"]
    llama = resolve_config("llama-2-13b")["reference_architecture"]
    width = llama["hidden_size"]
    options = TrainConfig().round_options()
    with torch.device("meta"):
        round_ = AnchoredRound(Modality.CLINICAL, {Modality.SMRI: smri, Modality.FMRI: fmri, Modality.GENETICS: dna},
                               width, width, num_queries=16, num_heads=8, depth=options["depth"],
                               qformer_width=options["qformer_width"],
                               attention_heads=[llama["num_attention_heads"]] * llama["num_hidden_layers"])
    qformer = sum(p.numel() for p in round_.qformer.parameters())
    assert qformer <= 30_000_000, qformer
    # its parts: input projections to 256, queries, one layer per block, the 256 -> 5120 projection
    projections = sum(w * 256 + 256 for w in (smri, fmri, dna)) + 256 * width + width
    assert projections < qformer < projections + 4 * 1_000_000


def _with_readouts(aux, widths={S: 3, F: 4, G: 2}):
    for m, f in aux.items():
        f.readout = torch.randn(f.tokens.shape[0], widths[m])
    return aux


def test_readout_keys_are_attended_and_token_maps_stay_distributions():
    q = ModalityAwareQFormer({S: 6, F: 5, G: 7}, out_width=16, width=8, num_queries=4,
                             readout_widths={S: 3, F: 4, G: 2})
    aux = _with_readouts(_aux())
    out = q(aux, batch_size=3, return_attention=True)
    assert out.attention["fmri"].shape == (3, 4, 4, 9)  # tokens only; the readout share apart
    share = out.readout_attention["fmri"]
    assert share.shape == (3, 4, 4) and bool(((share > 0) & (share < 1)).all())
    for name in ("smri", "fmri", "genetics"):
        torch.testing.assert_close(out.attention[name].sum(-1), torch.ones(3, 4, 4))
    # the readout changes H_a: it is read
    aux[F].readout = aux[F].readout + 1.0
    assert (q(aux, batch_size=3).tokens - out.tokens).abs().max() > 1e-4


def test_a_missing_modality_readout_is_masked_too():
    present = {S: torch.tensor([True, False, True]), F: torch.ones(3, dtype=torch.bool), G: torch.ones(3, dtype=torch.bool)}
    q = ModalityAwareQFormer({S: 6, F: 5, G: 7}, out_width=16, width=8, num_queries=4,
                             readout_widths={S: 3, F: 4, G: 2}).eval()
    aux = _with_readouts(_aux(present=present))
    out = q(aux, batch_size=3)
    aux[S].readout[1] = 1e3  # garbage in the missing subject's readout row changes nothing
    aux[S].tokens[1] = -1e3
    again = q(aux, batch_size=3)
    torch.testing.assert_close(again.tokens[1], out.tokens[1])
    assert not again.mask[1, :4].any()


def test_a_qformer_that_reads_readouts_refuses_features_without_one():
    import pytest

    q = ModalityAwareQFormer({S: 6}, out_width=16, width=8, num_queries=2, readout_widths={S: 3})
    with pytest.raises(ValueError, match="readout"):
        q({S: AuxiliaryFeatures(torch.randn(1, 4, 6), torch.ones(1, 4, dtype=torch.bool), torch.ones(1, dtype=torch.bool))}, 1)
