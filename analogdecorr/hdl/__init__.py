"""Amaranth generators of the fixed-point decorrelation unit (``DecorrelationUnit``) and its Verilog tools."""

from .unit import ARCHS, DecorrelationUnit

__all__ = ["ARCHS", "DecorrelationUnit"]
