"""hdl verify: the exported Verilog is bit-exact against the integer model in Icarus Verilog and Verilator.

The d = 8, W = 16 row unit runs 10 000 samples in both simulators (Icarus in parallel checkpoint parts), the mac
unit 10 000 samples in Verilator (Icarus needs minutes for its 192 cycles per sample). Corrupted copies of an
export's expected-vector files (reusing its compiled testbench) must fail with the right first mismatch. Under
CI=true a missing simulator fails the tests; elsewhere it skips them with the reason.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
from tooling import require

from analogdecorr.errors import ConfigError, DataError
from analogdecorr.fixed.format import UnitFormat
from analogdecorr.hdl import commands
from analogdecorr.hdl.export import export, from_hex_vector, to_hex_vector, to_hex_word
from analogdecorr.hdl.unit import DecorrelationUnit
from analogdecorr.hdl.verify import SIMULATORS, check_simulators, parse_output, tool_missing, verify

FMT = UnitFormat(size=8, width=16, frac=12, r_width=28, r_frac=20, shift=10, rounding="half_even")
SMALL = UnitFormat(size=3, width=10, frac=6, r_width=16, r_frac=10, shift=4, rounding="half_even")
SAMPLES = 10_000


def require_simulators() -> None:
    for sim in SIMULATORS:
        require(tool_missing(sim), "the HDL simulators")


@pytest.fixture(scope="module")
def row8(tmp_path_factory):
    require_simulators()
    out = tmp_path_factory.mktemp("verify") / "row8"
    man = export(FMT, "row", out, samples=SAMPLES, seed=0)
    return out, man, verify(out, jobs=2)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """d = 3 row unit, 1030 samples in 4 checkpoint segments: cheap to re-simulate in both simulators."""
    require_simulators()
    out = tmp_path_factory.mktemp("verify") / "small"
    man = export(SMALL, "row", out, samples=1030, seed=4, extreme=0.02)
    return out, man, verify(out, jobs=2)


def _check_exact(res, samples, d):
    for sim, r in res["simulators"].items():
        assert r["bit_exact"], (sim, r["first_mismatch"], r["reported_mismatches"])
        assert r["first_mismatch"] is None and r["mismatches"] == 0 and not r["timeout"]
        assert r["samples"] == samples and r["z_checked"] == samples
        assert r["r_checked"] == r["parts"] * d * d
        assert r["overflow"]["expected"] == r["overflow"]["got"]
        assert r["latency"] == r["expected_latency"]
        assert r["cycles_per_sample"] == pytest.approx(r["expected_cycles_per_sample"])
    assert res["bit_exact"] is True


def test_row_d8_is_bit_exact_for_10000_samples_in_both_simulators(row8):
    out, man, res = row8
    unit = DecorrelationUnit(FMT, arch="row")
    unit._MustUse__silence = True  # only its timing properties are needed here
    assert set(res["simulators"]) == {"iverilog", "verilator"} and res["samples"] == SAMPLES
    _check_exact(res, SAMPLES, FMT.size)
    ver, ice = res["simulators"]["verilator"], res["simulators"]["iverilog"]
    # measured over the stall-free leading samples: the unit's advertised timing
    assert ver["latency"] == unit.latency and ver["cycles_per_sample"] == unit.cycles_per_sample
    # Verilator runs the stream in one go; Icarus in parallel parts, each checking R at its end checkpoint
    assert ver["parts"] == 1 and ice["parts"] == man["segments"]["count"] > 1
    # the stimulus saturates some words: the sticky flag is set in the RTL as in the model
    assert man["vectors"]["overflow"] is True and ver["overflow"] == {"expected": True, "got": True}


def test_mac_d8_is_bit_exact_for_10000_samples_in_verilator(tmp_path):
    require_simulators()
    man = export(FMT, "mac", tmp_path / "mac8", samples=SAMPLES, seed=1)
    res = verify(tmp_path / "mac8", ("verilator",))
    _check_exact(res, SAMPLES, FMT.size)
    r = res["simulators"]["verilator"]
    assert man["multipliers"] == 1 and r["cycles_per_sample"] == man["cycles_per_sample"]
    assert r["cycles"] > SAMPLES * man["cycles_per_sample"]


def test_stochastic_delayed_unit_runs_identically_in_both_simulators(tmp_path):
    require_simulators()
    fmt = replace(SMALL, rounding="stochastic", delayed=True)
    man = export(fmt, "mac", tmp_path / "sd", samples=400, seed=2)
    assert man["segments"]["count"] == 1  # LFSR and pending update are state besides R
    res = verify(tmp_path / "sd", jobs=1)
    _check_exact(res, 400, fmt.size)
    # continuous runs of one testbench schedule: the same cycle count in both simulators
    assert res["simulators"]["iverilog"]["cycles"] == res["simulators"]["verilator"]["cycles"]


def _corrupt_copy(src, dst, name, index, mutate):
    shutil.copytree(src, dst)
    lines = (dst / name).read_text().split()
    lines[index] = mutate(lines[index])
    (dst / name).write_text("\n".join(lines) + "\n")
    return dst


def _flip(bits, d, word):
    def mutate(text):
        v = from_hex_vector(text, bits, d)
        v[word] = v[word] + 3 if v[word] < 0 else v[word] - 3
        return to_hex_vector(v, bits)

    return mutate


def test_corrupted_z_vector_gives_the_first_mismatch_in_both_simulators(small, tmp_path):
    out, man, res = small
    _check_exact(res, 1030, SMALL.size)
    sample, word = 700, 2
    good = from_hex_vector((out / "z.hex").read_text().split()[sample], SMALL.width, SMALL.size)[word]
    bad_dir = _corrupt_copy(out, tmp_path / "badz", "z.hex", sample, _flip(SMALL.width, SMALL.size, word))
    bad = from_hex_vector((bad_dir / "z.hex").read_text().split()[sample], SMALL.width, SMALL.size)[word]
    res = verify(bad_dir, jobs=2)
    assert res["bit_exact"] is False
    for sim, r in res["simulators"].items():
        assert r["cached_build"], sim  # vectors are read at run time: the copy reuses the compiled testbench
        assert r["bit_exact"] is False and r["mismatches"] == 1
        assert r["first_mismatch"] == {"kind": "z", "sample": sample, "word": word, "expected": bad, "got": good}


def test_corrupted_z_vector_at_d8(row8, tmp_path):
    out, _, _ = row8
    bad_dir = _corrupt_copy(out, tmp_path / "badz8", "z.hex", 1234, _flip(FMT.width, FMT.size, 5))
    r = verify(bad_dir, ("verilator",))["simulators"]["verilator"]
    assert r["cached_build"] and r["bit_exact"] is False
    assert (r["first_mismatch"]["kind"], r["first_mismatch"]["sample"], r["first_mismatch"]["word"]) == ("z", 1234, 5)


def test_corrupted_checkpoints_and_final_r(small, tmp_path):
    out, man, _ = small
    d2 = SMALL.size**2
    bounds = man["segments"]["bounds"]  # [0, 258, 515, 772, 1030]
    # interior checkpoint 2 (R after sample 515), word 4: the part ending there fails on R, the next starts from it
    bad_dir = _corrupt_copy(out, tmp_path / "badchk", "r_check.hex", d2 + 4, lambda _: to_hex_word(-7, 16))
    r = verify(bad_dir, ("iverilog",), jobs=2)["simulators"]["iverilog"]
    assert r["bit_exact"] is False
    assert r["first_mismatch"] == {"kind": "r", "sample": bounds[2], "word": 4, "expected": -7,
                                   "got": r["first_mismatch"]["got"]}
    assert r["first_mismatch"]["got"] != -7
    # final R word 5 and the last segment's overflow flag
    bad_dir = _corrupt_copy(out, tmp_path / "badr", "r_final.hex", 5, lambda _: to_hex_word(123, 16))
    last = man["segments"]["overflow"][-1]
    (bad_dir / "ovf_check.hex").write_text("".join(f"{int(o)}\n" for o in man["segments"]["overflow"][:-1])
                                           + f"{int(not last)}\n")
    res = verify(bad_dir, jobs=2)
    ice, ver = res["simulators"]["iverilog"], res["simulators"]["verilator"]
    for r in (ice, ver):
        assert r["first_mismatch"]["kind"] == "r" and r["first_mismatch"]["sample"] == 1030
        assert r["first_mismatch"]["word"] == 5 and r["first_mismatch"]["expected"] == 123
    assert [m["kind"] for m in ice["reported_mismatches"]] == ["r", "ovf"]  # per-segment flags in the parts
    assert [m["kind"] for m in ver["reported_mismatches"]] == ["r"]  # the continuous run checks overflow.hex


def test_cli_verify_json_and_exit_codes(small, tmp_path, capsys):
    out, _, _ = small
    assert commands.main(["verify", str(out), "--sim", "verilator", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["bit_exact"] is True and list(obj["simulators"]) == ["verilator"]
    assert obj["simulators"]["verilator"]["samples"] == 1030
    bad_dir = tmp_path / "bad"
    shutil.copytree(out, bad_dir)
    expected = (bad_dir / "overflow.hex").read_text().strip()
    (bad_dir / "overflow.hex").write_text("0\n" if expected == "1" else "1\n")
    assert commands.main(["hdl", "verify", str(bad_dir), "--sim", "verilator"]) == 1
    text = capsys.readouterr().out
    assert "NO" in text and "ovf" in text
    assert commands.main(["verify", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not an HDL export" in err and err.count("\n") == 1


def test_verify_rejects_unknown_simulators_and_non_exports(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'verilator'"):
        verify(tmp_path, ("verilatr",))
    with pytest.raises(ConfigError, match="no simulator"):
        verify(tmp_path, "")
    assert check_simulators("icarus, verilator") == ("iverilog", "verilator")
    (tmp_path / "y").mkdir()
    with pytest.raises(DataError, match="not an HDL export"):
        verify(tmp_path / "y")


def test_parse_output_without_result_line_is_an_error():
    with pytest.raises(DataError, match="no RESULT line"):
        parse_output("VCD info: nothing\n")
    r = parse_output(
        "MISMATCH kind=z sample=3 word=1 expected=-2 got=5\nTIMING latency=4 calm_span=21 calm_count=7 "
        "stream_cycles=100\nRESULT bit_exact=0 start=0 samples=9 z_checked=9 r_checked=4 mismatches=1 timeout=0 "
        "cycles=300 overflow_expected=0 overflow_got=0 first_mismatch=3 first_kind=z first_word=1 "
        "first_expected=-2 first_got=5\n"
    )
    assert r["first_mismatch"] == {"kind": "z", "sample": 3, "word": 1, "expected": -2, "got": 5}
    assert r["latency"] == 4 and r["cycles_per_sample"] == 3.0 and r["bit_exact"] is False
    assert r["reported_mismatches"] == [{"kind": "z", "sample": 3, "word": 1, "expected": -2, "got": 5}]
