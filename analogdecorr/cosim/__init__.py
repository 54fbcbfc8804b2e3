"""Co-simulation: training whose decorrelation runs the FPGA unit's integer arithmetic, checked against the RTL.

- ``unit``: the unit's format for every decorrelated layer (``--unit-*`` flags or an exported manifest).
- ``scale``: the per-layer power-of-two map of activations into the unit's data words.
- ``decorrelator``: ``FixedDecorrelator``, the ``Decorrelator`` whose arithmetic is ``fixed.model.run``.
- ``record``: the first K samples each layer's unit saw, written into the run folder.
- ``replay``: ``analogdecorr cosim check``, the recorded stream through the exported Verilog.

Training imports only numpy/torch from here; amaranth and the simulators are imported by ``replay`` on use.
"""
