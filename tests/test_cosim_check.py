"""``analogdecorr cosim check``: its inputs and one-line errors (the Verilator replay itself: test_cosim_rtl)."""

from __future__ import annotations

import numpy as np
import pytest

from analogdecorr.cli import main
from analogdecorr.config import resolve
from analogdecorr.cosim import replay
from analogdecorr.cosim.record import load_recording, recording_path
from analogdecorr.train import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cosim") / "run"
    cfg = resolve({}, {"dataset": "digits", "hidden": "16", "epochs": 1, "decor": "offdiag", "decor_lr": 1e-3,
                       "decor_numerics": "fixed", "cosim_record": 300, "out": str(out)})
    train(cfg, progress=False, log=lambda s: None)
    return out


def _one_line_error(capsys, argv, needle):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


def test_missing_source_and_missing_layer(run_dir, tmp_path, capsys):
    _one_line_error(capsys, ["cosim", "check", str(tmp_path / "nope")], "does not exist")
    _one_line_error(capsys, ["cosim", "check", str(run_dir), "--layer", "4", "--steps", "10"],
                    "choose --layer from [0, 1]")
    _one_line_error(capsys, ["cosim", "check", str(tmp_path), "--steps", "10"], "no recorded stream")


def test_more_steps_than_recorded_names_both_numbers(run_dir, capsys):
    _one_line_error(capsys, ["cosim", "check", str(run_dir), "--steps", "301"], "holds 300 samples")
    _one_line_error(capsys, ["cosim", "check", str(run_dir), "--steps", "0"], "--steps must be a positive")


def test_missing_verilator_says_how_to_install(run_dir, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    _one_line_error(capsys, ["cosim", "check", str(run_dir), "--steps", "10"], "apt-get install verilator")


def test_a_config_without_fixed_numerics_is_refused(tmp_path, capsys):
    cfg = tmp_path / "float.toml"
    cfg.write_text('dataset = "digits"\nhidden = [16]\ndecor = "offdiag"\n')
    _one_line_error(capsys, ["cosim", "check", str(cfg), "--steps", "10"], 'decor_numerics = "fixed"')


def test_corrupt_recording_is_one_line(run_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    (bad / "cosim").mkdir(parents=True)
    recording_path(bad, 0).write_bytes(b"PK\x03\x04 truncated")
    _one_line_error(capsys, ["cosim", "check", str(bad), "--steps", "10"], "corrupt")


def test_first_difference_names_sample_and_word(run_dir):
    rec = load_recording(recording_path(run_dir, 0))
    z = rec.z.copy()
    assert replay.first_difference(rec.z, z) is None
    z[123, 7] += 1
    z[200, 0] -= 1
    assert replay.first_difference(rec.z, z) == {"sample": 123, "word": 7, "expected": int(rec.z[123, 7]),
                                                 "got": int(rec.z[123, 7]) + 1}
    zm, _ = replay.model_replay(rec, 250)
    assert np.array_equal(zm, rec.z[:250])
