"""Amaranth generators of the fixed-point decorrelation unit (``DecorrelationUnit``) and its Verilog tools."""

from .plan import UnitPlan
from .ports import Control, RPort, XPayload, ZPayload
from .unit import UNIT_RULES, DecorrelationUnit

__all__ = ["UNIT_RULES", "Control", "DecorrelationUnit", "RPort", "UnitPlan", "XPayload", "ZPayload"]
