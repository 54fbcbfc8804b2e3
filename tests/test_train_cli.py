"""The training loop and the command line: results, checkpoints, resume, divergence and one-line errors."""

from __future__ import annotations

import json
import math

import pytest
import torch

from analogdecorr import checkpoint as ckpt
from analogdecorr.cli import main
from analogdecorr.config import resolve
from analogdecorr.errors import DataError, DivergenceError
from analogdecorr.train import Trainer, train

SMALL = {"dataset": "digits", "hidden": "24,16", "epochs": 3, "batch_size": 64, "decor_lr": 1e-3, "lr": 1e-3}


def small(tmp_path, name="run", **kw):
    return resolve({}, {**SMALL, "out": str(tmp_path / name), **kw})


def test_cli_train_writes_results_checkpoint_and_plots(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--hidden", "24,16", "--epochs", "2", "--rule", "np", "--decor", "scaled",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["rule"] == "np" and res["config"]["hidden"] == [24, 16]
    assert {"torch", "aihwkit", "numpy"} <= set(res["versions"])
    assert [e["epoch"] for e in res["epochs"]] == [1, 2]
    for row in res["epochs"]:
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "seconds"):
            assert math.isfinite(row[key])
        assert len(row["corr_before"]) == len(row["corr_after"]) == 3  # one per layer
    # the first layer sees raw digits pixels: decorrelation must lower their correlation
    assert res["epochs"][-1]["corr_after"][0] < res["epochs"][-1]["corr_before"][0]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "learning_curves.png" in pngs and "corr_matrices.png" in pngs
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run into the same folder must not overwrite it
    assert main(["train", "--hidden", "24,16", "--epochs", "2", "--out", str(out), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("rule,decor", [("np", "scaled"), ("fa", "offdiag"), ("bp", "scaled")])
def test_resume_reproduces_an_uninterrupted_run(tmp_path, rule, decor):
    full = train(small(tmp_path, "full", rule=rule, decor=decor), progress=False, log=lambda s: None)
    train(small(tmp_path, "part", rule=rule, decor=decor, epochs=1), progress=False, log=lambda s: None)
    resumed = train(small(tmp_path, "part", rule=rule, decor=decor), resume=True, progress=False,
                    log=lambda s: None)
    strip = ("seconds",)
    a = [{k: v for k, v in e.items() if k not in strip} for e in full["epochs"]]
    b = [{k: v for k, v in e.items() if k not in strip} for e in resumed["epochs"]]
    assert a == b
    wa = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_divergence_names_the_layer_and_keeps_last_good_checkpoint(tmp_path):
    cfg = small(tmp_path, "div", rule="bp", decor="whiten", epochs=3)
    trainer = Trainer(cfg, progress=False, log=lambda s: None)
    trainer.cfg = resolve({}, {**SMALL, "out": cfg.out, "rule": "bp", "decor": "whiten", "epochs": 1})
    trainer.run()  # one good epoch → checkpoint
    good = ckpt.read_checkpoint(tmp_path / "div" / "checkpoint.pt")
    trainer.cfg = cfg
    for _, decor in trainer.net.decorrelators:
        decor.lr = 50.0  # far beyond lr·λ_max ~ 1
    with pytest.raises(DivergenceError) as err:
        trainer.run()
    msg = str(err.value)
    assert "layer" in msg and ("decor" in msg or "R" in msg)
    kept = ckpt.read_checkpoint(tmp_path / "div" / "checkpoint.pt")
    assert kept["epoch"] == good["epoch"] == 1
    for k, v in good["model"].items():
        assert torch.equal(v, kept["model"][k])
        assert torch.isfinite(kept["model"][k]).all()


@pytest.mark.parametrize("decor", ["centre", "whiten"])
def test_nan_reaching_a_hidden_decorrelator_is_a_divergence_not_a_data_error(tmp_path, decor):
    """Diverged weights make the next layer's input NaN: that is the run diverging (the sweep records it as
    diverged), not bad data (measured: NP + centre at lr 0.1 on mnist1d failed with the data message)."""
    cfg = small(tmp_path, decor, decor=decor, hidden="8,8", epochs=1)
    trainer = Trainer(cfg, progress=False, log=lambda s: None)
    with torch.no_grad():
        trainer.backend.layer_weight(trainer.net.layers[0]).fill_(float("inf"))
    with pytest.raises(DivergenceError, match=r"^layer 0's weights became NaN/Inf at epoch 1, step 1"):
        trainer.run()


def test_nan_in_an_input_batch_is_a_data_error(tmp_path):
    trainer = Trainer(small(tmp_path, "nan", epochs=1), progress=False, log=lambda s: None)
    trainer.data.x_train[7, 3] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        trainer.run()


def _idx_truncated(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    header = (2051).to_bytes(4, "big") + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (d / name).write_bytes(header + b"\0" * 100)  # far fewer than 10×28×28 pixels
    label = (2049).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes(10)
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (d / name).write_bytes(label)
    return d


def _idx_wrong_magic(tmp_path):
    d = _idx_truncated(tmp_path)
    (d / "train-images-idx3-ubyte").write_bytes(b"<html>not an idx file</html>" * 10)
    return d


@pytest.mark.parametrize(
    "args,expect",
    [
        (["--rule", "nps"], "np"),
        (["--dataset", "digit"], "digits"),
        (["--activation", "leaky"], "leaky_relu"),
        (["--sample-frac", "0"], "sample_frac"),
        (["--sample-frac", "1.5"], "sample_frac"),
        (["--lr", "0"], "lr"),
        (["--lr", "nan"], "lr"),
        (["--sigma", "-1"], "sigma"),
        (["--hidden", "0,10"], "hidden"),
        (["--hidden", ""], "hidden"),
        (["--dataset", "mnist", "--data-dir", "/nonexistent/dir"], "/nonexistent/dir"),
        (["--dataset", "mnist"], "data"),
        (["--backend", "analog", "--preset", "EcRamPrest"], "EcRamPreset"),
    ],
)
def test_bad_inputs_give_one_line_errors(tmp_path, capsys, args, expect):
    code = main(["train", "--epochs", "1", "--hidden", "8", "--out", str(tmp_path / "e"), "--no-progress", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert expect in err


@pytest.mark.parametrize("make,expect", [(_idx_truncated, "truncated"), (_idx_wrong_magic, "magic")])
def test_bad_idx_files_give_one_line_errors(tmp_path, capsys, make, expect):
    d = make(tmp_path)
    code = main(["train", "--dataset", "mnist", "--data-dir", str(d), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    assert expect in err.lower()


def test_unknown_config_key_names_the_closest(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text('dataset = "digits"\nhiden = [10]\n')
    code = main(["train", "--config", str(toml), "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "hiden" in err and "hidden" in err


def test_resume_with_a_different_config_is_refused(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", "--hidden", "8", "--epochs", "1", "--out", out, "--no-progress", "--no-plots"]) == 0
    code = main(["train", "--hidden", "8", "--epochs", "2", "--lr", "0.5", "--out", out, "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "lr" in err
    # resuming with the same config (more epochs) works
    assert main(["train", "--hidden", "8", "--epochs", "2", "--out", out, "--resume", "--no-progress",
                 "--no-plots"]) == 0
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert [e["epoch"] for e in res["epochs"]] == [1, 2]


def test_local_rule_on_an_inference_preset_is_refused(tmp_path, capsys):
    code = main(["train", "--backend", "analog", "--preset", "StandardHWATrainingPreset", "--rule", "np",
                 "--hidden", "8", "--epochs", "1", "--out", str(tmp_path / "hwa"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err
    assert "StandardHWATrainingPreset" in err and "--rule bp" in err


def test_sigma_below_float32_resolution_of_the_loss_warns_with_the_number(tmp_path):
    with pytest.warns(UserWarning, match=r"sigma 1e-12 .* exactly 0"):
        train(small(tmp_path, "tiny", rule="np", sigma=1e-12, epochs=1), progress=False, log=lambda s: None)


def test_sigma_below_analog_read_noise_warns_once_with_both_numbers(tmp_path):
    cfg = small(tmp_path, "noisy", backend="analog", preset="EcRamPreset", rule="np", sigma=0.01,
                io={"out_noise": 0.1}, epochs=1, hidden="8", drift_times=[])
    with pytest.warns(UserWarning) as record:
        Trainer(cfg, progress=False, log=lambda s: None)
    msgs = [str(w.message) for w in record if "read noise" in str(w.message)]
    assert len(msgs) == 1 and "0.01" in msgs[0] and "0.1" in msgs[0]


def test_analog_resume_continues_on_the_same_simulated_devices(tmp_path):
    """A checkpoint keeps every tile's hidden device parameters (device-to-device bounds and step sizes), so a
    resumed analog run trains the same devices; a new Trainer alone draws different ones."""
    from analogdecorr.backends.analog import tile_blocks

    def tile(trainer):
        return tile_blocks(trainer.net.layers[0].linear)[0][0]

    cfg = small(tmp_path, "analog", backend="analog", preset="ConstantStep", rule="np", decor="offdiag",
                io={"is_perfect": True}, epochs=1, hidden="8", drift_times=[])
    train(cfg, progress=False, log=lambda s: None)
    saved = torch.load(tmp_path / "analog" / "checkpoint.pt", weights_only=True)["model"]
    assert "0.linear.tile0.dwmin_up" in saved and "0.linear.tile0.max_bound" in saved
    fresh = Trainer(cfg, progress=False, log=lambda s: None)
    assert not torch.equal(tile(fresh).get_hidden_parameters()["dwmin_up"], saved["0.linear.tile0.dwmin_up"])
    fresh.resume()
    restored = tile(fresh).get_hidden_parameters()
    for name in ("dwmin_up", "dwmin_down", "max_bound", "min_bound"):
        torch.testing.assert_close(restored[name], saved[f"0.linear.tile0.{name}"], rtol=0, atol=0)
    torch.testing.assert_close(fresh.net.layers[0].linear.get_weights()[0], saved["0.linear.weight"])


def test_activations_overflowing_in_the_evaluation_are_a_divergence(tmp_path, monkeypatch):
    """Finite weights whose activations overflow on the evaluation data (measured: a 4-hidden-layer NP run at lr 0.1
    raised "layer 4's decorrelator: input batch contains NaN or Inf" after its epoch) are the run diverging."""
    trainer = Trainer(small(tmp_path, "overflow", decor="centre", hidden="8,8", epochs=1), progress=False,
                      log=lambda s: None)
    original = Trainer._epoch_figures

    def blow_up(self, *args):
        with torch.no_grad():
            for layer in self.net.layers[:2]:
                self.backend.layer_weight(layer).fill_(1e30)  # finite, but 8 × 1e30 × 1e30 overflows float32
        return original(self, *args)

    monkeypatch.setattr(Trainer, "_epoch_figures", blow_up)
    with pytest.raises(DivergenceError, match=r"^the loss became NaN/Inf at the evaluation after epoch 1"):
        trainer.run()


@pytest.mark.parametrize("schedule", ["constant", "cosine", "step"])
def test_decor_lr_follows_its_own_schedule_not_the_weights(tmp_path, schedule):
    from analogdecorr.train import lr_factor

    t = Trainer(small(tmp_path, decor="scaled", lr_schedule="exponential", decor_lr_schedule=schedule, epochs=4),
                progress=False, log=lambda s: None)
    assert len(t.net.decorrelators) == 3
    for epoch in (3, 1, 2):
        t._set_lr(epoch)
        want = 1e-3 * lr_factor(schedule, epoch, 4)
        assert [d.lr for _, d in t.net.decorrelators] == pytest.approx([want] * 3)
    assert (t.net.decorrelators[0][1].lr < 1e-3) == (schedule != "constant")
