"""``decor_numerics = "stream"``: the unit's per-sample schedule in float64, checked against the integer model."""

from __future__ import annotations

import torch

from analogdecorr.config import resolve
from analogdecorr.cosim.stream import StreamDecorrelator
from analogdecorr.decor import num_update_rows
from analogdecorr.train import Trainer, train

# W = 18, F = 14 and a scale that saturates no digits pixel (max |x| 36 of 64): the unit's z and R are the
# stream's up to ~1e-4 (R with 24 fraction bits: its rounding is not what is measured)
WIDE = {"dataset": "digits", "hidden": "16", "epochs": 1, "batch_size": 64, "decor": "offdiag", "decor_lr": 1e-2,
        "lr": 1e-3, "unit_width": 18, "cosim_record": 0, "decor_scale": 0.125,
        "unit_r_frac": 24}
QUIET = {"progress": False, "log": lambda s: None}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def decorrelators(tmp_path, batches):
    """Layer 0's decorrelator for each numerics, fed the same training batches; returns them and their last z."""
    out = {}
    for numerics, extra in (("stream", {}), ("fixed", {}), ("float", {"decor_centring": "running"})):
        cfg = resolve({}, {**WIDE, "decor_numerics": numerics, "out": str(tmp_path / numerics), **extra})
        trainer = Trainer(cfg, **QUIET)
        decor = trainer.net.layers[0].decor
        decor.train()
        if numerics == "float":  # the float rule at the unit's η per row: the same step per batch
            k = num_update_rows(64, 0.1)
            decor.lr = out["stream"][0].lr * k
        for xb in batches(trainer):
            z = decor(xb)
        out[numerics] = (decor, z)
    return out


def test_stream_is_the_unit_without_its_words_and_differs_from_the_batch_rule(tmp_path):
    """Over 20 batches the stream's R, mean and z match the integer model's at W = 18 to ~1e-4, ten times closer
    than the float rule's one step per batch (same lr per row, running centring) gets: the schedule is the unit's."""
    def batches(trainer):
        x = trainer.data.x_train
        return [x[i * 64 : (i + 1) * 64] for i in range(20)]

    got = decorrelators(tmp_path, batches)
    stream, z_s = got["stream"]
    fixed, z_f = got["fixed"]
    flt, z_b = got["float"]
    assert isinstance(stream, StreamDecorrelator)
    r_unit = torch.ldexp(fixed.R_int.double(), torch.tensor(-fixed.fmt.r_frac))
    assert rel(stream.R, torch.eye(64)) > 0.05  # R moved
    d_fixed, d_batch = rel(stream.R, r_unit), rel(flt.R, r_unit)
    assert d_fixed < 2e-3 and d_fixed * 10 < d_batch, (d_fixed, d_batch)
    assert rel(z_s, z_f) < 2e-3 and rel(z_s, z_f) * 10 < rel(z_b, z_f), (rel(z_s, z_f), rel(z_b, z_f))
    assert rel(stream.running_mean, fixed.running_mean) < 2e-3


def test_np_replay_meets_the_state_each_clean_row_met(tmp_path):
    """The clean rows replay to the clean z exactly; perturbed rows give the integer model's replay (to ~1e-4),
    and the replay changes no state."""
    x_all = None

    def batches(trainer):
        nonlocal x_all
        x_all = trainer.data.x_train
        return [x_all[i * 64 : (i + 1) * 64] for i in range(3)]

    got = decorrelators(tmp_path, batches)
    stream, z = got["stream"]
    fixed, _ = got["fixed"]
    x = x_all[128:192]
    R = stream.R.clone()
    assert torch.equal(stream.replay_last(x), z)
    xp = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    zp_s, zp_f = stream.replay_last(xp), fixed.replay_last(xp)
    assert rel(zp_s, zp_f) < 2e-3
    k = num_update_rows(64, 0.1)
    # rows before k saw states that moved row by row: replaying them all with the final state is measurably off
    assert rel(stream.transform(xp[:k], stream.running_mean, stream.R), zp_f[:k]) > 5 * rel(zp_s[:k], zp_f[:k])
    assert torch.equal(stream.R, R)


def test_a_stream_run_trains_next_to_the_unit(tmp_path):
    """End to end (NP, both layers, one epoch): the stream run's R stays 10 times closer to the unit run's than
    either is to where they started."""
    runs = {}
    for numerics in ("stream", "fixed"):
        cfg = resolve({}, {**WIDE, "decor_numerics": numerics, "out": str(tmp_path / numerics)})
        res = train(cfg, **QUIET)
        runs[numerics] = torch.load(tmp_path / numerics / "checkpoint.pt", weights_only=True)["model"], res
    s, f = runs["stream"][0], runs["fixed"][0]
    for layer in (0, 1):
        r_frac = runs["fixed"][1]["cosim"]["layers"][layer]["format"]["r_frac"]
        r_unit = torch.ldexp(f[f"{layer}.decor.R_int"].double(), torch.tensor(-r_frac))
        eye = torch.eye(r_unit.shape[0], dtype=torch.float64)
        moved, apart = rel(r_unit, eye), rel(s[f"{layer}.decor.R"], r_unit)
        assert moved > 0.02 and apart < moved / 10, (moved, apart)
