from __future__ import annotations

import numpy as np
import pytest

from lmrec.data.vocabulary import Vocabulary
from lmrec.errors import UnknownIdError


def test_int_vocab_accepts_numeric_strings():
    v = Vocabulary([3, 1, 2])
    assert v.index("1") == 1 and v.index(np.int64(2)) == 2 and "3" in v
    assert v.get("nope") == -1


def test_unknown_ids_are_all_named():
    v = Vocabulary(["a", "b"], name="item_id")
    with pytest.raises(UnknownIdError) as info:
        v.indices(["a", "x", "y"])
    assert "unknown item_id: 'x', 'y'" in str(info.value)
    assert v.indices(["a", "x"], missing="drop").tolist() == [0]
    assert v.indices(["a", "x"], missing="mark").tolist() == [0, -1]


def test_json_round_trip_and_extend():
    v = Vocabulary([5, 7], name="user_id")
    assert Vocabulary.from_json(v.to_json()) == v
    w = v.extend([7, 9, 9])
    assert w.ids == [5, 7, 9] and v.ids == [5, 7]


def test_duplicates_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary([1, 1])
