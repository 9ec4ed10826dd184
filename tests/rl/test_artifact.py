import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lmrec.cli import app
from lmrec.errors import LmrecError
from lmrec.rl.artifact import META, load_policy
from tests.rl.helpers import saved_toy_policy


def test_saved_policy_comes_back_with_the_same_choices(tmp_path):
    pi, sim = saved_toy_policy(tmp_path / "p")
    world = sim.world
    back, meta = load_policy(tmp_path / "p")
    obs = sim.reset(np.arange(16), np.random.default_rng(1))
    assert np.allclose(back.scores(obs), pi.scores(obs), atol=1e-6)
    assert meta["dynamics"] == sim.config
    assert np.allclose(meta["click_model"].weights, world.click_model.weights)


def test_loading_a_folder_without_a_policy_names_the_file(tmp_path):
    with pytest.raises(LmrecError, match=META):
        load_policy(tmp_path)


def test_rl_train_command_writes_a_policy(tmp_path, data_home):
    out = tmp_path / "policy"
    res = CliRunner().invoke(
        app,
        [
            *("rl", "train", "ml-100k", "--out", str(out), "--quick", "--slate-size", "2"),
            *("--data-dir", str(data_home), "--json"),
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert 0.5 < report["click_model"]["auc_test"] <= 1.0
    _, meta = load_policy(out)
    assert meta["kind"] == "reinforce" and meta["report"]["valid_reward"] > 0
    assert meta["dynamics"].slate_size == 2
