"""``benchmarks/federated.py``'s run plan: each run kind keeps its own validation-chosen rounds, local
epochs and DP clipping; the two-tower model's own settings win over FedMF's; ``--rounds`` overrides
every central, silo and DP run. No simulation runs."""

from __future__ import annotations

from tests.benchmarks.test_hybrid_smoke import _script


def _plan(model: str, rounds: int | None = None) -> dict[str, dict]:
    bench = _script("federated")
    return dict(
        bench.plan_runs({"central", "silo", "dp", "device"}, [1.0, 8.0, float("inf")], 40, rounds, model)
    )


def test_each_kind_keeps_its_own_settings() -> None:
    mf = _plan("mf")
    assert list(mf) == ["central", "silo", "dp eps=1", "dp eps=8", "device"]  # ε = ∞ is the silo run
    assert mf["central"]["iterations"] == 50 and mf["central"]["clients"] == 1
    assert (mf["silo"]["iterations"], mf["silo"]["local_epochs"]) == (20, 2)
    dp = mf["dp eps=8"]
    assert (dp["iterations"], dp["local_epochs"], dp["max_grad_norm"]) == (40, 1, 0.1)
    assert (dp["dp"], dp["dp_epsilon"], dp["batch_size"]) == ("record", 8.0, 4096)
    assert mf["device"]["iterations"] == 40 and mf["device"]["partition"] == "user"


def test_the_tower_overrides_fedmf_settings_per_kind() -> None:
    tower = _plan("two_tower")
    assert tower["central"]["iterations"] == 50
    assert (tower["silo"]["iterations"], tower["silo"]["local_epochs"]) == (40, 2)
    assert tower["dp eps=1"]["max_grad_norm"] == 1.0 and tower["dp eps=1"]["local_epochs"] == 1
    # the device run has no overrides of its own: FedMF's settings plus the tower's (fusion)
    assert tower["device"] == {**_plan("mf")["device"], **_script("federated").TOWER}


def test_rounds_overrides_every_central_silo_and_dp_run() -> None:
    for model in ("mf", "two_tower"):
        plan = _plan(model, rounds=2)
        assert {p["iterations"] for name, p in plan.items() if name != "device"} == {2}
        assert plan["device"]["iterations"] == 40


def test_every_planned_run_is_a_valid_config() -> None:
    """Each run's settings pass the model's own config validation (a refused combination, e.g.
    SecAgg+ with ``evaluate_every`` > 1, would otherwise surface only minutes into a benchmark)."""
    from lmrec.federated import FedMFConfig, FedTwoTowerConfig

    for settings in _plan("mf").values():
        FedMFConfig(**settings)
    for settings in _plan("two_tower").values():
        assert settings["fusion"] == "sum"  # the tower's own settings are in the plan
        FedTwoTowerConfig(**settings)
    for settings in _script("federated_secagg").secagg_arms(20).values():
        FedMFConfig(**settings)
