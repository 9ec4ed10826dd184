"""Transformer blocks, masks, batching and CL4SRec augmentations of lmrec.nn.sequence."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmrec.nn.sequence import (
    MASK,
    PAD,
    AugmentationConfig,
    BucketBatchSampler,
    SequenceCollator,
    SequenceDataset,
    SequenceEncoder,
    attention_mask,
    augment_pair,
    contrastive_loss,
    crop,
    item_tokens,
    last_state,
    mask_items,
    pad_left,
    reorder,
    trim_padding,
    windows,
)

torch.set_num_threads(1)  # tiny ops: extra threads only spin on a shared machine

seqs_strategy = st.lists(st.integers(0, 50), min_size=1, max_size=40).map(lambda x: np.asarray(x, np.int64))


# ---------------------------------------------------------------------------------------- masks
def test_attention_mask_causal_and_padding() -> None:
    valid = torch.tensor([[False, True, True], [True, True, True]])
    m = attention_mask(valid, causal=True)
    assert m.shape == (2, 1, 3, 3)
    # row 0: the padded key 0 is visible only to itself; the future is never visible
    assert m[0, 0].tolist() == [[True, False, False], [False, True, False], [False, True, True]]
    assert m[1, 0].tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    b = attention_mask(valid, causal=False)
    assert b[0, 0].tolist() == [[True, True, True], [False, True, True], [False, True, True]]


def _encoder(causal: bool) -> SequenceEncoder:
    torch.manual_seed(0)
    return SequenceEncoder(16, max_len=8, n_blocks=2, n_heads=2, dropout=0.1, causal=causal).eval()


def test_causal_encoder_ignores_the_future() -> None:
    enc = _encoder(causal=True)
    x = torch.randn(1, 6, 16)
    valid = torch.ones(1, 6, dtype=torch.bool)
    y = x.clone()
    y[:, 4:] = torch.randn(1, 2, 16)
    with torch.no_grad():
        a, b = enc(x, valid), enc(y, valid)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_bidirectional_encoder_sees_both_sides() -> None:
    enc = _encoder(causal=False)
    x = torch.randn(1, 6, 16)
    valid = torch.ones(1, 6, dtype=torch.bool)
    y = x.clone()
    y[:, 5] = torch.randn(16)
    with torch.no_grad():
        assert not torch.allclose(enc(x, valid)[:, 0], enc(y, valid)[:, 0])


@pytest.mark.parametrize("causal", [True, False])
def test_padding_and_batch_width_do_not_change_the_query_state(causal: bool) -> None:
    """A sequence's last state is the same alone, padded, or batched with a longer one."""
    enc = _encoder(causal)
    table = torch.randn(30, 16)
    short = np.array([3, 7, 1])
    long = np.array([5, 9, 11, 2, 4, 8, 6])

    def run(seqs: list[np.ndarray], width: int | None = None) -> torch.Tensor:
        idx = torch.from_numpy(pad_left(seqs, width))
        emb = table[idx.clamp(min=0)] * (idx != PAD)[..., None]
        with torch.no_grad():
            return last_state(enc(emb, idx != PAD))

    alone = run([short])
    torch.testing.assert_close(run([short, long])[0], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(run([short], width=8)[0], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(run([short, long])).all()


def test_encoder_rejects_too_long_batches() -> None:
    enc = _encoder(causal=True)
    with pytest.raises(ValueError, match="max_len=8"):
        enc(torch.randn(1, 9, 16), torch.ones(1, 9, dtype=torch.bool))


def test_item_tokens_layout() -> None:
    idx = torch.tensor([[PAD, 0, 4, MASK]])
    assert item_tokens(idx, item_offset=1, mask_token=11).tolist() == [[0, 1, 5, 11]]
    with pytest.raises(ValueError, match="mask token"):
        item_tokens(idx, item_offset=1, mask_token=None)


# ---------------------------------------------------------------------------------------- batching
def test_pad_left_truncates_oldest_and_trim() -> None:
    out = pad_left([np.array([1, 2, 3, 4]), np.array([7])], 3)
    assert out.tolist() == [[2, 3, 4], [PAD, PAD, 7]]
    wide = pad_left([np.array([1]), np.array([2, 3])], 5)
    assert trim_padding(wide).tolist() == [[PAD, 1], [2, 3]]


@given(st.lists(seqs_strategy, min_size=1, max_size=5), st.integers(2, 12))
@settings(max_examples=60, deadline=None)
def test_windows_cover_every_transition_once(seqs: list[np.ndarray], width: int) -> None:
    wins = windows(seqs, width)
    assert all(2 <= len(w) <= width for w in wins)
    got = sorted((int(a), int(b)) for w in wins for a, b in itertools.pairwise(w))
    want = sorted((int(a), int(b)) for s in seqs for a, b in itertools.pairwise(s))
    assert got == want


def test_bucket_sampler_covers_all_and_groups_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=500)
    torch.manual_seed(0)
    sampler = BucketBatchSampler(range(500), 32, lengths=lengths)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 16
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(500))
    # similar lengths per batch: padded tokens far below a random batching's
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_padded = sum(32 * lengths[rng.permutation(500)[:32]].max() for _ in range(16))
    assert padded < 0.75 * random_padded
    torch.manual_seed(0)
    assert list(BucketBatchSampler(range(500), 32, lengths=lengths)) == batches  # repeatable under a seed
    assert list(sampler) != batches  # ...and different from epoch to epoch


def test_bucket_sampler_batches_a_shard_as_lightning_builds_it_under_ddp() -> None:
    """Lightning re-creates the batch sampler as ``cls(DistributedSampler(dataset), batch_size=..., drop_last=...)``."""
    seqs = [np.arange(n) for n in np.random.default_rng(1).integers(1, 50, size=101)]
    dataset = SequenceDataset(seqs)
    shards = [
        torch.utils.data.DistributedSampler(dataset, num_replicas=2, rank=r, shuffle=True, seed=0)
        for r in (0, 1)
    ]
    got = [list(BucketBatchSampler(s, batch_size=8, drop_last=False)) for s in shards]
    assert len(got[0]) == len(got[1]) == len(BucketBatchSampler(shards[0], 8)) == 7
    covered = {i for rank in got for b in rank for i in b}
    assert covered == set(range(101))  # DistributedSampler pads one shard with a repeat
    # still length-bucketed within the shard: far less padding than the shard's own order
    shard = list(shards[0])
    padded = sum(len(b) * max(len(seqs[i]) for i in b) for b in got[0])
    unsorted = sum(
        len(b) * max(len(seqs[i]) for i in b) for b in (shard[j : j + 8] for j in range(0, len(shard), 8))
    )
    assert padded < 0.8 * unsorted
    with pytest.raises(ValueError, match="lengths"):
        BucketBatchSampler(range(3), 2)


def test_collator_next_item_targets() -> None:
    torch.manual_seed(0)
    out = SequenceCollator(width=4)([np.array([1, 2, 3, 4, 5, 6]), np.array([7, 8])])
    assert out["inputs"].tolist() == [[2, 3, 4, 5], [PAD, PAD, PAD, 7]]
    assert out["targets"].tolist() == [[3, 4, 5, 6], [PAD, PAD, PAD, 8]]


def test_collator_masked_objective() -> None:
    torch.manual_seed(0)
    seqs = [np.arange(1, 30), np.array([40, 41]), np.array([50])]
    coll = SequenceCollator(width=20, objective="masked", mask_prob=0.3, last_mask_prob=0.0)
    for _ in range(20):
        out = coll(seqs)
        inputs, targets = out["inputs"].numpy(), out["targets"].numpy()
        masked = inputs == MASK
        assert (masked == (targets != PAD)).all()
        assert masked.any(axis=1).all(), "every row predicts something"
        real = pad_left(seqs, 20)[:, -inputs.shape[1] :]
        assert (targets[masked] == real[masked]).all()
        assert (inputs[~masked] == real[~masked]).all()
    last = SequenceCollator(width=20, objective="masked", last_mask_prob=1.0)(seqs)
    assert (last["inputs"][:, -1] == MASK).all() and ((last["inputs"] == MASK).sum(1) == 1).all()


def test_collator_views_for_contrastive_learning() -> None:
    torch.manual_seed(0)
    aug = AugmentationConfig(kinds=("crop",), crop_ratio=0.5)
    out = SequenceCollator(width=10, augment=aug)([np.arange(1, 12), np.arange(20, 25)])
    assert set(out) == {"inputs", "targets", "view1", "view2"}
    assert (out["view1"] != PAD).sum(1).tolist() == [5, 2]  # half of the 10 and 4 input items
    bert = SequenceCollator(width=10, objective="masked", augment=aug)([np.arange(1, 12)])
    assert bert["view1"][0, -1] == MASK and bert["view2"][0, -1] == MASK


# ---------------------------------------------------------------------------------------- augmentations
@given(seqs_strategy, st.floats(0.1, 1.0), st.integers(0, 2**31))
@settings(max_examples=80, deadline=None)
def test_crop_is_a_contiguous_subsequence(seq: np.ndarray, ratio: float, seed: int) -> None:
    out = crop(seq, ratio, np.random.default_rng(seed))
    n = len(out)
    assert n == max(1, int(np.ceil(ratio * len(seq))))
    assert any((seq[s : s + n] == out).all() for s in range(len(seq) - n + 1))


@given(seqs_strategy, st.floats(0.0, 0.9), st.integers(0, 2**31))
@settings(max_examples=80, deadline=None)
def test_mask_items_masks_the_right_number(seq: np.ndarray, ratio: float, seed: int) -> None:
    out = mask_items(seq, ratio, np.random.default_rng(seed))
    assert (out == MASK).sum() == int(ratio * len(seq))
    keep = out != MASK
    assert (out[keep] == seq[keep]).all()


@given(seqs_strategy, st.floats(0.0, 1.0), st.integers(0, 2**31))
@settings(max_examples=80, deadline=None)
def test_reorder_permutes_one_span(seq: np.ndarray, ratio: float, seed: int) -> None:
    out = reorder(seq, ratio, np.random.default_rng(seed))
    assert sorted(out.tolist()) == sorted(seq.tolist())
    changed = np.flatnonzero(out != seq)
    if len(changed):
        assert changed[-1] - changed[0] < max(int(ratio * len(seq)), 2)


def test_augment_pair_gives_two_different_views() -> None:
    rng = np.random.default_rng(0)
    seqs = [np.arange(1, 40)] * 4
    v1, v2 = augment_pair(seqs, AugmentationConfig(), 50, rng)
    assert v1.shape[0] == v2.shape[0] == 4
    assert not np.array_equal(v1, v2)
    with pytest.raises(ValueError, match="unknown augmentation"):
        AugmentationConfig(kinds=("shuffle",)).apply(seqs[0], rng)  # type: ignore[arg-type]


def test_contrastive_loss_prefers_agreeing_views() -> None:
    torch.manual_seed(0)
    z = torch.randn(16, 8)
    same = contrastive_loss(z, z + 0.01 * torch.randn(16, 8), temperature=0.2)
    other = contrastive_loss(z, torch.randn(16, 8), temperature=0.2)
    assert same < 0.5 < 2.0 < other  # log(16) = 2.77 for unrelated views
    w = torch.randn(16, 8, requires_grad=True)
    contrastive_loss(w, w.roll(1, 0)).backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
