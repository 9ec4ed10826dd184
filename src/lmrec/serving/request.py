"""Stages 1 and 2 of the recommend pipeline (:mod:`lmrec.serving.pipeline`): the request resolved.

1. **candidates** (:func:`build_context`): a request's keywords (:class:`RecommendOptions`) checked
   against the server's limits, its query (a known user, a history, text, a mix) encoded into the
   model's :class:`~lmrec.models.base.QueryBatch`, and the pool sized, all in a
   :class:`RequestContext`;
2. **filters** (:func:`apply_filters`, :func:`filter_mask`): the request's ``exclude`` list and the
   items the user disliked as excluded indices, the business filters (allow-list, tags, catalogue
   fields) as a boolean mask, both in an :class:`Exclusions` for the model ranking.

Unknown ids follow the request's ``strict``: a :class:`~lmrec.serving.errors.NotFound` (404), or
left out and reported as :class:`~lmrec.serving.schemas.IdWarning` in the response.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from lmrec.errors import FilterValueError, UnknownIdError, UnsupportedQueryError
from lmrec.models.base import Query, QueryBatch, Recommender
from lmrec.models.query import UnknownIds
from lmrec.serving.catalogue import Catalogue
from lmrec.serving.errors import InvalidField, NotFound, ServingError
from lmrec.serving.schemas import IdWarning

if TYPE_CHECKING:
    from lmrec.serving.config import ServingConfig


@dataclass(frozen=True)
class RequestContext:
    """One recommend request, validated and resolved: what every stage reads."""

    #: the user id as the client sent it (echoed in the response)
    user_id: Any
    #: the user id in the model vocabulary's type; None for anonymous (history/text) queries
    key: Any
    batch: QueryBatch
    k: int
    #: how many candidates the model ranks: ``k``, or more when a reranker chooses among them
    pool_size: int
    exclude_seen: bool = True
    exclude: Sequence[Any] = ()
    filters: dict[str, Any] = field(default_factory=dict)
    explore: bool = False
    #: the bandit that explores (None: no exploration)
    policy: str | None = None
    diversity: float = 0.0
    explain: bool = True
    text: str | None = None
    #: unknown ids are a 404 (True) or left out and reported (False)
    strict: bool = False
    #: None, or "popularity" when nothing in the query was known
    fallback: str | None = None
    #: ids of the query left out (lenient mode)
    warnings: tuple[IdWarning, ...] = ()

    @property
    def history(self) -> np.ndarray:
        """The query's history as item indices (the user's history plus the request's)."""
        return self.batch.sequences[0]


@dataclass(frozen=True)
class Exclusions:
    """What the filters stage hands the model ranking: items never to return, and an allow mask."""

    exclude: np.ndarray
    allowed: np.ndarray | None = None
    #: unknown ``exclude`` / ``filters.item_ids`` ids left out (lenient mode)
    warnings: tuple[IdWarning, ...] = ()


class RecommendOptions(TypedDict, total=False):
    """The keywords of a recommend request other than ``with_explanations``
    (:meth:`RecommendPipeline.recommend`, :meth:`~lmrec.serving.state.ServingState.recommend`);
    each is optional: :func:`build_context` gives the defaults and checks the values."""

    user_id: Any
    history: list[Any] | None
    text: str | None
    k: int
    exclude: list[Any] | None
    exclude_seen: bool
    filters: dict[str, Any] | None
    explore: bool | None
    policy: str | None
    diversity: float | None
    strict: bool | None


# ---------------------------------------------------------------------- 1. candidates
def build_context(
    model: Recommender,
    config: ServingConfig,
    *,
    user_id: Any = None,
    user_key: Callable[[Any], Any] | None = None,
    history: Sequence[Any] | None = None,
    text: str | None = None,
    k: int = 10,
    exclude: Sequence[Any] | None = None,
    exclude_seen: bool = True,
    filters: dict[str, Any] | None = None,
    explore: bool | None = None,
    policy: str | None = None,
    diversity: float | None = None,
    explain: bool = True,
    strict: bool | None = None,
) -> RequestContext:
    """Validate a request against the server's limits and resolve its query.

    ``user_key`` turns the client's ``user_id`` into the vocabulary's type (default: as given; an id
    it refuses is an unknown user). Unknown ids follow the model's policy
    (:mod:`lmrec.models.query`): ``strict`` (default ``config.strict_ids``) makes them a
    :class:`NotFound` (404); otherwise they are left out, reported in ``warnings``, and a query with
    nothing known gets the popularity ``fallback``. Other errors are :class:`ServingError` (400).
    """
    if not 1 <= k <= config.max_k:
        raise ServingError(f"k must be between 1 and {config.max_k}, got {k}")
    if history is not None and len(history) > config.max_history:
        raise ServingError(f"history has {len(history)} items; the limit is {config.max_history}")
    if history is not None and not len(history):
        raise ServingError("history is empty: give item ids, oldest first, or leave history out")
    if text and "text" not in model.supports:
        why = getattr(model, "unsupported_reason", {}).get("text")
        raise ServingError(
            f"model {model.name} cannot serve text queries (supports: {', '.join(sorted(model.supports))})"
            + (f": {why}" if why else "")
        )
    strict = config.strict_ids if strict is None else strict
    if policy == "rl":
        if config.rl_policy is None:
            raise ServingError("policy rl was asked for but the server runs without one (--rl-policy)")
        explore = True if explore is None else explore  # the RL policy fills the list from the pool
    explore = config.explore_by_default if explore is None else explore
    policy = policy or (config.policy if config.policy != "none" else None)
    if explore and policy is None:
        raise ServingError(
            "exploration was asked for but the server runs without a bandit policy (--policy none)"
        )
    diversity = config.diversity if diversity is None else diversity
    key = None
    if user_id is not None:
        try:
            key = user_key(user_id) if user_key is not None else user_id
        except ServingError:  # cannot be in the vocabulary (text for integer ids): an unknown user
            key = None
    query = Query(
        user_id=None if user_id is None else (user_id if key is None else key),
        history=list(history) if history else None,
        text=text or None,
    )
    try:
        batch = model.encode_queries([query], strict=strict)
    except UnknownIdError as exc:
        hint = ": no history yet; send history or text, or feedback first" if exc.kind == "user_id" else ""
        raise NotFound(f"{exc}{hint}") from None
    except UnsupportedQueryError as exc:
        raise ServingError(str(exc)) from None
    return RequestContext(
        user_id=user_id,
        key=key,
        batch=batch,
        k=k,
        pool_size=max(k, config.candidates) if (explore or diversity > 0) else k,
        exclude_seen=exclude_seen,
        exclude=tuple(exclude or ()),
        filters=dict(filters or {}),
        explore=bool(explore),
        policy=policy if explore else None,
        diversity=float(diversity),
        explain=explain,
        text=text,
        strict=strict,
        fallback=batch.fallback[0] if batch.fallback else None,
        warnings=tuple(_id_warning(u) for u in batch.unknown),
    )


def _id_warning(unknown: UnknownIds, field: str | None = None) -> IdWarning:
    """The response's report of ids left out (the first 100 of them)."""
    msg = unknown.message().replace(" of query 0", "")
    return IdWarning(field=field or unknown.field, ids=list(unknown.ids[:100]), message=msg)


def _known_items(
    model: Recommender, ids: Sequence[Any], field: str, strict: bool, warnings: list[IdWarning]
) -> np.ndarray:
    """Indices of the known ``ids``; the unknown ones are a 404 (``strict``) or left out and
    reported in ``warnings``."""
    assert model.item_vocab is not None
    idx = model.item_vocab.indices(list(ids), missing="mark")
    if (idx < 0).any():
        bad = [i for i, j in zip(ids, idx, strict=True) if j < 0]
        if strict:
            raise NotFound(str(UnknownIdError(f"item_id in {field}", bad)))
        warnings.append(_id_warning(UnknownIds(-1, field, bad)))
    return idx[idx >= 0]


# ---------------------------------------------------------------------- 2. filters
def apply_filters(
    model: Recommender, catalogue: Catalogue, ctx: RequestContext, blocked: set[int] | None = None
) -> Exclusions:
    """Excluded item indices (the request's ``exclude`` list and the user's ``blocked`` items) and
    the allow mask of the request's filters (None: every item). Unknown ids in ``exclude`` and
    ``filters.item_ids`` follow ``ctx.strict``: a 404, or left out and reported."""
    banned = [np.zeros(0, np.int64)]
    warnings: list[IdWarning] = []
    if ctx.exclude:
        banned.append(_known_items(model, ctx.exclude, "exclude", ctx.strict, warnings))
    if blocked:
        banned.append(np.fromiter(blocked, dtype=np.int64))
    allowed = filter_mask(model, catalogue, ctx.filters, strict=ctx.strict, warnings=warnings)
    return Exclusions(np.unique(np.concatenate(banned)), allowed, tuple(warnings))


def filter_mask(
    model: Recommender,
    catalogue: Catalogue,
    spec: dict[str, Any],
    *,
    strict: bool = False,
    warnings: list[IdWarning] | None = None,
) -> np.ndarray | None:
    """Boolean mask over the model's items that pass an allow-list and catalogue filters. Unknown
    allow-listed ids are a 404 (``strict``) or left out and reported in ``warnings``; a ``where``
    value of the wrong type is an :class:`InvalidField` (422) naming the field."""
    n = model.n_items
    allowed = None
    if spec.get("item_ids") is not None:
        allowed = np.zeros(n, dtype=bool)
        found = [] if warnings is None else warnings
        allowed[_known_items(model, spec["item_ids"], "filters.item_ids", strict, found)] = True
    try:
        tag_mask = catalogue.mask(
            tags_any=spec.get("tags_any"),
            tags_all=spec.get("tags_all"),
            tags_none=spec.get("tags_none"),
            where=spec.get("where"),
        )
    except FilterValueError as exc:
        raise InvalidField(str(exc), loc=("body", "filters", "where", exc.field)) from None
    except ValueError as exc:
        raise ServingError(str(exc)) from None
    if tag_mask is not None:
        if len(tag_mask) != n:  # items the catalogue has no row for pass no catalogue filter
            padded = np.zeros(n, dtype=bool)
            padded[: min(n, len(tag_mask))] = tag_mask[:n]
            tag_mask = padded
        allowed = tag_mask if allowed is None else allowed & tag_mask
    return allowed


__all__ = [
    "Exclusions",
    "RecommendOptions",
    "RequestContext",
    "apply_filters",
    "build_context",
    "filter_mask",
]
