"""hdl verify: the exported Verilog is bit-exact against the integer model in Icarus Verilog and Verilator.

Two small units run in both simulators with random gaps and stalls: a d = 5 offdiag unit on 2 lanes (5 = 2 + 2
+ 1: an idle lane in the last row group) whose 1030 samples Icarus splits into 4 parallel checkpoint parts, and a
d = 4 whiten unit with centring and stochastic rounding on 8 lanes (M > d), whose state besides R keeps each
simulator on one continuous run that pauses at the checkpoints to read R back. Corrupted copies of an export's
expected-vector files (reusing its compiled testbench) must fail with the right first mismatch, and protocol mocks
of the unit show that the testbench catches a reset that does not restore R and a missing frame_error. Under
CI=true a missing simulator fails the tests; elsewhere it skips them with the reason.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from tooling import require

from analogdecorr.errors import ConfigError, DataError
from analogdecorr.fixed.format import UnitFormat
from analogdecorr.hdl import commands
from analogdecorr.hdl.export import MANIFEST, Stimulus, export, from_hex_word, to_hex_word
from analogdecorr.hdl.verify import SIMULATORS, check_simulators, parse_output, tool_missing, verify

SMALL = UnitFormat(size=5, width=10, frac=6, r_width=16, r_frac=10, shift=4, rounding="half_even")
RICH = replace(SMALL, size=4, rule="whiten", centre_shift=3, rounding="stochastic")


def require_simulators() -> None:
    for sim in SIMULATORS:
        require(tool_missing(sim), "the HDL simulators")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """d = 5 on 2 lanes, 1030 samples in 4 checkpoint segments: Icarus runs them as 4 parallel parts."""
    require_simulators()
    out = tmp_path_factory.mktemp("verify") / "small"
    man = export(SMALL, 2, out, samples=1030, seed=4, extreme=0.02)
    return out, man, verify(out, jobs=2)


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    """d = 4 on 8 lanes (M > d), whiten, centring, stochastic rounding: one continuous run per simulator."""
    require_simulators()
    out = tmp_path_factory.mktemp("verify") / "rich"
    man = export(RICH, 8, out, samples=600, seed=6, extreme=0.02)
    return out, man, verify(out, jobs=2)


def _check_exact(res, man):
    samples, d = man["vectors"]["samples"], man["format"]["size"]
    checkpoints = man["segments"]["count"]
    for sim, r in res["simulators"].items():
        assert r["bit_exact"], (sim, r["first_mismatch"], r["reported_mismatches"])
        assert r["first_mismatch"] is None and r["mismatches"] == 0 and not r["timeout"]
        assert r["samples"] == samples and r["z_checked"] == samples
        # R after reset, at every checkpoint and the end, and after the ctl reset: 3 readbacks per part plus the
        # interior checkpoints a part pauses at
        assert r["readbacks"] == checkpoints + 2 * r["parts"]
        assert r["r_checked"] == r["r_expected"] == r["readbacks"] * d * d
        assert r["frame_error_raised"] is True
        assert r["overflow"]["expected"] == r["overflow"]["got"]
        assert r["latency"] == r["expected_latency"]
        assert r["calm_all_learning"] is True
        assert r["cycles_per_sample"] == pytest.approx(r["expected_cycles_per_sample"])
    assert res["bit_exact"] is True


def test_small_unit_is_bit_exact_in_both_simulators(small):
    out, man, res = small
    assert set(res["simulators"]) == {"iverilog", "verilator"} and res["samples"] == 1030 and res["lanes"] == 2
    _check_exact(res, man)
    ver, ice = res["simulators"]["verilator"], res["simulators"]["iverilog"]
    # Verilator runs the stream in one go (pausing at the checkpoints); Icarus in parallel parts
    assert man["segments"]["parallel"] is True
    assert ver["parts"] == 1 and ice["parts"] == man["segments"]["count"] == 4
    # the stimulus saturates some words and freezes some samples
    assert man["vectors"]["overflow"] is True and ver["overflow"] == {"expected": True, "got": True}
    assert 0 < man["vectors"]["learning_samples"] < 1030
    # stalls and gaps cost cycles beyond the calm rate
    assert ver["stream_cycles"] > 0 and ver["cycles"] > 1030 * man["cycles_per_sample"] * 0.5


def test_centred_whiten_stochastic_unit_with_more_lanes_than_rows(rich):
    out, man, res = rich
    assert man["multipliers"] == 4 and man["lanes"] == 8  # L = min(M, d)
    assert man["segments"]["parallel"] is False and man["segments"]["count"] == 2
    _check_exact(res, man)
    ice, ver = res["simulators"]["iverilog"], res["simulators"]["verilator"]
    assert ice["parts"] == ver["parts"] == 1
    # one testbench schedule: the same cycle count in both simulators
    assert ice["cycles"] == ver["cycles"]


def _corrupt_copy(src, dst, name, index, mutate):
    shutil.copytree(src, dst)
    lines = (dst / name).read_text().split()
    lines[index] = mutate(lines[index])
    (dst / name).write_text("\n".join(lines) + "\n")
    return dst


def _nudge(bits):
    def mutate(text):
        v = from_hex_word(text, bits)
        return to_hex_word(v + 3 if v < 0 else v - 3, bits)

    return mutate


def test_corrupted_z_element_gives_the_first_mismatch_in_both_simulators(small, tmp_path):
    out, man, _ = small
    d = SMALL.size
    sample, word = 700, 2
    line = sample * d + word
    good = from_hex_word((out / "z.hex").read_text().split()[line], SMALL.width)
    bad_dir = _corrupt_copy(out, tmp_path / "badz", "z.hex", line, _nudge(SMALL.width))
    bad = from_hex_word((bad_dir / "z.hex").read_text().split()[line], SMALL.width)
    res = verify(bad_dir, jobs=2)
    assert res["bit_exact"] is False
    for sim, r in res["simulators"].items():
        assert r["cached_build"], sim  # vectors are read at run time: the copy reuses the compiled testbench
        assert r["bit_exact"] is False and r["mismatches"] == 1
        assert r["first_mismatch"] == {"kind": "z", "sample": sample, "word": word, "expected": bad, "got": good}


def test_corrupted_checkpoints_and_final_r(small, tmp_path):
    out, man, _ = small
    d2 = SMALL.size**2
    bounds = man["segments"]["bounds"]  # [0, 257, 515, 772, 1030]
    # checkpoint 2 (R after sample 515), word 4: found by the Icarus part ending there and by Verilator's pause
    bad_dir = _corrupt_copy(out, tmp_path / "badchk", "r_check.hex", d2 + 4, lambda _: to_hex_word(-7, 16))
    res = verify(bad_dir, jobs=2)
    for r in res["simulators"].values():
        assert r["bit_exact"] is False
        assert r["first_mismatch"]["kind"] == "r" and r["first_mismatch"]["sample"] == bounds[2]
        assert r["first_mismatch"]["word"] == 4 and r["first_mismatch"]["expected"] == -7
        assert r["first_mismatch"]["got"] != -7
    # final R word 5 and the overflow flag at the end
    bad_dir = _corrupt_copy(out, tmp_path / "badr", "r_final.hex", 5, lambda _: to_hex_word(123, 16))
    (bad_dir / "overflow.hex").write_text(f"{int(not man['vectors']['overflow'])}\n")
    r = verify(bad_dir, ("verilator",))["simulators"]["verilator"]
    assert r["first_mismatch"]["kind"] == "r" and r["first_mismatch"]["sample"] == 1030
    assert r["first_mismatch"]["word"] == 5 and r["first_mismatch"]["expected"] == 123
    assert [m["kind"] for m in r["reported_mismatches"]] == ["r", "ovf"]


# ---------------------------------------------------------------------------------- protocol mocks of the unit
MOCK = """// Protocol mock of decor_unit: z = x element by element (what the unit computes from R = I when no sample
// learns), R in a plain memory behind an init sweep, counters, frame_error. RESET_BUG: the sweep writes 0, not I.
module decor_unit #(parameter D = {d}, W = {w}, WR = {wr}, FR = {fr}, AW = {aw}, RESET_BUG = {reset_bug},
                    FRAME_BUG = {frame_bug}) (
    input clk, input rst,
    input [W+1:0] x__payload, input x__valid, output x__ready,
    output reg [W:0] z__payload, output reg z__valid, input z__ready,
    input [AW-1:0] ctl__r__addr, input ctl__r__we, input [WR-1:0] ctl__r__wdata, input ctl__r__re,
    output reg [WR-1:0] ctl__r__rdata, output reg ctl__r__rvalid,
    input ctl__reset, input ctl__clear_overflow,
    output ctl__busy, output reg ctl__overflow, output reg ctl__frame_error,
    output reg [31:0] ctl__samples, output reg [31:0] ctl__learned);
  reg [WR-1:0] mem [0:D*D-1];
  reg [AW:0] sweep;
  reg sweeping = 1;
  integer cnt;
  reg learn0;
  assign ctl__busy = sweeping;
  assign x__ready = !sweeping && (!z__valid || z__ready);
  always @(posedge clk) begin
    ctl__r__rvalid <= 0;
    if (rst || ctl__reset) begin
      sweeping <= 1; sweep <= 0; z__valid <= 0; cnt = 0;
      ctl__overflow <= 0; ctl__frame_error <= 0; ctl__samples <= 0; ctl__learned <= 0;
    end else if (sweeping) begin
      mem[sweep] <= (!RESET_BUG && sweep / D == sweep % D) ? (1 << FR) : 0;
      sweep <= sweep + 1;
      if (sweep == D*D-1) sweeping <= 0;
    end else begin
      if (ctl__clear_overflow) ctl__overflow <= 0;
      if (ctl__r__we) mem[ctl__r__addr] <= ctl__r__wdata;
      if (ctl__r__re) begin ctl__r__rdata <= mem[ctl__r__addr]; ctl__r__rvalid <= 1; end
      if (z__valid && z__ready) z__valid <= 0;
      if (x__valid && x__ready) begin
        z__payload <= {{cnt == D-1, x__payload[W-1:0]}};
        z__valid <= 1;
        if (cnt == 0) learn0 = x__payload[W+1];
        if (!FRAME_BUG && x__payload[W] != (cnt == D-1)) ctl__frame_error <= 1;
        if (cnt == D-1 || x__payload[W]) begin
          cnt = 0; ctl__samples <= ctl__samples + 1; if (learn0) ctl__learned <= ctl__learned + 1;
        end else cnt = cnt + 1;
      end
    end
  end
endmodule
"""


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """An export whose samples never learn, from R = I: z = x exactly, so a protocol mock can pass it."""
    require_simulators()
    rng = np.random.default_rng(3)
    x = rng.integers(-200, 200, size=(300, SMALL.size))
    out = tmp_path_factory.mktemp("verify") / "frozen"
    man = export(SMALL, 2, out, stimulus=Stimulus(x=x, learn=False))
    return out, man


def _mock_copy(frozen, dst, *, reset_bug=0, frame_bug=0):
    out, man = frozen
    shutil.copytree(out, dst)
    p = man["testbench"]["parameters"]
    (dst / "decor_unit.v").write_text(MOCK.format(d=p["D"], w=p["W"], wr=p["WR"], fr=p["FR"], aw=p["AW"],
                                                  reset_bug=reset_bug, frame_bug=frame_bug))
    return dst


def test_mock_unit_passes_and_a_reset_that_does_not_restore_r_is_caught(frozen, tmp_path):
    good = verify(_mock_copy(frozen, tmp_path / "good"), ("iverilog",))["simulators"]["iverilog"]
    assert good["bit_exact"] is True and good["z_checked"] == 300, good["reported_mismatches"]
    assert good["cached_build"] is False  # another decor_unit.v: rebuilt
    bad = verify(_mock_copy(frozen, tmp_path / "reset", reset_bug=1), ("iverilog",))["simulators"]["iverilog"]
    assert bad["bit_exact"] is False
    # caught right after rst, before anything is loaded, and again after the ctl reset pulse
    assert bad["first_mismatch"] == {"kind": "r_reset", "sample": -1, "word": 0, "expected": 1 << SMALL.r_frac,
                                     "got": 0}
    kinds = [m["kind"] for m in bad["reported_mismatches"]]  # the first 8: the diagonal, twice
    assert kinds == ["r_reset"] * SMALL.size + ["r_cmd_reset"] * (8 - SMALL.size)
    assert bad["mismatches"] == 2 * SMALL.size  # z and R at the end are still right (R0 is loaded)
    nofe = verify(_mock_copy(frozen, tmp_path / "frame", frame_bug=1), ("iverilog",))["simulators"]["iverilog"]
    assert nofe["bit_exact"] is False and nofe["frame_error_raised"] is False
    assert nofe["first_mismatch"]["kind"] == "frame" and nofe["mismatches"] == 1


def test_cli_verify_json_and_exit_codes(small, tmp_path, capsys):
    out, _, _ = small
    assert commands.main(["verify", str(out), "--sim", "verilator", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["bit_exact"] is True and list(obj["simulators"]) == ["verilator"]
    assert obj["simulators"]["verilator"]["samples"] == 1030
    assert commands.main(["hdl", "verify", str(out), "--sim", "verilator"]) == 0
    text = capsys.readouterr().out
    assert "M=2 lanes" in text and "yes" in text and "(cached)" in text
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


def test_verify_rejects_unknown_simulators_non_exports_and_old_exports(small, tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'verilator'"):
        verify(tmp_path, ("verilatr",))
    with pytest.raises(ConfigError, match="no simulator"):
        verify(tmp_path, "")
    assert check_simulators("icarus, verilator") == ("iverilog", "verilator")
    (tmp_path / "y").mkdir()
    with pytest.raises(DataError, match="not an HDL export"):
        verify(tmp_path / "y")
    old = tmp_path / "old"
    shutil.copytree(small[0], old)
    man = json.loads((old / MANIFEST).read_text())
    (old / MANIFEST).write_text(json.dumps({**man, "schema": 1}))
    with pytest.raises(DataError, match="older analogdecorr.*export it again"):
        verify(old)
    (old / MANIFEST).write_text(json.dumps(man))
    (old / "learn.hex").unlink()
    with pytest.raises(DataError, match="incomplete .missing learn.hex"):
        verify(old)


def test_parse_output_without_result_line_is_an_error():
    with pytest.raises(DataError, match="no RESULT line"):
        parse_output("VCD info: nothing\n")
    r = parse_output(
        "MISMATCH kind=z sample=3 word=1 expected=-2 got=5\nTIMING latency=4 calm_span=21 calm_count=7 "
        "calm_learn=6 stream_cycles=100\nRESULT bit_exact=0 start=0 samples=9 z_checked=9 r_checked=12 "
        "r_expected=12 readbacks=3 status_checked=5 frame=1 mismatches=1 timeout=0 cycles=300 "
        "overflow_expected=0 overflow_got=0 first_mismatch=3 first_kind=z first_word=1 first_expected=-2 "
        "first_got=5\n"
    )
    assert r["first_mismatch"] == {"kind": "z", "sample": 3, "word": 1, "expected": -2, "got": 5}
    assert r["latency"] == 4 and r["cycles_per_sample"] == 3.0 and r["bit_exact"] is False
    assert r["calm_all_learning"] is False and r["frame_error_raised"] is True and r["readbacks"] == 3
    assert r["reported_mismatches"] == [{"kind": "z", "sample": 3, "word": 1, "expected": -2, "got": 5}]
