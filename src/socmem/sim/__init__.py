"""Time for the socmem model: the discrete-event engine and the fluid bandwidth model.

* :mod:`socmem.sim.engine`: integer-ns event loop, SimPy-style generator processes
  (``Timeout``, ``Event``, ``AllOf``/``AnyOf``), and a :class:`~socmem.sim.engine.Clock`
  adapter the functional model can read time from.
* :mod:`socmem.sim.qos`: QoS classes and the allocation rule (strict priority between
  classes, weighted max-min inside a class), with a from-scratch reference solver.
* :mod:`socmem.sim.fluid`: :class:`~socmem.sim.fluid.FluidResource` (a DRAM as a
  shared fluid) and :class:`~socmem.sim.fluid.Flow` (a DMA transfer, an event that is
  processed when its last byte has moved), with incremental water-filling and metrics
  (per-master rate series, utilisation series, per-flow latency).

The timing model wraps the functional model and never re-implements it.
"""
