from socmem.plan.planner import plan_scenario
from socmem.plan.prove import prove_plan
from socmem.scenario.loader import load_scenario
from socmem.soc.loader import load_soc


def test_default_plan_is_executed_on_the_kernel_model() -> None:
    s = load_scenario("default").scenario
    soc = load_soc(s.soc)
    plan = plan_scenario(s, soc)
    proof = prove_plan(plan, s, soc)
    assert proof.ok and not proof.findings
    yuv0 = proof.pools["yuv0"]
    assert yuv0.heap == "cma" and {m["master"] for m in yuv0.mappings} == {
        "isp", "npu", "venc", "display"
    }  # fmt: skip
    assert all(m["via"] == "iommu" for m in yuv0.mappings)
    assert proof.pools["bitstream"].cpu_syncs == 2


def test_a_wrong_heap_is_caught_by_the_proof() -> None:
    s = load_scenario("nommu-contiguous").scenario
    soc = load_soc(s.soc)
    plan = plan_scenario(s, soc)
    plan.pools["cam"].heap = "system"  # pretend the planner got it wrong
    proof = prove_plan(plan, s, soc)
    assert not proof.ok
    assert proof.findings or proof.pools["cam"].problems
