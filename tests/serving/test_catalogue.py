"""Catalogue terms: the content words of title and text, worked out when first asked for."""

from __future__ import annotations

import polars as pl

from lmrec.data.vocabulary import Vocabulary
from lmrec.serving.catalogue import Catalogue


def test_terms_are_title_and_text_words_worked_out_on_demand() -> None:
    vocab = Vocabulary([10, 20, 30], name="item_id")
    frame = pl.DataFrame(
        {
            "item_id": [10, 20],
            "title": ["Space Pirates", None],
            "description": ["Pirates sail the galaxy", "A quiet harbour"],
        }
    )
    cat = Catalogue(vocab, frame)
    assert len(cat.terms) == 3 and not cat.terms._done  # nothing worked out at load
    assert cat.terms[0] == {"space", "pirates", "sail", "galaxy"}
    assert cat.terms[1] == {"quiet", "harbour"}
    assert cat.terms[2] == frozenset()
    assert set(cat.terms._done) == {0, 1, 2}
    i = cat.add("Deep Ocean", ["sea"], "whales sing", {})
    assert i == 3 and cat.terms[3] == {"deep", "ocean", "whales", "sing"}
