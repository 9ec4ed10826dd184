"""`lmrec federate`: bad arguments fail with one line before anything is loaded or simulated."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from lmrec.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "sasrec"], "--model 'sasrec': choose mf (federated BPR-MF) or two_tower"),
        (["--model", "two_tower", "--fusion", "gate"], "--fusion 'gate': choose sum or text_only"),
        (["--dp", "shop"], "--dp 'shop': choose record or client"),
        (["--strategy", "fedsgd"], "--strategy 'fedsgd': choose fedavg, fedavgm, fedprox or fedadam"),
        (["--dp-clipping", "both"], "--dp-clipping 'both': choose server or client"),
        (["--fold-in-l2", "high"], "--fold-in-l2 'high': give a number or auto"),
    ],
)
def test_bad_arguments_are_one_line(args: list[str], message: str) -> None:
    res = runner.invoke(app, ["federate", *args])
    assert res.exit_code != 0
    assert message in " ".join(res.output.split())


@pytest.mark.skipif(importlib.util.find_spec("flwr") is not None, reason="flwr is installed")
def test_without_flwr_it_says_what_to_install() -> None:
    res = runner.invoke(app, ["federate"])
    assert res.exit_code != 0 and "pip install 'lmrec[federated]'" in " ".join(res.output.split())


def test_a_bad_config_value_is_one_line() -> None:
    pytest.importorskip("flwr")
    res = runner.invoke(app, ["federate", "--fraction", "0"])
    assert res.exit_code != 0 and "fraction" in res.output


def test_secagg_with_server_side_clipping_is_one_line() -> None:
    pytest.importorskip("flwr")
    res = runner.invoke(app, ["federate", "--secagg", "--dp", "client", "--dp-epsilon", "8"])
    assert res.exit_code != 0 and "dp_clipping='client'" in " ".join(res.output.split())
