"""hdl report: Yosys resource counts per FPGA family next to the analytic multiplier count, memories inferred as
block RAM, and nextpnr-ice40 place and route.

At d = 8 on 2 lanes each family's DSP/multiplier-block count must equal the unit's `multipliers` (synthesis only,
--no-pnr) and R's lane banks must map to memory (block RAM or LUT RAM), none left unmapped. Place and route runs
on small units (seconds): a d = 4 unit on 2 lanes routes on the UP5K with nextpnr's DSP count equal to Yosys', and
a unit on 9 lanes (9 SB_MAC16) is reported as not fitting. Under CI=true a missing Yosys or nextpnr-ice40 fails the
tests; elsewhere it skips them.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
from tooling import require

from analogdecorr.errors import ConfigError, EnvironmentMismatchError
from analogdecorr.fixed.format import UnitFormat
from analogdecorr.hdl import commands, tools
from analogdecorr.hdl.export import export
from analogdecorr.hdl.report import (
    FAMILIES,
    Report,
    SynthResult,
    classify,
    does_not_fit,
    nextpnr_missing,
    parse_utilisation,
    report,
    yosys_missing,
)

FMT = UnitFormat(size=8, width=16, frac=12, r_width=28, r_frac=20, shift=10, rounding="half_even")
LANES = 2
# Place and route: d = 4 on 2 lanes fits the UP5K; 9 lanes need 9 of its 8 SB_MAC16 (W = 8 keeps it short).
SMALL = UnitFormat(size=4, width=16, frac=12, r_width=28, r_frac=20, shift=10, rounding="half_even")
TOO_MANY_DSPS = UnitFormat(size=9, width=8, frac=6, r_width=16, r_frac=12, shift=8, rounding="half_even")


def require_yosys() -> None:
    require(yosys_missing(), "Yosys")


def require_nextpnr() -> None:
    require(nextpnr_missing(), "nextpnr-ice40")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    require_yosys()
    base = tmp_path_factory.mktemp("report")
    export(FMT, LANES, base / "m2", samples=16, seed=0)  # synthesis needs no long vector file
    return base / "m2", report(base / "m2", pnr=False)


def test_dsp_count_equals_the_units_multipliers_and_r_is_in_memory(reports):
    path, rep = reports
    lanes = LANES
    m = rep.multipliers
    d = FMT.size
    assert m == lanes and rep.lanes == lanes and rep.multiplies_per_sample == 3 * d * d
    assert rep.ideal_cycles_per_sample == pytest.approx(3 * d * d / m)
    assert rep.utilisation == pytest.approx(3 * d * d / (m * rep.cycles_per_sample))
    assert rep.storage_bits >= d * d * FMT.r_width
    assert set(rep.families) == set(FAMILIES)
    for fam, r in rep.families.items():
        assert r.dsp == m, (fam, r.cells_by_type)
        assert r.dsp_matches_multipliers is True
        assert r.pnr is None, fam  # pnr=False
        assert r.luts > 0 and r.ffs > 0, fam
        assert r.unmapped_memories == 0, fam
        assert r.bram + r.lutram > 0, (fam, r.cells_by_type)  # R's lane banks are memories
        assert r.cells >= r.luts + r.ffs + r.dsp
        assert (path / "synth" / fam / "stats.json").is_file() and (path / "synth" / fam / "synth.ys").is_file()
    assert rep.families["ice40"].bram > 0  # iCE40 has no LUT RAM: R is in SB_RAM40_4K


def test_unchanged_export_reuses_results_and_cli_json(reports, capsys):
    path, rep = reports
    assert commands.main(["report", str(path), "--families", "ice40,xilinx", "--no-pnr", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert list(obj["families"]) == ["ice40", "xilinx"]
    assert obj["nextpnr"] is None and obj["families"]["ice40"]["pnr"] is None
    for fam in ("ice40", "xilinx"):
        assert obj["families"][fam]["cached"] is True
        assert obj["families"][fam]["luts"] == rep.families[fam].luts
        assert obj["families"][fam]["dsp"] == rep.families[fam].dsp
    assert commands.main(["report", str(path), "--families", "ecp5"]) == 0  # no ice40: no place and route
    text = capsys.readouterr().out
    assert "ecp5" in text and "DSPs = M" in text and "BRAMs" in text and "(cached)" in text and "Fmax" not in text
    assert "M=2 lanes" in text


def test_typed_results_round_trip_through_json(reports):
    _, rep = reports
    assert isinstance(rep, Report) and all(isinstance(r, SynthResult) for r in rep.families.values())
    obj = json.loads(json.dumps(rep.to_dict()))
    assert obj["families"]["ecp5"]["dsp"] == rep.families["ecp5"].dsp and obj["lanes"] == LANES
    for r in rep.families.values():
        assert SynthResult.from_dict(r.to_dict()) == r


def test_tool_cache_reuses_only_the_same_inputs(tmp_path):
    """The one cache of verify builds, synthesis and place and route: a result is reused only for the same key."""
    work = tmp_path / "w"
    key = tools.input_key(b"verilog", "cmd", "yosys 0.23")
    assert tools.cached_result(work, key) is None and work.is_dir()
    (work / "log").write_text("x")
    tools.store_result(work, key, {"n": 1})
    assert tools.cached_result(work, key) == {"n": 1} and (work / "log").exists()
    assert tools.cached_result(work, tools.input_key(b"verilog", "cmd", "yosys 0.24")) is None  # new version
    assert not (work / "log").exists()  # a miss empties the folder for the new run
    tools.store_result(work, key, {"n": 1})
    assert tools.cached_result(work, key, use_cache=False) is None
    assert tools.input_key(b"ab", "c") != tools.input_key(b"a", "bc")


def test_bad_family_and_cell_classes(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'ecp5'"):
        report(tmp_path, ("ecp4",))
    counts = classify({"SB_LUT4": 10, "SB_DFFE": 3, "SB_MAC16": 2, "SB_RAM40_4K": 1, "SB_CARRY": 4,
                       "LUT6": 5, "FDRE": 7, "DSP48E1": 1, "RAMB18E1": 2, "RAM64M": 3, "MUXF7": 1,
                       "TRELLIS_FF": 2, "MULT18X18D": 4, "DP16KD": 1, "CCU2C": 2, "BUFG": 1, "SB_SPRAM256KA": 2,
                       "RAMB36E1": 1, "PDPW16KD": 1})
    assert counts == {"luts": 15, "ffs": 12, "carry": 6, "dsp": 7, "bram": 6, "spram": 2, "lutram": 3,
                      "muxes": 1, "other": 1}


def test_bad_frequency_and_nextpnr_log_parsing(tmp_path):
    with pytest.raises(ConfigError, match="positive"):
        report(tmp_path, ("ice40",), freq=0)
    log = (
        "Info: Device utilisation:\n"
        "Info: \t         ICESTORM_LC:  5864/ 5280   111%\n"
        "Info: \t        ICESTORM_RAM:     9/   30    30%\n"
        "Info: \t        ICESTORM_DSP:     9/    8   112%\n"
        "ERROR: Unable to place cell 'u', no BELs remaining to implement cell type 'ICESTORM_DSP'\n"
    )
    util = parse_utilisation(log)
    assert util["ICESTORM_DSP"] == {"used": 9, "available": 8} and util["ICESTORM_RAM"]["used"] == 9
    assert does_not_fit(util) == (
        "does not fit: needs 5864 logic cells, the UP5K has 5280; needs 9 SB_MAC16, the UP5K has 8"
    )
    assert does_not_fit({"ICESTORM_DSP": {"used": 8, "available": 8}}) is None


# ---------------------------------------------------------------------------------------------- place and route
@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    require_yosys()
    require_nextpnr()
    path = tmp_path_factory.mktemp("pnr") / "d4"
    export(SMALL, 2, path, samples=16, seed=0)
    return path, report(path, ("ice40",))


def test_small_unit_routes_on_the_up5k(routed):
    path, rep = routed
    syn = rep.families["ice40"]
    p = syn.pnr
    assert rep.nextpnr and "0." in rep.nextpnr
    assert p.routed is True and p.fits is True and p.error is None, p.error
    assert p.fmax_mhz > 0 and p.meets_target == (p.fmax_mhz >= 48.0)
    # nextpnr places exactly the SB_MAC16 blocks and block RAMs Yosys mapped
    assert p.dsp == syn.dsp == rep.multipliers == 2 and p.dsp_matches_yosys is True
    assert p.bram == syn.bram > 0
    assert (p.lcs_available, p.dsp_available, p.bram_available) == (5280, 8, 30)
    assert p.io == 3  # clk, si, so: the harness fits any package
    # Every LUT and every flip-flop (the unit's and the harness') takes a logic cell of its own kind.
    h = p.harness
    assert p.lcs >= syn.luts + h["luts"] and p.lcs >= syn.ffs + h["ffs"]
    ports = json.loads((path / "manifest.json").read_text())["ports"]
    assert h["inputs"] == sum(q["width"] for q in ports if q["direction"] == "input" and q["name"] != "clk")
    assert h["outputs"] == sum(q["width"] for q in ports if q["direction"] == "output")
    assert p.samples_per_second == pytest.approx(p.fmax_mhz * 1e6 / rep.cycles_per_sample)
    # The JSON report's Fmax is the final one: the last "Max frequency" line of the log (after routing).
    log = (path / "pnr" / "ice40" / "nextpnr.log").read_text()
    final = re.findall(r"Max frequency for clock '[^']+': ([0-9.]+) MHz", log)[-1]
    assert p.fmax_mhz == pytest.approx(float(final), abs=0.01)
    assert (path / "synth" / "ice40" / "decor_pnr.json").is_file()
    assert (path / "pnr" / "ice40" / "report.json").is_file()


def test_pnr_result_is_cached_and_printed(routed, capsys):
    path, rep = routed
    assert commands.main(["report", str(path), "--families", "ice40", "--json"]) == 0
    p = json.loads(capsys.readouterr().out)["families"]["ice40"]["pnr"]
    assert p["cached"] is True and p["fmax_mhz"] == rep.families["ice40"].pnr.fmax_mhz
    assert commands.main(["report", str(path), "--families", "ice40"]) == 0
    text = capsys.readouterr().out
    assert "Fmax MHz" in text and "Msamples/s" in text and "UP5K" in text and "(cached)" in text
    assert commands.main(["report", str(path), "--families", "ice40", "--no-pnr", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["families"]["ice40"]["pnr"] is None
    # A new target is a new nextpnr command: routed again (the synthesis is still reused).
    again = report(path, ("ice40",), freq=12)
    assert again.families["ice40"].cached is True
    p = again.families["ice40"].pnr
    assert p.cached is False and p.target_mhz == 12 and "--freq 12" in p.command
    assert p.routed is True and p.meets_target == (p.fmax_mhz >= 12)


def test_more_than_eight_multipliers_does_not_fit_the_up5k(tmp_path, capsys):
    require_yosys()
    require_nextpnr()
    path = tmp_path / "d9"
    export(TOO_MANY_DSPS, 9, path, samples=16, seed=0)
    rep = report(path, ("ice40",))
    syn = rep.families["ice40"]
    p = syn.pnr
    assert rep.multipliers == syn.dsp == p.dsp == 9
    assert p.fits is False and p.routed is False
    assert p.error.startswith("does not fit: ") and "needs 9 SB_MAC16, the UP5K has 8" in p.error
    assert p.fmax_mhz is None and p.samples_per_second is None
    assert commands.main(["report", str(path), "--families", "ice40"]) == 0
    assert "does not fit: " in capsys.readouterr().out


def test_missing_nextpnr_names_the_apt_package(reports, tmp_path, monkeypatch, capsys):
    path, _ = reports
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(shutil.which("yosys"), bindir / "yosys")  # yosys only
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(EnvironmentMismatchError, match=r"nextpnr-ice40 not found.*apt-get install nextpnr-ice40"):
        report(path, ("ice40",))
    assert commands.main(["report", str(path), "--families", "ice40"]) == 2
    assert "error: nextpnr-ice40 not found on PATH" in capsys.readouterr().err
    # Without place and route nextpnr is not needed.
    assert report(path, ("ice40",), pnr=False).families["ice40"].cached is True
    assert report(path, ("xilinx",)).nextpnr is None
