"""Batches by length: every sample once, budgets kept, original order and values restored."""
import numpy as np
import pytest
import torch

from anchorad_core.training.length_batching import batched_by_length, length_batches, sample_lengths


def test_every_position_once_longest_first_within_the_limits():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 129, size=37)
    batches = length_batches(lengths, max_samples=8, max_tokens=400)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(37))
    assert list(lengths[flat]) == sorted(lengths, reverse=True)
    for b in batches:
        assert 1 <= len(b) <= 8 and len(b) * lengths[b].max() <= 400


def test_fixed_size_inputs_keep_consecutive_chunks_and_a_long_sample_gets_its_own_batch():
    assert [b.tolist() for b in length_batches(np.ones(10, dtype=int), max_samples=4)] == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    batches = length_batches([10, 500, 10], max_samples=8, max_tokens=100)
    assert [b.tolist() for b in batches] == [[1], [0, 2]]
    assert length_batches([], 8) == []
    with pytest.raises(ValueError):
        length_batches([1], max_samples=0)


class _Words:
    """A stand-in text backbone: one token per word, right-padded."""

    def collate(self, notes):
        ids = [[len(w) for w in n.split()] for n in notes]
        longest = max(len(i) for i in ids)
        mask = torch.tensor([[1] * len(i) + [0] * (longest - len(i)) for i in ids])
        return {"input_ids": torch.tensor([i + [0] * (longest - len(i)) for i in ids]), "attention_mask": mask}


def test_batches_carry_the_positions_of_their_rows():
    notes = [" ".join(["w"] * k) for k in (3, 9, 1, 5, 9, 2)] + [None]
    assert sample_lengths(_Words(), notes[:6]).tolist() == [3, 9, 1, 5, 9, 2]
    seen = []
    for positions, batch in batched_by_length(_Words(), notes, [0, 1, 2, 3, 4, 5], max_samples=3):
        assert batch["attention_mask"].sum(1).tolist() == [len(notes[i].split()) for i in positions]
        seen.extend(positions.tolist())
    assert seen == [1, 4, 3, 0, 5, 2]


def test_anchored_probabilities_by_length_equal_one_subject_at_a_time(tmp_path):
    """The demo bundle on demo subjects whose notes differ in length: batching by length (and writing
    back at each subject's position) gives every subject the probabilities it gets alone."""
    from anchorad_core.data import load_cohort, make_demo_cohort
    from anchorad_core.inference import DiagnosisPipeline
    from anchorad_core.modality import Modality
    from anchorad_core.resources import resource_path
    from anchorad_core.training.features import FeatureCache
    from anchorad_core.training.inputs import CohortInputs
    from anchorad_core.training.phase2 import anchored_probabilities

    pipeline = DiagnosisPipeline(resource_path("demo/bundle"), device="cpu")
    make_demo_cohort(tmp_path / "cohort", 10, 3)
    cohort = load_cohort(tmp_path / "cohort")
    subjects = cohort.load_subjects(cohort.ids, pipeline.preprocess_config)
    inputs = CohortInputs.from_subjects(subjects)
    text = pipeline.model.backbone(Modality.CLINICAL)
    notes = [n for n in inputs.samples[Modality.CLINICAL] if n is not None]
    assert len(set(sample_lengths(text, notes).tolist())) > 3  # lengths differ: the order is shuffled
    cache = FeatureCache.compute(pipeline.model, inputs)
    batched, present = anchored_probabilities(pipeline.model, inputs, cache, batch_size=4)
    alone, present_alone = anchored_probabilities(pipeline.model, inputs, cache, batch_size=1)
    np.testing.assert_array_equal(present, present_alone)
    np.testing.assert_allclose(batched[present], alone[present], atol=1e-4)  # float32 batch-4 vs batch-1 differ by ~1e-5 on some CPUs
    assert np.isnan(batched[~present]).all()
    from anchorad_core.bench import anchored_in_cohort_order  # the benchmark's reference: cohort order

    np.testing.assert_allclose(anchored_in_cohort_order(pipeline.model, inputs, cache, 4), batched, atol=1e-4)
