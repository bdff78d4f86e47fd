"""Zero-copy allocation planner: how each shared buffer must be allocated, or why not.

``plan_scenario(scenario, soc)`` plans every pool (:mod:`socmem.plan.planner`), layouts
come from :mod:`socmem.plan.formats`, conflicts and ranked fixes from
:mod:`socmem.plan.explain`, and :mod:`socmem.plan.prove` executes a plan on the
functional kernel model (heaps, dma-buf attachments, mappings, fences, cache syncs).
"""

from socmem.plan.planner import PoolPlan, ScenarioPlan, choose_heap, plan_pool, plan_scenario

__all__ = ["PoolPlan", "ScenarioPlan", "choose_heap", "plan_pool", "plan_scenario"]
