"""Item text for :mod:`lmrec.data.synthetic`: words tied to each item's topic and style.

Real theme words for the first topics (so a pretrained text encoder sees meaningful text),
pronounceable made-up words past them, and topic-free filler so text is not a clean label.
"""

from __future__ import annotations

import numpy as np
import polars as pl

#: topic names, each topic's words, each (topic, style) cluster's style words
Vocab = tuple[list[str], list[list[str]], list[list[str]]]

#: themes with real words, so a pretrained text encoder sees meaningful text; topics beyond these
#: get made-up words (still consistent per topic, which is all a text model needs)
_THEMES: dict[str, str] = {
    "space": "rocket planet orbit galaxy astronaut comet nebula launch moon star",
    "cooking": "recipe kitchen spice oven pasta sauce bake chef flavour garlic",
    "crime": "detective murder police heist suspect alibi gang clue prison case",
    "romance": "love wedding kiss heart affair couple letter date passion bride",
    "war": "soldier battle army trench general siege rifle front medal navy",
    "sports": "football coach league stadium goal champion team match season runner",
    "music": "band guitar concert album singer drum melody tour jazz song",
    "horror": "ghost haunted zombie curse blood vampire scream demon crypt witch",
    "animation": "cartoon puppy talking kingdom princess toy dragon magic kids fairy",
    "history": "empire king ancient revolution castle pharaoh dynasty rome queen crown",
    "science": "laboratory experiment physics genome robot virus atom theory cell data",
    "travel": "journey island road mountain desert ocean train village map voyage",
    "business": "market startup money bank deal stock company office profit boss",
    "nature": "forest wildlife river bird wolf flower jungle whale climate tree",
    "fashion": "dress model style designer runway shoe silk jacket boutique vogue",
    "gaming": "console level quest player arcade pixel boss controller dungeon loot",
    "western": "cowboy sheriff saloon horse outlaw ranch frontier canyon duel gold",
    "comedy": "joke prank sitcom laugh clown parody blunder roommate party mishap",
    "politics": "election senator campaign vote scandal president debate law spy treaty",
    "fantasy": "wizard sword elf prophecy spell realm knight orc amulet throne",
    "family": "mother father brother sister home holiday grandma school baby neighbour",
    "ocean": "sailor ship pirate reef storm harbour submarine shark tide lighthouse",
    "medicine": "doctor hospital nurse surgery patient cure clinic disease heartbeat ward",
    "technology": "computer software internet hacker phone network code chip cloud app",
}
#: topic-free words mixed into every description, so text is not a clean label
_FILLER = (
    "classic", "new", "popular", "acclaimed", "modern", "original", "bold", "quiet", "dark", "bright",
    "long", "short", "special", "deluxe", "complete", "essential", "great", "little", "big", "simple",
)  # fmt: skip
_KINDS = ("story", "collection", "edition", "guide", "series", "tale", "volume", "special", "saga", "set")
_SYLLABLES = tuple(c + v for c in "bdfgklmnprstvz" for v in "aeiou")


def made_up_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct pronounceable nonsense words ("velora"), for topics past the real themes."""
    out: dict[str, None] = {}
    while len(out) < n:
        syl = rng.choice(len(_SYLLABLES), size=int(rng.integers(2, 4)))
        out["".join(_SYLLABLES[s] for s in syl)] = None
    return list(out)


def vocabularies(seed: int, n_topics: int, n_subtopics: int) -> Vocab:
    """Topic names, each topic's words, and each (topic, style) cluster's style words."""
    rng = np.random.default_rng([seed, 2])
    names = list(_THEMES)[:n_topics]
    words = [_THEMES[n].split() for n in names]
    for _ in range(n_topics - len(names)):
        made = made_up_words(rng, 11)
        names.append(made[0])
        words.append(made[1:])
    styles = [made_up_words(rng, 2) for _ in range(n_topics * n_subtopics)]
    return names, words, styles


def item_texts(
    seed: int,
    n_subtopics: int,
    item_ids: np.ndarray,
    item_topic: np.ndarray,
    item_sub: np.ndarray,
    start: int,
    stop: int,
    vocab: Vocab,
) -> pl.DataFrame:
    """Title, description and tags of the items at cluster positions ``[start, stop)``.

    Words come mostly from the item's topic and style, partly from topic-free filler, so similar
    texts mean similar clusters without the text being a clean label.
    """
    names, words, styles = vocab
    rng = np.random.default_rng([seed, 3, start])
    m = stop - start
    topic = item_topic[start:stop]
    sub = item_sub[start:stop]
    # every random choice drawn at once; the loop below only formats strings
    n_words = np.array([len(w) for w in words])[topic]
    pick = (rng.random((m, 4)) * n_words[:, None]).astype(np.int64)
    fill = rng.integers(0, len(_FILLER), size=(m, 3))
    kinds = rng.integers(0, len(_KINDS), size=m)
    titles, descs, tags = [], [], []
    for j in range(m):
        t = int(topic[j])
        tw, style, p, f = words[t], styles[t * n_subtopics + int(sub[j])], pick[j], fill[j]
        kind = _KINDS[kinds[j]]
        titles.append(f"The {_FILLER[f[0]].title()} {tw[p[0]].title()} {style[0].title()} {kind.title()}")
        adj = _FILLER[f[1]]
        descs.append(
            f"{'An' if adj[0] in 'aeiou' else 'A'} {adj} {names[t]} {kind} about {tw[p[1]]}, {tw[p[2]]} and {style[1]}, "
            f"{_FILLER[f[2]]} and {style[0]} in tone, with {tw[p[3]]}."
        )
        tags.append(f"{names[t]}, {style[0]}, {tw[p[1]]}")
    return pl.DataFrame(
        {"item_id": item_ids[start:stop], "title": titles, "description": descs, "tags": tags}
    )


__all__ = ["Vocab", "item_texts", "made_up_words", "vocabularies"]
