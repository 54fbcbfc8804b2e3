"""hdl export: Verilog + element-stream vectors + testbench + manifest, written atomically, refusing foreign
directories; the default stimulus and a caller's replayed stream (co-simulation) both decode to the model's run."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from analogdecorr.errors import DataError, FormatError
from analogdecorr.fixed.format import UnitFormat
from analogdecorr.fixed.model import run
from analogdecorr.hdl import commands
from analogdecorr.hdl.export import (
    CALM_SAMPLES,
    MANIFEST,
    TB_PORTS,
    Stimulus,
    default_lanes,
    export,
    hex_lines,
    learn_pattern,
    make_stimulus,
    read_hex,
    read_manifest,
    to_hex_word,
)
from analogdecorr.hdl.ports import verilog_ports
from analogdecorr.hdl.unit import DecorrelationUnit

SMALL = UnitFormat(size=3, width=10, frac=6, r_width=16, r_frac=10, shift=4, rounding="half_even")
CENTRED = replace(SMALL, size=4, rule="whiten", centre_shift=3, rounding="stochastic")


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "decor3"
    man = export(SMALL, 2, out, samples=300, seed=5, extreme=0.05)
    return out, man


def _vectors(out, fmt, n):
    x = read_hex(out / "x.hex", fmt.width).reshape(n, fmt.size)
    z = read_hex(out / "z.hex", fmt.width).reshape(n, fmt.size)
    learn = np.array([int(s) for s in (out / "learn.hex").read_text().split()], dtype=bool)
    r0 = read_hex(out / "r0.hex", fmt.r_width).reshape(fmt.size, fmt.size)
    rf = read_hex(out / "r_final.hex", fmt.r_width).reshape(fmt.size, fmt.size)
    return x, z, learn, r0, rf


def test_hex_words_are_twos_complement_one_per_line():
    assert to_hex_word(-1, 10) == "3ff"
    assert to_hex_word(5, 28) == "0000005"
    assert hex_lines([1, -1, -512], 10) == "001\n3ff\n200\n"
    assert hex_lines(np.zeros((2, 2), dtype=np.int64), 8) == "00\n" * 4
    with pytest.raises(FormatError):
        to_hex_word(512, 10)
    with pytest.raises(FormatError, match="does not fit a signed 10-bit"):
        hex_lines([0, 600], 10)


def test_default_stimulus_learns_mostly_with_frozen_stretches():
    learn = learn_pattern(5000, seed=1)
    assert learn[:CALM_SAMPLES].all()  # the testbench measures cycles per learning sample there
    frozen = ~learn
    assert 0.05 < frozen.mean() < 0.3
    starts = np.flatnonzero(frozen[1:] & ~frozen[:-1])
    assert len(starts) > 20  # many frozen stretches, some longer than one sample
    assert (frozen[starts + 1] & frozen[starts + 2]).any()
    assert np.array_equal(learn, learn_pattern(5000, seed=1)) and not np.array_equal(learn, learn_pattern(5000, 2))
    stim = make_stimulus(SMALL, 2000, seed=3)
    x = np.asarray(stim.x)
    assert x.shape == (2000, 3) and x.min() >= -512 and x.max() <= 511
    assert abs(x.mean(axis=0)).max() > 2  # a per-feature mean for the centring to remove
    off = np.asarray(stim.r0) * (1 - np.eye(3, dtype=np.int64))
    assert np.count_nonzero(off) > 0  # R0 is not the reset state: the R load is observable
    assert np.array_equal(np.diag(stim.r0), [1 << SMALL.r_frac] * 3)


def test_export_writes_model_vectors_and_manifest(small_export):
    out, man = small_export
    d, w, wr = SMALL.size, SMALL.width, SMALL.r_width
    names = {p.name for p in out.iterdir()}
    assert names >= {"decor_unit.v", "tb_decor.v", "x.hex", "learn.hex", "z.hex", "r0.hex", "r_final.hex",
                     "r_check.hex", "bounds.hex", "overflow.hex", "ovf_check.hex", MANIFEST}
    assert "module decor_unit" in (out / "decor_unit.v").read_text()
    assert json.loads((out / MANIFEST).read_text()) == man
    assert UnitFormat.from_dict(man["format"]) == SMALL
    assert man["lanes"] == 2 and man["multipliers"] == 2 and man["multiplies_per_sample"] == 3 * d * d
    # the Verilog ports are H2a's contract, and carry everything the testbench connects
    ports = {p["name"]: (p["direction"], p["width"]) for p in man["ports"]}
    assert ports == verilog_ports(w, wr, d)
    assert set(TB_PORTS) <= set(ports)
    assert man["payload_bits"] == {"x_last": w, "x_learn": w + 1, "z_last": w}
    params = man["testbench"]["parameters"]
    assert params == {"D": d, "W": w, "WR": wr, "FR": SMALL.r_frac, "AW": ports["ctl__r__addr"][1],
                      "XPW": w + 2, "ZPW": w + 1, "XLAST": w, "XLEARN": w + 1, "ZLAST": w, "CW": 32, "N": 300,
                      "NSEG": 1, "CALM": CALM_SAMPLES, "RWAIT": man["r_read_latency"] + 32}
    unit = DecorrelationUnit(SMALL, lanes=2)
    unit._MustUse__silence = True  # only its properties are needed here
    assert (man["latency"], man["cycles_per_sample"], man["init_cycles"], man["storage_bits"]) == (
        unit.latency, unit.cycles_per_sample, unit.init_cycles, unit.storage_bits)
    assert man["ideal_cycles_per_sample"] == pytest.approx(3 * d * d / 2)
    assert man["utilisation"] == pytest.approx(3 * d * d / (2 * man["cycles_per_sample"]))
    # vectors: the files decode to the integer model's run on the decoded inputs and learn bits
    x, z, learn, r0, rf = _vectors(out, SMALL, 300)
    assert learn.shape == (300,) and learn.sum() == man["vectors"]["learning_samples"] and not learn.all()
    assert not np.array_equal(r0, np.eye(d, dtype=np.int64) << SMALL.r_frac)  # perturbed, loaded through the port
    res = run(SMALL, x, r0, learn=learn)
    assert np.array_equal(res.z, z) and np.array_equal(res.R, rf)
    assert (out / "overflow.hex").read_text().strip() == str(int(res.overflow))
    assert man["vectors"]["overflow"] == bool(res.overflow) is True  # full-range words saturate something
    assert man["segments"] == {"count": 1, "bounds": [0, 300], "overflow": [True], "parallel": True}


def test_checkpoints_match_the_continuous_model_run(tmp_path):
    """R at each checkpoint is the model's R after that many samples of one continuous run (also with centring
    and the LFSR, whose state the parts carry); such formats are not split into parallel simulator parts."""
    for fmt, parallel in ((SMALL, True), (CENTRED, False)):
        out = tmp_path / f"seg{int(parallel)}"
        man = export(fmt, 3, out, samples=1030, seed=2, extreme=0.02)
        seg = man["segments"]
        assert seg["count"] == 4 and seg["bounds"] == [0, 257, 515, 772, 1030] and seg["parallel"] is parallel
        assert [int(s, 16) for s in (out / "bounds.hex").read_text().split()] == seg["bounds"]
        assert man["testbench"]["parameters"]["NSEG"] == 4
        x, z, learn, r0, rf = _vectors(out, fmt, 1030)
        chk = read_hex(out / "r_check.hex", fmt.r_width).reshape(3, fmt.size, fmt.size)
        ovf = [bool(int(s)) for s in (out / "ovf_check.hex").read_text().split()]
        assert ovf == seg["overflow"]
        full = run(fmt, x, r0, learn=learn)
        assert np.array_equal(full.z, z) and np.array_equal(full.R, rf)
        for c, b in enumerate(seg["bounds"][1:-1]):
            assert np.array_equal(run(fmt, x[:b], r0, learn=learn[:b]).R, chk[c])
        assert any(ovf) == bool(full.overflow)


def test_caller_stimulus_is_replayed_exactly(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.integers(-300, 300, size=(40, 4))
    learn = rng.random(40) < 0.7
    man = export(CENTRED, None, tmp_path / "replay", stimulus=Stimulus(x=x, learn=learn))
    assert man["lanes"] == default_lanes(4) == 4
    assert man["vectors"]["source"] == {"kind": "caller"} and man["vectors"]["r0"] == "identity"
    got_x, z, got_learn, r0, rf = _vectors(tmp_path / "replay", CENTRED, 40)
    assert np.array_equal(got_x, x) and np.array_equal(got_learn, learn)
    assert np.array_equal(r0, np.eye(4, dtype=np.int64) << CENTRED.r_frac)
    res = run(CENTRED, x, learn=learn)
    assert np.array_equal(res.z, z) and np.array_equal(res.R, rf)
    # one bool for every sample; an explicit R0 and a zero mu0 are fine
    r_start = res.R
    man = export(CENTRED, 1, tmp_path / "replay", stimulus=Stimulus(x=x, learn=False, r0=r_start, mu0=np.zeros(4)))
    assert man["vectors"]["learning_samples"] == 0 and man["vectors"]["r0"] == "loaded"
    assert np.array_equal(_vectors(tmp_path / "replay", CENTRED, 40)[1], run(CENTRED, x, r_start, learn=False).z)


@pytest.mark.parametrize(
    "stim,match",
    [
        (Stimulus(x=np.zeros((5, 3), dtype=np.int64)), r"shape \(5, 3\); the unit needs \(n, 4\)"),
        (Stimulus(x=np.zeros((5, 4))), "dtype float64"),
        (Stimulus(x=np.full((5, 4), 600)), "outside signed 10-bit"),
        (Stimulus(x=np.zeros((5, 4), dtype=int), learn=np.ones(4, dtype=bool)), r"pass \(5,\) bools"),
        (Stimulus(x=np.zeros((5, 4), dtype=int), learn=np.full(5, 2)), "other than 0 and 1"),
        (Stimulus(x=np.zeros((5, 4), dtype=int), r0=np.eye(3, dtype=int)), r"r0 has shape \(3, 3\)"),
        (Stimulus(x=np.zeros((5, 4), dtype=int), r0=np.full((4, 4), 1 << 20)), "outside signed 16-bit"),
        (Stimulus(x=np.zeros((5, 4), dtype=int), mu0=np.ones(4)), "no port to load its running mean"),
    ],
)
def test_bad_caller_stimulus_is_one_clear_error(tmp_path, stim, match):
    with pytest.raises(DataError, match=match):
        export(CENTRED, 2, tmp_path / "bad", stimulus=stim)
    assert not (tmp_path / "bad").exists()


def test_export_refuses_a_directory_that_is_not_an_export(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FormatError, match="not an earlier HDL export"):
        export(SMALL, 2, foreign, samples=10)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FormatError, match="not a directory"):
        export(SMALL, 2, a_file, samples=10)
    for lanes in (0, -1, 2.5, True):
        with pytest.raises(FormatError, match="positive integer"):
            export(SMALL, lanes, tmp_path / "new", samples=10)
    with pytest.raises(FormatError, match="samples must be a positive integer"):
        export(SMALL, 2, tmp_path / "new", samples=0)
    assert not (tmp_path / "new").exists()


def test_reexport_replaces_an_earlier_export_atomically(tmp_path):
    out = tmp_path / "exp"
    export(SMALL, 2, out, samples=20, seed=1)
    (out / "sim").mkdir()  # build products of an earlier verify go with the old export
    first = (out / "x.hex").read_text()
    man = export(SMALL, 3, out, samples=30, seed=2)
    assert read_manifest(out) == man and man["lanes"] == 3
    assert (out / "x.hex").read_text() != first and len((out / "x.hex").read_text().split()) == 30 * 3
    assert not (out / "sim").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]  # no temp or old directories left behind
    empty = tmp_path / "empty"
    empty.mkdir()
    export(SMALL, 1, empty, samples=5)
    assert read_manifest(empty) is not None


def test_cli_export_json_and_one_line_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    fmt_args = ["--size", "3", "--width", "10", "--frac", "6", "--r-width", "16", "--r-frac", "10", "--shift", "4"]
    rc = commands.main(["export", *fmt_args, "--rounding", "half_up", "--rule", "whiten", "--centre-shift", "2",
                        "--samples", "40", "--seed", "3", "--lanes", "2", "-o", str(out), "--json"])
    assert rc == 0
    obj = json.loads(capsys.readouterr().out)
    f = obj["format"]
    assert (f["rounding"], f["rule"], f["centre_shift"]) == ("half_up", "whiten", 2)
    assert obj["lanes"] == 2 and obj["vectors"]["samples"] == 40
    assert read_manifest(out)["lanes"] == 2
    # readable form, default lanes min(d, 8)
    assert commands.main(["hdl", "export", *fmt_args, "--samples", "10", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "multipliers M" in text and "3d²/M" in text and "analogdecorr hdl verify" in text
    assert read_manifest(out)["lanes"] == 3
    # errors: one line, exit 2
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "a").write_text("")
    assert commands.main(["export", "--size", "3", "--samples", "5", "-o", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not an earlier HDL export" in err and err.count("\n") == 1
    assert commands.main(["export", "--width", "16", "--frac", "16", "-o", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: frac=16") and err.count("\n") == 1


def test_cli_compare_json_and_table(capsys):
    args = ["compare", "--size", "3", "--width", "12", "--frac", "8", "--r-width", "20", "--r-frac", "14",
            "--shift", "6", "--samples", "400", "--rho", "0.4", "--seed", "1"]
    assert commands.main([*args, "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["samples"] == 400 and obj["rho"] == 0.4 and obj["format"]["size"] == 3
    assert obj["residual_corr_int"] >= 0.0 and "diverged" in obj
    assert commands.main(args) == 0
    text = capsys.readouterr().out
    assert "residual_corr_int" in text and "max_abs_R_error" in text
    assert commands.main(["compare", "--samples", "4"]) == 2
    assert capsys.readouterr().err.startswith("error: samples=4")


def test_testbench_ships_inside_the_package():
    """The wheel carries the testbench (analogdecorr/hdl/tb_decor.v links to hdl/tb_decor.v; setuptools copies
    the file), so `hdl verify` works from a plain pip install, not only from a checkout."""
    from pathlib import Path

    import analogdecorr.hdl.export as export_mod

    package_copy = Path(export_mod.__file__).resolve().parent / export_mod.TB_NAME
    repo_copy = Path(__file__).resolve().parents[1] / "hdl" / export_mod.TB_NAME
    assert (Path(export_mod.__file__).parent / export_mod.TB_NAME).is_file()
    assert package_copy.read_bytes() == repo_copy.read_bytes()
    assert export_mod.testbench_source().read_bytes() == repo_copy.read_bytes()
