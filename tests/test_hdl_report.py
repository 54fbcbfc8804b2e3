"""hdl report: Yosys resource counts per FPGA family next to the analytic multiplier count.

At the default d = 8, W = 16 unit each family's DSP/multiplier-block count must equal the unit's `multipliers`
for both architectures. Under CI=true a missing Yosys fails the tests; elsewhere it skips them with the reason.
"""

from __future__ import annotations

import json

import pytest
from tooling import require

from analogdecorr.errors import ConfigError
from analogdecorr.fixed.format import UnitFormat
from analogdecorr.hdl import commands
from analogdecorr.hdl.export import export
from analogdecorr.hdl.report import FAMILIES, classify, report, yosys_missing

FMT = UnitFormat(size=8, width=16, frac=12, r_width=28, r_frac=20, shift=10, rounding="half_even")


def require_yosys() -> None:
    require(yosys_missing(), "Yosys")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    require_yosys()
    base = tmp_path_factory.mktemp("report")
    out = {}
    for arch in ("row", "mac"):
        export(FMT, arch, base / arch, samples=16, seed=0)  # synthesis needs no long vector file
        out[arch] = (base / arch, report(base / arch))
    return out


@pytest.mark.parametrize("arch", ["row", "mac"])
def test_dsp_count_equals_the_units_multipliers(reports, arch):
    path, rep = reports[arch]
    m = rep["multipliers"]
    d = FMT.size
    assert rep["arch"] == arch and rep["multiplies_per_sample"] == 3 * d * d
    assert rep["utilisation"] == pytest.approx(3 * d * d / (m * rep["cycles_per_sample"]))
    assert set(rep["families"]) == set(FAMILIES)
    for fam, r in rep["families"].items():
        assert r["dsp"] == m, (fam, r["cells_by_type"])
        assert r["dsp_matches_multipliers"] is True
        assert r["luts"] > 0 and r["ffs"] > 0, fam
        assert r["unmapped_memories"] == 0, fam
        assert r["cells"] >= r["luts"] + r["ffs"] + r["dsp"]
        assert (path / "synth" / fam / "stats.json").is_file() and (path / "synth" / fam / "synth.ys").is_file()


def test_row_uses_more_multipliers_than_mac(reports):
    row, mac = reports["row"][1], reports["mac"][1]
    assert mac["multipliers"] == 1 and row["multipliers"] > 1
    assert row["cycles_per_sample"] < mac["cycles_per_sample"]
    for fam in FAMILIES:
        assert row["families"][fam]["dsp"] > mac["families"][fam]["dsp"]


def test_unchanged_export_reuses_results_and_cli_json(reports, capsys):
    path, rep = reports["row"]
    assert commands.main(["report", str(path), "--families", "ice40,xilinx", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert list(obj["families"]) == ["ice40", "xilinx"]
    for fam in ("ice40", "xilinx"):
        assert obj["families"][fam]["cached"] is True
        assert obj["families"][fam]["luts"] == rep["families"][fam]["luts"]
        assert obj["families"][fam]["dsp"] == rep["families"][fam]["dsp"]
    assert commands.main(["report", str(path), "--families", "ecp5"]) == 0
    text = capsys.readouterr().out
    assert "ecp5" in text and "DSPs = M" in text and "(cached)" in text


def test_bad_family_and_cell_classes(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'ecp5'"):
        report(tmp_path, ("ecp4",))
    counts = classify({"SB_LUT4": 10, "SB_DFFE": 3, "SB_MAC16": 2, "SB_RAM40_4K": 1, "SB_CARRY": 4,
                       "LUT6": 5, "FDRE": 7, "DSP48E1": 1, "RAMB18E1": 2, "RAM64M": 3, "MUXF7": 1,
                       "TRELLIS_FF": 2, "MULT18X18D": 4, "DP16KD": 1, "CCU2C": 2, "BUFG": 1})
    assert counts == {"luts": 15, "ffs": 12, "carry": 6, "dsp": 7, "bram": 4, "lutram": 3, "muxes": 1,
                      "other": 1}
