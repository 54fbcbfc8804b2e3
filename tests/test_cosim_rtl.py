"""``cosim check`` through Verilator: a training run's recorded stream is bit-identical in the Verilog, and a unit
built from another format shows its first differing sample and word."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import pytest
from tooling import require

from analogdecorr.cli import main
from analogdecorr.cosim import replay
from analogdecorr.cosim.record import load_recording, recording_path

CONFIG = """dataset = "digits"
hidden = [8]
epochs = 3
decor = "offdiag"
decor_lr = 1e-3
decor_numerics = "fixed"
unit_width = 12
out = "{out}"
"""


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """`cosim check CONFIG --json`: trains until the samples are recorded (1 of 3 epochs), then replays them."""
    require(replay.verilator_missing(), "Verilator")
    root = tmp_path_factory.mktemp("rtl")
    cfg = root / "run.toml"
    cfg.write_text(CONFIG.format(out=root / "run"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["cosim", "check", str(cfg), "--layer", "1", "--steps", "300", "--lanes", "2", "--json"])
    return root / "run", code, json.loads(out.getvalue())


def test_training_stream_is_bit_identical_in_verilator(checked):
    run_dir, code, rep = checked
    assert code == 0 and rep["bit_exact"] and rep["first_mismatch"] is None
    assert rep["verilator"]["z_checked"] == 300 and rep["verilator"]["lanes"] == 2
    rec = load_recording(recording_path(run_dir, 1))
    assert rec.samples >= 300 and rec.fmt.size == 8
    assert rec.learn[:300].sum() == 5 * 7  # 4 full batches and 44 rows of the 5th: 7 learning rows each
    assert len(json.loads((run_dir / "results.json").read_text())["epochs"]) == 1  # stopped once recorded


def test_a_unit_of_another_format_reports_the_first_mismatch(checked):
    run_dir = checked[0]
    rec = load_recording(recording_path(run_dir, 1))
    other = dataclasses.replace(rec.fmt, shift=rec.fmt.shift - 6)  # 64x the step: R drifts from the first update
    rep = replay.check(run_dir, layer=1, steps=200, lanes=2, hw_format=other, out_dir=run_dir / "other")
    assert not rep["bit_exact"]
    first = rep["first_mismatch"]
    assert first["sample"] >= 1 and 0 <= first["word"] < rec.fmt.size  # sample 0 (R = I) cannot differ
    assert first["expected"] == int(rec.z[first["sample"], first["word"]])
    assert "DIFFERS, first at sample" in replay.format_report(rep)
