"""Timing and storage of the memory-backed unit, computed without elaborating it (plan/UNIT_V2.md).

``UnitPlan(fmt, lanes)`` holds the numbers the RTL in ``unit.py`` is built from and that board builds need before
they run a synthesis: effective lanes L = min(M, d), row groups G = ⌈d / L⌉, the pipeline stage at which each
memory is written, the idle cycles between passes that those stages force (read-after-write hazards), cycles
per sample, and the memory plan (what sits in which memory, depth × width).

Pipeline stages are cycle offsets from a slot's issue cycle (memory addresses are driven at stage 0, read data
arrives at stage 1). A write at stage s is visible to a read issued at any later cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormatError

#: Stage of the multiplier operand registers and of the product register.
ST_OPERANDS = 3
ST_PRODUCT = 4
#: Stage at which the pass-2 p word is written to the p scratch (offdiag). The p scratch is single-ported (one
#: address per cycle: written only in pass 2, read only at pass 3's issue), so it can sit in an iCE40
#: UltraPlus SPRAM; pass 3 therefore issues at least ST_P_WRITE cycles after pass 2's last slot.
ST_P_WRITE = 5
#: iCE40 UltraPlus single-port RAMs (SB_SPRAM256KA): how many the UP3K/UP5K have, and each one's depth × width.
SPRAM_BLOCKS = 4
SPRAM_DEPTH = 16384
SPRAM_WIDTH = 16
#: Stage at which the pass-1 z word is written (z memory) once a row's sum is complete.
ST_Z_WRITE = 6
#: Stage at which the LFSR values of a pass-3 slot are drawn (the rounding of the update).
ST_LFSR = 5
#: Stage at which the pass-3 R word is written back.
ST_R_WRITE = 7
#: Pass 3 reads R late, at this stage, so that few (offdiag: no) registers carry the old R to the write-back:
#: offdiag needs R only at the subtraction (data at stage 6); whiten needs Rw at stage 4 (read at 2, rounded
#: at 3). The next sample's pass 1 may issue only after the last such read.
ST_R_LATE_READ = {"offdiag": 5, "whiten": 2}


def _ceil_log2(n: int) -> int:
    return max(0, (n - 1).bit_length())


@dataclass(frozen=True)
class MemoryUse:
    """One memory (``count`` identical copies, one per lane for lane banks): what it holds, depth × width.

    ``spram``: the unit maps it to iCE40 UltraPlus SPRAMs (SB_SPRAM256KA) when elaborated for such a device
    (``spram_blocks`` of them); everywhere else it is an ordinary block RAM.
    """

    name: str
    holds: str
    count: int
    depth: int
    width: int
    spram: bool = False

    @property
    def bits(self) -> int:
        return self.count * self.depth * self.width

    @property
    def spram_blocks(self) -> int:
        """SPRAMs this memory takes on an UltraPlus (0 unless ``spram``): each copy its own, 16 bits per block."""
        if not self.spram:
            return 0
        return self.count * -(-self.width // SPRAM_WIDTH) * -(-self.depth // SPRAM_DEPTH)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "holds": self.holds, "count": self.count, "depth": self.depth,
                "width": self.width, "bits": self.bits, "spram": self.spram, "spram_blocks": self.spram_blocks}


class UnitPlan:
    """Lanes, pass lengths, inter-pass gaps, cycles per sample and memories of ``DecorrelationUnit(fmt, lanes)``."""

    def __init__(self, fmt: object, lanes: int = 1):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise FormatError(f"lanes={lanes!r}: the number of multipliers M must be a positive integer, e.g. 8")
        self.fmt = fmt
        d = fmt.size
        self.size = d
        self.lanes_requested = lanes
        self.lanes = min(lanes, d)  # L: lanes beyond d would only ever be idle
        self.groups = -(-d // self.lanes)  # G
        self.last_group_lanes = d - (self.groups - 1) * self.lanes  # active lanes in group G−1
        self.slots = self.groups * d  # N: issue cycles of one pass
        self.tree_levels = _ceil_log2(self.lanes)  # T: adder-tree levels summing the lanes' products
        self.rule = getattr(fmt, "rule", "offdiag")
        self.centre_shift = int(getattr(fmt, "centre_shift", 0))

    # ------------------------------------------------------------------ pipeline
    @property
    def st_v_write(self) -> int:
        """Stage at which v[j] is written: the product, T tree levels, the accumulator, round, saturate."""
        return ST_PRODUCT + self.tree_levels + 2

    @property
    def st_r_late_read(self) -> int:
        """Stage at which pass 3 reads R (see ST_R_LATE_READ)."""
        return ST_R_LATE_READ[self.rule]

    @property
    def depth(self) -> int:
        """Stages a slot spends in the datapath after issue (the last write)."""
        return max(ST_R_WRITE, self.st_v_write)

    # ------------------------------------------------------------------ hazards
    # Issue order: pass 1 slot t = g·d + j (rows), passes 2 and 3 slot t = j·G + g (columns, the LFSR order).
    # A pass starts N + gap cycles after the previous one; each gap is the smallest that puts every read of a
    # word at least one cycle after its write.
    @property
    def gap12(self) -> int:
        """Pass 1 → 2: z[g·L + k] is written at slot g·d + d − 1 + ST_Z_WRITE, first read at slot (0, g)."""
        d, groups, n = self.size, self.groups, self.slots
        return max(0, max(g * d + d - 1 + ST_Z_WRITE + 1 - (n + g) for g in range(groups)))

    @property
    def gap23(self) -> int:
        """Pass 2 → 3: v[j] is read after slot (j, G − 1)'s write; offdiag's single-ported p scratch takes pass 3's
        first read only after pass 2's last write (stage ST_P_WRITE of slot N − 1), so gap ≥ ST_P_WRITE."""
        n, groups = self.slots, self.groups
        gap_p = ST_P_WRITE if self.rule == "offdiag" else 0
        gap_v = (groups - 1) + self.st_v_write + 1 - n
        return max(0, gap_p, gap_v)

    @property
    def gap31(self) -> int:
        """Pass 3 → next pass 1: R[g, j] is written at slot j·G + g + ST_R_WRITE, read at slot g·d + j."""
        d, groups, n = self.size, self.groups, self.slots
        # j·G + g − g·d − j is largest at g = 0
        raw = max(j * groups + ST_R_WRITE + 1 - (n + j) for j in range(d))
        return max(0, raw, self.st_r_late_read)

    # ------------------------------------------------------------------ timing
    @property
    def cycles_per_sample(self) -> int:
        """Steady-state cycles per learning sample (x always valid, z always ready): 3N + gaps."""
        return 3 * self.slots + self.gap12 + self.gap23 + self.gap31

    @property
    def ideal_cycles_per_sample(self) -> float:
        """3d² / M for the requested M: the multiplier-bound limit."""
        return 3 * self.size * self.size / self.lanes_requested

    @property
    def init_cycles(self) -> int:
        """Cycles of the reset sweep that writes R = I and mu = 0 (busy = 1 meanwhile)."""
        return self.slots

    # ------------------------------------------------------------------ storage
    @property
    def memory_plan(self) -> list[MemoryUse]:
        """Every memory of the unit (Amaranth lib.memory.Memory), depth × width, one entry per kind."""
        fmt, d, lanes, groups = self.fmt, self.size, self.lanes, self.groups
        w = fmt.width
        dp = 1 << _ceil_log2(d)
        gp = 1 << _ceil_log2(groups)
        plan = [
            MemoryUse("r_bank", "R master words of rows g·L + k, address g·d + j (lane k)", lanes, groups * d,
                      fmt.r_width),
        ]
        if self.rule == "offdiag":
            plan.append(MemoryUse("p_bank", "p[i, j] scratch of pass 2 for pass 3 (lane k), single-ported", lanes,
                                  groups * d, w, spram=self.p_spram))
        plan += [
            MemoryUse("z_bank", "z[g·L + k] for passes 2 and 3 (lane k)", lanes, max(2, gp), w),
            MemoryUse("zo_buf", "z in element order for the output stream, two samples", 1, 2 * dp, w),
            MemoryUse("xc_buf", "centred input xc[j], two samples (the running one and the next)", 1, 2 * dp, w),
            MemoryUse("v_buf", "v[j] of pass 2 for pass 3", 1, d, w),
        ]
        if self.centre_shift > 0:
            plan.append(MemoryUse("mu", "running mean mu[j] (F + m fraction bits)", 1, d, w + self.centre_shift))
        return plan

    @property
    def p_spram(self) -> bool:
        """The p scratch goes to SPRAM on an iCE40 UltraPlus: offdiag, and its lane banks fit the 4 SPRAMs
        (L · ⌈W / 16⌉ ≤ 4, G·d ≤ 16384; e.g. W ≤ 16 with M ≤ 4). Otherwise p stays in block RAM."""
        if self.rule != "offdiag" or self.slots > SPRAM_DEPTH:
            return False
        return self.lanes * -(-self.fmt.width // SPRAM_WIDTH) <= SPRAM_BLOCKS

    @property
    def storage_bits(self) -> int:
        """Bits in all memories (registers not counted)."""
        return sum(mem.bits for mem in self.memory_plan)

    @property
    def r_bits(self) -> int:
        """Bits of R itself: d² · W_R (the lane banks hold G·L·d ≥ d² words)."""
        return self.size * self.size * self.fmt.r_width

    def summary(self) -> dict[str, object]:
        """JSON-ready numbers for manifests and board checks."""
        return {
            "lanes_requested": self.lanes_requested, "lanes": self.lanes, "groups": self.groups,
            "slots_per_pass": self.slots, "gaps": [self.gap12, self.gap23, self.gap31],
            "cycles_per_sample": self.cycles_per_sample, "ideal_cycles_per_sample": self.ideal_cycles_per_sample,
            "init_cycles": self.init_cycles, "storage_bits": self.storage_bits,
            "memory_plan": [mem.to_dict() for mem in self.memory_plan],
        }


def ceil_log2(n: int) -> int:
    """⌈log₂ n⌉ for n ≥ 1 (0 for n = 1)."""
    return _ceil_log2(n)
