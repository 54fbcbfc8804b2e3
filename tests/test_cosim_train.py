"""Fixed-point decorrelation in training: the unit's integer model on the training stream, bit for bit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from analogdecorr.cli import main
from analogdecorr.config import resolve
from analogdecorr.cosim.decorrelator import FixedDecorrelator
from analogdecorr.cosim.record import load_recording, recording_path
from analogdecorr.cosim.replay import model_replay
from analogdecorr.cosim.unit import centre_shift_for_momentum, shift_for_lr
from analogdecorr.decor import num_update_rows
from analogdecorr.errors import ConfigError
from analogdecorr.metrics import evaluate
from analogdecorr.train import Trainer, train

# digits: 1797 rows, 20 % test, 10 % of the rest validation -> 1294 training rows per epoch
N_TRAIN = 1797 - round(1797 * 0.2) - round((1797 - round(1797 * 0.2)) * 0.1)
SMALL = {"dataset": "digits", "hidden": "16", "epochs": 2, "batch_size": 64, "decor": "offdiag",
         "decor_lr": 1e-3, "lr": 1e-3, "decor_numerics": "fixed"}
QUIET = {"progress": False, "log": lambda s: None}


def small(tmp_path, name="run", **kw):
    return resolve({}, {**SMALL, "out": str(tmp_path / name), **kw})


def test_recorded_stream_is_the_model_across_batches_epochs_and_a_resume(tmp_path):
    """The recording spans 2 epochs (many batch boundaries); the model run on it in one call gives its z word
    for word; a run interrupted after epoch 1 and resumed records the same stream and ends in the same state."""
    limit = 2000  # N_TRAIN rows per epoch: the recording crosses an epoch boundary and the resume
    train(small(tmp_path, "full", epochs=2, cosim_record=limit), **QUIET)
    train(small(tmp_path, "part", epochs=1, cosim_record=limit), **QUIET)
    assert load_recording(recording_path(tmp_path / "part", 0)).samples == N_TRAIN  # partial, saved per epoch
    train(small(tmp_path, "part", epochs=2, cosim_record=limit), resume=True, **QUIET)
    for layer in (0, 1):
        a = load_recording(recording_path(tmp_path / "full", layer))
        b = load_recording(recording_path(tmp_path / "part", layer))
        assert a.samples == b.samples == limit
        for key in ("x", "learn", "z", "R0", "mu0"):
            assert np.array_equal(getattr(a, key), getattr(b, key)), key
        k = num_update_rows(64, 0.1)
        assert a.learn[:64].sum() == k and a.learn[:k].all()  # the first k rows of a batch learn
        z, _ = model_replay(a)
        assert np.array_equal(z, a.z)
        assert np.abs(a.z).max() > 100  # the stream carries real values, not zeros
    sa = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    sb = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["model"]
    for key in ("0.decor.R_int", "0.decor.mu_int", "1.decor.R_int", "0.decor.lfsr", "0.decor.scale"):
        assert torch.equal(sa[key], sb[key]), key
    assert not torch.equal(sa["0.decor.R_int"], torch.eye(64, dtype=torch.int64) << 21)  # R moved


def test_recording_matches_a_fresh_model_run_batch_by_batch(tmp_path):
    """The decorrelator's state after a batch is the model's state after that batch's rows."""
    trainer = Trainer(small(tmp_path), **QUIET)
    decor = trainer.net.layers[0].decor
    assert isinstance(decor, FixedDecorrelator)
    trainer.net.train()
    x = trainer.data.x_train
    decor(x[:64])
    decor(x[64:100])  # a short batch: floor(0.1·36) + 1 = 4 learning rows
    rec = decor.recorder
    assert rec.n == 100 and rec._learn[0].sum() + rec._learn[1].sum() == 7 + 4
    from analogdecorr.cosim.record import Recording

    r = Recording(0, decor.fmt, decor.scale_value, np.concatenate(rec._x).astype(np.int64),
                  np.concatenate(rec._learn), np.concatenate(rec._z).astype(np.int64), *rec.start[:2],
                  rec.start[2], 100)
    z, state = model_replay(r)
    assert np.array_equal(z, r.z)
    assert np.array_equal(state.R, decor.R_int.numpy())


@pytest.mark.parametrize("rule", ["bp", "fa", "np"])
def test_every_rule_learns_with_fixed_numerics(tmp_path, rule):
    lr = {"bp": 3e-3, "fa": 3e-3, "np": 3e-2}[rule]
    cfg = small(tmp_path, rule=rule, epochs=1, lr=lr, optimizer="sgd" if rule == "np" else "adam", sigma=1e-2)
    trainer = Trainer(cfg, **QUIET)
    before, _ = evaluate(trainer.net, trainer.data.x_train, trainer.data.y_train)
    res = trainer.run()
    after = res["epochs"][-1]["train_loss"]
    assert after < before - 0.02, (before, after)
    if rule == "bp":  # the straight-through surrogate gives the decorrelator's input a gradient
        assert all(p.grad is not None for p in trainer.net.layers[0].linear.parameters())


def test_results_hold_per_layer_saturation_and_distances(tmp_path):
    res = train(small(tmp_path, epochs=1), **QUIET)
    sec = res["cosim"]
    k = num_update_rows(64, 0.1)
    assert sec["unit"]["shift_derived"] is True
    assert sec["unit"]["fields"]["shift"] == shift_for_lr(1e-3, k) == round(-math.log2(1e-3 / k))
    assert [lay["format"]["size"] for lay in sec["layers"]] == [64, 16]
    for row in res["epochs"]:
        assert [c["layer"] for c in row["cosim"]] == [0, 1]
        for c in row["cosim"]:
            full = N_TRAIN // 64
            assert c["samples"] == N_TRAIN
            assert c["learned"] == full * k + num_update_rows(N_TRAIN - full * 64, 0.1)
            assert {"x", "z", "v", "r"} <= set(c["saturation"])
            assert all(isinstance(v, int) and v >= 0 for v in c["saturation"].values())
            assert 0 <= c["r_rel_dist"] < 0.5 and 0 <= c["z_rel_dist"] < 2
            assert c["scale"] > 0 and math.log2(c["scale"]).is_integer()
    assert res["epochs"][-1]["cosim"][0]["r_rel_dist"] > 0  # R moved, and not exactly like float
    on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
    assert on_disk["cosim"]["scales"] == [c["scale"] for c in res["epochs"][-1]["cosim"]]
    from analogdecorr.plots import plot_results

    written = plot_results(tmp_path / "run" / "results.json", tmp_path / "png")
    assert tmp_path / "png" / "cosim.png" in written
    assert (tmp_path / "png" / "cosim.png").read_bytes()[:4] == b"\x89PNG"


def test_given_shift_is_recorded_as_given(tmp_path):
    res = train(small(tmp_path, epochs=1, unit_shift=9, cosim_record=0), **QUIET)
    assert res["cosim"]["unit"]["shift_derived"] is False and res["cosim"]["unit"]["fields"]["shift"] == 9
    assert [lay["format"]["shift"] for lay in res["cosim"]["layers"]] == [9, 9]  # given: not moved by the scale
    assert not (tmp_path / "run" / "cosim").exists()  # cosim_record = 0: nothing recorded


def test_a_derived_shift_follows_each_layers_scale_so_every_layer_learns_at_decor_lr(tmp_path):
    """The unit learns from x · scale, so its step in real units is 2^-s · scale²: each layer's shift is
    s + 2 log2(scale) (its R fraction bits follow), and every layer steps by decor_lr / k in real units; a
    resumed run keeps the formats its state was written in."""
    res = train(small(tmp_path, epochs=1, cosim_record=200), **QUIET)
    base = res["cosim"]["unit"]["fields"]
    scales = res["cosim"]["scales"]
    assert len(set(scales)) > 1  # digits' input and the hidden layer get different scales: the case that matters
    k = num_update_rows(64, 0.1)
    for lay, scale in zip(res["cosim"]["layers"], scales, strict=True):
        fmt = lay["format"]
        assert fmt["shift"] == base["shift"] + round(2 * math.log2(scale))
        assert fmt["r_frac"] == max(fmt["shift"] + 8, fmt["frac"])
        assert lay["eta_real"] == pytest.approx(2.0 ** -base["shift"]) == pytest.approx(1e-3 / k, rel=0.42)
        assert load_recording(recording_path(tmp_path / "run", lay["layer"])).fmt.to_dict() == fmt
    again = train(small(tmp_path, epochs=2, cosim_record=200), resume=True, **QUIET)
    assert again["cosim"]["layers"] == res["cosim"]["layers"]


def test_more_headroom_gives_smaller_scales_and_fewer_saturated_words(tmp_path):
    """decor_headroom = 3 puts every layer's first batch 4x further below the word range than the default 1, and
    the words that saturate later in training (digits' rare large pixels) become fewer."""
    runs = {h: train(small(tmp_path, f"h{h}", epochs=1, cosim_record=0, decor_headroom=h), **QUIET) for h in (1, 3)}
    assert [a / b for a, b in zip(runs[1]["cosim"]["scales"], runs[3]["cosim"]["scales"], strict=True)] == [4, 4]
    sat = {h: sum(c["saturation"]["x"] for c in r["epochs"][-1]["cosim"]) for h, r in runs.items()}
    assert sat[3] < sat[1], sat


def test_centre_shift_default_matches_float_momentum_per_learning_sample():
    assert centre_shift_for_momentum(7) == 6  # (1 - 2^-6)^7 = 0.896 ~ 0.9
    assert centre_shift_for_momentum(1) == 3  # one learning row: 2^-3 = 0.125 ~ 0.1


def _manifest(folder, **fmt):
    folder.mkdir()
    base = {"size": 64, "width": 16, "frac": 12, "r_width": 25, "r_frac": 21, "shift": 13}
    (folder / "manifest.json").write_text(json.dumps({"kind": "analogdecorr-hdl-export", "format": {**base, **fmt}}))
    return folder


def test_unit_manifest_gives_the_format_and_names_a_layer_of_another_width(tmp_path, capsys):
    unit = _manifest(tmp_path / "unit")
    with pytest.raises(ConfigError, match=r"layer 1's decorrelator has width 16 .* d = 64"):
        Trainer(small(tmp_path, unit=str(unit)), **QUIET)
    res = train(small(tmp_path, "one", unit=str(unit), hidden="64", decor="offdiag", epochs=1), **QUIET)
    assert res["cosim"]["layers"][0]["format"]["r_width"] == 25 and res["cosim"]["unit"]["source"] == str(unit)


@pytest.mark.parametrize("make,needle", [
    (lambda p: p / "absent", "does not exist"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "has no manifest.json"),
    (lambda p: _bad(p, "{not json"), "corrupt"),
    (lambda p: _bad(p, json.dumps({"kind": "x"})), "no 'format'"),
    (lambda p: _bad(p, json.dumps({"format": {"size": 64, "width": 40}})), "invalid unit format"),
])
def test_bad_unit_manifest_is_one_line(tmp_path, capsys, make, needle):
    folder = make(tmp_path)
    code = main(["train", "--hidden", "16", "--epochs", "1", "--decor", "offdiag", "--decor-numerics", "fixed",
                 "--unit", str(folder), "--out", str(tmp_path / "r"), "--no-progress", "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


def _bad(p, text):
    folder = p / "bad"
    folder.mkdir()
    (folder / "manifest.json").write_text(text)
    return folder


def test_a_scale_that_saturates_the_first_batch_names_the_layer_and_the_fix(tmp_path):
    with pytest.raises(ConfigError, match=r"layer 0's decorrelator: \d+% of the first batch saturates.*--decor-scale"):
        train(small(tmp_path, decor_scale=64.0), **QUIET)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("kw,needle", [
    ({"decor": "scaled"}, "implements the rules offdiag"),
    ({"decor_scale": 3.0}, "power of two"),
    ({"cosim_record": -1}, "cosim_record"),
    ({"unit_width": 30}, "width=30"),
])
def test_bad_fixed_settings_are_config_errors(tmp_path, kw, needle):
    with pytest.raises(ConfigError, match=needle):
        Trainer(small(tmp_path, **kw), **QUIET)


def test_np_perturbed_rows_meet_the_state_their_clean_row_met(tmp_path):
    """replay_last: row t < k with the state before learning row t, the others with the state after the batch;
    the same rows as the clean pass give the clean z exactly; no state changes."""
    from analogdecorr.fixed.model import UnitState, run

    trainer = Trainer(small(tmp_path), **QUIET)
    decor = trainer.net.layers[0].decor
    trainer.net.train()
    x = trainer.data.x_train[:64]
    decor(trainer.data.x_train[64:128])  # R and the mean have moved: the states differ row by row
    state0 = decor.state
    state0 = UnitState(state0.R.copy(), state0.mu.copy(), state0.lfsr)
    z = decor(x)
    after = decor.R_int.clone()
    assert torch.equal(decor.replay_last(x), z)
    xp = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    zp = decor.replay_last(xp)
    assert torch.equal(decor.R_int, after)
    from analogdecorr.cosim.scale import quantize

    X, _ = quantize(x, decor.scale_value, decor.fmt)
    P, _ = quantize(xp, decor.scale_value, decor.fmt)
    k, state, want = num_update_rows(64, 0.1), state0, []
    for t in range(k):
        want.append(run(decor.fmt, P[t : t + 1], learn=False, state=state).z[0])
        state = run(decor.fmt, X[t : t + 1], learn=True, state=state).state
    want = np.concatenate([np.array(want), run(decor.fmt, P[k:], learn=False, state=state).z])
    assert np.array_equal(np.rint(zp.double().numpy() * decor.scale_value * 2**decor.fmt.frac), want)


def test_stochastic_rounding_carries_the_lfsr_across_batches(tmp_path):
    res = train(small(tmp_path, epochs=1, unit_rounding="stochastic", cosim_record=600), **QUIET)
    rec = load_recording(recording_path(tmp_path / "run", 0))
    z, state = model_replay(rec)
    assert np.array_equal(z, rec.z) and state.lfsr != rec.fmt.lfsr_seed
    assert res["cosim"]["layers"][0]["format"]["rounding"] == "stochastic"


@pytest.mark.parametrize("args,needle", [
    (["--decor", "scaled"], "implements the rules offdiag, whiten"),
    (["--unit-rounding", "stochastc"], "unit_rounding"),
    (["--decor-scale", "0.3"], "power of two"),
    (["--unit-width", "7"], "width=7 is outside 8..18"),
])
def test_fixed_flags_give_one_line_errors(tmp_path, capsys, args, needle):
    code = main(["train", "--hidden", "16", "--epochs", "1", "--decor", "offdiag", "--decor-numerics", "fixed",
                 *args, "--out", str(tmp_path / "r"), "--no-progress", "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


@pytest.mark.parametrize("kw", [{"decor": "whiten"}, {"backend": "analog", "preset": "EcRamPreset", "hidden": "16",
                                                      "drift_times": [], "rule": "np"}])
def test_whiten_and_analog_runs_record_the_models_stream(tmp_path, kw):
    res = train(small(tmp_path, epochs=1, cosim_record=500, **kw), **QUIET)
    assert res["cosim"]["layers"][0]["format"]["rule"] == kw.get("decor", "offdiag")
    for layer in (0, 1):
        rec = load_recording(recording_path(tmp_path / "run", layer))
        z, _ = model_replay(rec)
        assert rec.samples == 500 and np.array_equal(z, rec.z)
    assert math.isfinite(res["epochs"][-1]["test_loss"])
