"""hdl export: Verilog + vectors + testbench + manifest, written atomically, refusing foreign directories."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from analogdecorr.errors import FormatError
from analogdecorr.fixed.format import UnitFormat
from analogdecorr.fixed.model import run
from analogdecorr.hdl import commands
from analogdecorr.hdl.export import (
    MANIFEST,
    export,
    from_hex_vector,
    read_manifest,
    to_hex_vector,
    to_hex_word,
)
from analogdecorr.hdl.unit import DecorrelationUnit

SMALL = UnitFormat(size=3, width=10, frac=6, r_width=16, r_frac=10, shift=4, rounding="half_even")


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "decor3"
    man = export(SMALL, "row", out, samples=300, seed=5, extreme=0.05)
    return out, man


def _read_vectors(path, bits, count):
    return np.array([from_hex_vector(line, bits, count) for line in path.read_text().split()], dtype=np.int64)


def test_hex_words_are_twos_complement_and_packed_lsb_first():
    assert to_hex_word(-1, 10) == "3ff"
    assert to_hex_word(5, 28) == "0000005"
    assert to_hex_vector([1, -1, -512], 10) == format(1 | (0x3FF << 10) | (0x200 << 20), "08x")
    rng = np.random.default_rng(0)
    for bits in (8, 13, 18):
        v = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=7)
        assert from_hex_vector(to_hex_vector(v, bits), bits, 7) == list(v)
    with pytest.raises(FormatError):
        to_hex_word(512, 10)


def test_export_writes_model_vectors_and_manifest(small_export):
    out, man = small_export
    d, w, wr = SMALL.size, SMALL.width, SMALL.r_width
    assert {p.name for p in out.iterdir()} >= {"decor_unit.v", "tb_decor.v", "x.hex", "z.hex", "r0.hex",
                                               "r_final.hex", "overflow.hex", MANIFEST}
    assert "module decor_unit" in (out / "decor_unit.v").read_text()
    # manifest: format round trip, arch, analytic count, ports with their widths
    assert json.loads((out / MANIFEST).read_text()) == man
    assert UnitFormat.from_dict(man["format"]) == SMALL
    assert man["arch"] == "row" and man["multiplies_per_sample"] == 3 * d * d
    ports = {p["name"]: p for p in man["ports"]}
    assert ports["x__payload"] == {"name": "x__payload", "direction": "input", "width": d * w}
    assert ports["z__payload"]["direction"] == "output" and ports["z__payload"]["width"] == d * w
    assert ports["r_rdata"]["width"] == wr and ports["r_wdata"]["width"] == wr
    assert ports["r_addr"]["width"] == math.ceil(math.log2(d * d))
    assert man["testbench"]["parameters"] == {"D": d, "W": w, "WR": wr, "AW": ports["r_addr"]["width"],
                                              "N": 300, "CALM": 16, "NSEG": 1}
    unit = DecorrelationUnit(SMALL, arch="row")
    unit._MustUse__silence = True  # only its timing properties are needed here
    assert (man["latency"], man["cycles_per_sample"], man["multipliers"]) == (
        unit.latency, unit.cycles_per_sample, unit.multipliers)
    assert man["utilisation"] == pytest.approx(3 * d * d / (man["multipliers"] * man["cycles_per_sample"]))
    # vectors: the files decode to the integer model's run on the decoded inputs
    x = _read_vectors(out / "x.hex", w, d)
    z = _read_vectors(out / "z.hex", w, d)
    r0 = np.array([from_hex_vector(s, wr, 1)[0] for s in (out / "r0.hex").read_text().split()])
    rf = np.array([from_hex_vector(s, wr, 1)[0] for s in (out / "r_final.hex").read_text().split()])
    assert x.shape == (300, d) and z.shape == (300, d)
    assert np.array_equal(r0.reshape(d, d), np.eye(d, dtype=np.int64) << SMALL.r_frac)
    res = run(SMALL, x, r0.reshape(d, d))
    assert np.array_equal(res.z, z)
    assert np.array_equal(res.R.reshape(-1), rf)
    assert (out / "overflow.hex").read_text().strip() == str(int(res.overflow))
    assert man["vectors"]["overflow"] == bool(res.overflow)
    # the stimulus includes full-range words, so saturation is exercised and expected
    assert res.overflow and man["vectors"]["samples"] == 300


def test_checkpoints_restart_the_model_exactly(tmp_path):
    d, wr = SMALL.size, SMALL.r_width
    man = export(SMALL, "mac", tmp_path / "seg", samples=1030, seed=2, extreme=0.02)
    seg = man["segments"]
    assert seg["count"] == 4 and seg["bounds"] == [0, 258, 515, 772, 1030]
    assert man["testbench"]["parameters"]["NSEG"] == 4
    x = _read_vectors(tmp_path / "seg" / "x.hex", SMALL.width, d)
    chk = np.array([from_hex_vector(s, wr, 1)[0] for s in (tmp_path / "seg" / "r_check.hex").read_text().split()])
    ovf = [int(s) for s in (tmp_path / "seg" / "ovf_check.hex").read_text().split()]
    assert chk.shape == (3 * d * d,) and len(ovf) == 4 and ovf == [int(o) for o in seg["overflow"]]
    r = np.eye(d, dtype=np.int64) << SMALL.r_frac
    for c in range(4):
        res = run(SMALL, x[seg["bounds"][c]:seg["bounds"][c + 1]], r)
        assert int(res.overflow) == ovf[c]
        r = res.R
        if c < 3:
            assert np.array_equal(r.reshape(-1), chk[c * d * d:(c + 1) * d * d])
    # formats with state besides R (LFSR, delayed update) are one segment
    for fmt in (replace(SMALL, rounding="stochastic"), replace(SMALL, delayed=True)):
        man = export(fmt, "row", tmp_path / "one", samples=1030)
        assert man["segments"]["count"] == 1 and (tmp_path / "one" / "r_check.hex").read_text() == ""


def test_export_refuses_a_directory_that_is_not_an_export(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FormatError, match="not an earlier HDL export"):
        export(SMALL, "row", foreign, samples=10)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FormatError, match="not a directory"):
        export(SMALL, "row", a_file, samples=10)
    with pytest.raises(FormatError, match="did you mean 'mac'"):
        export(SMALL, "macc", tmp_path / "new", samples=10)
    assert not (tmp_path / "new").exists()


def test_reexport_replaces_an_earlier_export_atomically(tmp_path):
    out = tmp_path / "exp"
    export(SMALL, "row", out, samples=20, seed=1)
    (out / "sim").mkdir()  # build products of an earlier verify go with the old export
    first = (out / "x.hex").read_text()
    man = export(SMALL, "mac", out, samples=30, seed=2)
    assert read_manifest(out) == man and man["arch"] == "mac"
    assert (out / "x.hex").read_text() != first and len((out / "x.hex").read_text().split()) == 30
    assert not (out / "sim").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["exp"]  # no temp or old directories left behind
    # an empty directory is fine too
    empty = tmp_path / "empty"
    empty.mkdir()
    export(SMALL, "row", empty, samples=5)
    assert read_manifest(empty) is not None


def test_cli_export_json_and_one_line_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = commands.main(["export", "--size", "3", "--width", "10", "--frac", "6", "--r-width", "16",
                        "--r-frac", "10", "--shift", "4", "--rounding", "half_up", "--samples", "40",
                        "--seed", "3", "--arch", "mac", "-o", str(out), "--json"])
    assert rc == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["format"]["rounding"] == "half_up" and obj["arch"] == "mac" and obj["vectors"]["samples"] == 40
    assert read_manifest(out)["arch"] == "mac"
    # readable form
    assert commands.main(["hdl", "export", "--size", "3", "--width", "10", "--frac", "6", "--r-width", "16",
                          "--r-frac", "10", "--shift", "4", "--samples", "10", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "multipliers M" in text and "analogdecorr hdl verify" in text
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
    """The wheel carries the testbench (analogdecorr/hdl/tb_decor.v links to hdl/tb_decor.v), so `hdl verify`
    works from a plain pip install, not only from a checkout."""
    from pathlib import Path

    import analogdecorr.hdl.export as export

    package_copy = Path(export.__file__).resolve().parent / export.TB_NAME
    repo_copy = Path(__file__).resolve().parents[1] / "hdl" / export.TB_NAME
    assert (Path(export.__file__).parent / export.TB_NAME).is_file()
    assert package_copy.read_bytes() == repo_copy.read_bytes()
    assert export.testbench_source().read_bytes() == repo_copy.read_bytes()
