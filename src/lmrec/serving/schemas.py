"""Request and response bodies of the HTTP API (pydantic; they are the OpenAPI schema).

Limits are part of the schema, so a client (or schemathesis) learns them from ``/openapi.json`` and
a violation is a 422 naming the field before any model code runs: ``k`` in 1..100, at most 1,000
history items, exclusions and allow-listed ids, 2,000 characters of query text. Ids are JSON
integers or non-empty strings (a model trained on integer ids also accepts digit strings, because
paths and CSV files deliver text). Unknown fields are rejected, so a typo (``"hisotry"``) is an
error rather than a silently ignored option.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from lmrec.events import EVENT_TYPES

MAX_K = 100
MAX_HISTORY = 1000
MAX_IDS = 1000
MAX_TEXT = 2000
MAX_ID_LENGTH = 256
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

IntId = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
StrId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_LENGTH)]
#: an external user or item id
Id = IntId | StrId
Scalar = (
    StrictBool
    | IntId
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | Annotated[StrictStr, Field(max_length=1000)]
)
Tag = Annotated[StrictStr, Field(min_length=1, max_length=200)]
EventType = Literal[
    "view", "click", "play", "like", "add_to_cart", "purchase", "rating", "dislike", "skip", "hide"
]
assert set(get_args(EventType)) == EVENT_TYPES, "keep EventType in step with lmrec.events.EVENT_TYPES"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(_Body):
    """Business rules applied before ranking: an allow-list, tags, catalogue field equality."""

    item_ids: list[Id] | None = Field(
        default=None, max_length=10_000, description="Only these items may be returned."
    )
    tags_any: list[Tag] | None = Field(
        default=None, max_length=100, description="Items with at least one of these tags."
    )
    tags_all: list[Tag] | None = Field(
        default=None, max_length=100, description="Items with every one of these tags."
    )
    tags_none: list[Tag] | None = Field(
        default=None, max_length=100, description="Items with none of these tags."
    )
    where: (
        dict[Annotated[str, Field(max_length=100)], Scalar | Annotated[list[Scalar], Field(max_length=100)]]
        | None
    ) = Field(
        default=None, max_length=20, description="Catalogue field equal to a value (or in a list of values)."
    )


class RecommendRequest(_Body):
    """What to recommend for: a known user, an unseen user's history, free text, or a mix."""

    user_id: Id | None = Field(
        default=None, description="A user known to the model or seen through feedback."
    )
    history: list[Id] | None = Field(
        default=None,
        max_length=MAX_HISTORY,
        json_schema_extra={"minItems": 1},
        description="Item ids, oldest first; added to a known user's history. Not empty: leave it out "
        "instead (an empty history is a 422, as `lmrec recommend --history ''` is a usage error).",
    )
    text: Annotated[StrictStr, Field(min_length=1, max_length=MAX_TEXT)] | None = Field(
        default=None, description="Free text (models that support text queries)."
    )
    k: StrictInt = Field(default=10, ge=1, le=MAX_K, description="Number of items to return.")
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_IDS, description="Items never to return.")
    exclude_seen: StrictBool = Field(default=True, description="Leave out items in the query's history.")
    filters: Filters | None = None
    explore: StrictBool | None = Field(
        default=None, description="Bandit exploration for this request (default: the server's setting)."
    )
    policy: Literal["linucb", "thompson", "rl"] | None = Field(
        default=None,
        description="Bandit policy, or rl (the server's long-term-reward policy); default: the server's.",
    )
    diversity: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="MMR diversity, 0 (off) to 1 (diversity only).",
    )
    explain: StrictBool = Field(default=True, description="Return `because` evidence per item.")
    strict: StrictBool | None = Field(
        default=None,
        description="Unknown ids are a 404 (true) or are left out, with an unknown user served the "
        "most popular items, each reported in `warnings` (false). Default: the server's setting.",
    )

    @model_validator(mode="after")
    def _needs_something(self) -> RecommendRequest:
        if self.text is not None and not self.text.strip():
            raise ValueError("text is blank: give words to search for, or leave text out")
        if self.history is not None and not self.history:
            raise ValueError("history is empty: give item ids, oldest first, or leave history out")
        if self.user_id is None and not self.history and not self.text:
            raise ValueError("give a user_id, a non-empty history or a text")
        return self


class BecauseItem(BaseModel):
    item_id: Id
    similarity: float
    title: str | None = None


class Because(BaseModel):
    """Evidence for a recommendation: the history items and tags/keywords behind it."""

    items: list[BecauseItem] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)


class RecommendedItem(BaseModel):
    item_id: Id
    score: float = Field(description="The model's score (not comparable across models).")
    rank: int
    propensity: float = Field(
        description="Probability that the serving policy chose this item for this slot."
    )
    title: str | None = None
    image_url: str | None = Field(default=None, description="The item's picture (GET), when it has one.")
    because: Because | None = None


class IdWarning(BaseModel):
    """Ids of the request the server did not know and left out (lenient mode)."""

    field: str = Field(description="user_id, history, exclude or filters.item_ids.")
    ids: list[Id] = Field(description="The unknown ids (the first 100).")
    message: str


class RecommendResponse(BaseModel):
    request_id: str = Field(description="Send it back with feedback to credit this list.")
    user_id: Id | None = None
    model: str
    policy: str = Field(description="model, mmr, linucb, thompson or rl: what ordered this list.")
    explored: bool
    fallback: Literal["popularity"] | None = Field(
        default=None,
        description="Set when nothing in the query was known (an unknown user, a history of unknown "
        "items): the list is the most popular items.",
    )
    warnings: list[IdWarning] = Field(default_factory=list, description="Unknown ids left out.")
    items: list[RecommendedItem]


class SimilarItem(BaseModel):
    item_id: Id
    score: float
    rank: int
    title: str | None = None
    image_url: str | None = None


class SimilarResponse(BaseModel):
    item_id: Id
    method: Literal["item-vectors", "model"]
    items: list[SimilarItem]


class FeedbackRequest(_Body):
    user_id: Id
    item_id: Id
    event: EventType = Field(
        default="click", description="Positive events extend the history; dislike/skip/hide hide the item."
    )
    weight: float = Field(
        default=1.0, ge=-1e6, le=1e6, allow_inf_nan=False, description="Rating value or event weight."
    )
    timestamp: float | None = Field(
        default=None,
        ge=0,
        le=1e11,
        allow_inf_nan=False,
        description="Unix seconds; default: when it is received.",
    )
    request_id: Annotated[StrictStr, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="The request_id of the list this answers, if any."
    )


class FeedbackResponse(BaseModel):
    id: int = Field(description="Position in the durable event log.")
    user_id: Id
    item_id: Id
    event: str
    timestamp: float
    request_id: str | None = None
    bandit_updated: bool


#: a new item's picture: at most 4 MiB decoded (base64 is 4/3 of that)
MAX_PICTURE_BYTES = 4 * 2**20
MAX_PICTURE_B64 = (MAX_PICTURE_BYTES + 2) // 3 * 4


class NewItem(_Body):
    item_id: Id
    title: Annotated[StrictStr, Field(max_length=1000)] | None = None
    text: Annotated[StrictStr, Field(max_length=20_000)] | None = Field(
        default=None, description="Description the text model encodes."
    )
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    fields: dict[Annotated[str, Field(min_length=1, max_length=100)], Scalar | None] = Field(
        default_factory=dict, max_length=50, description="Other catalogue fields (filterable with `where`)."
    )
    image: Annotated[StrictStr, Field(max_length=MAX_PICTURE_B64)] | None = Field(
        default=None,
        description=(
            "The item's picture (JPEG, PNG, WebP or GIF), base64-encoded, at most 4 MiB decoded. A model "
            "that scores pictures (content with the image modality) encodes it, so an item with only a "
            "picture is recommendable at once; other models keep it for display."
        ),
    )

    @model_validator(mode="after")
    def _needs_content(self) -> NewItem:
        if (
            not (self.title and self.title.strip())
            and not (self.text and self.text.strip())
            and not (self.image and self.image.strip())
        ):
            raise ValueError("a new item needs a title, a text or an image to be encoded from")
        return self


class NewItemResponse(BaseModel):
    item_id: Id
    index: int = Field(description="The item's internal index.")
    recommendable: bool


class IndexInfo(BaseModel):
    kind: str
    n_items: int
    recall_at_10: float | None = None
    search_param: int | None = None


class HealthResponse(BaseModel):
    status: Literal["ok", "warming"] = Field(
        description="ok: ready to serve (model and text encoder warm); warming: not yet (a 503)."
    )
    ready: bool
    warm_s: float | None = Field(default=None, description="Seconds the start-up warm-up took.")
    model: str
    n_users: int
    n_items: int
    events_logged: int
    events_replayed: int
    index: IndexInfo | None = None
    policy: str
    uptime_s: float
    pid: int = Field(description="The server process that answered (one of `lmrec serve --workers`).")
    workers: int = Field(default=1, description="Server processes sharing the event log.")


class ErrorResponse(BaseModel):
    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The request is valid JSON but cannot be served as asked."},
    404: {"model": ErrorResponse, "description": "An unknown user or item id (strict mode)."},
    413: {"model": ErrorResponse, "description": "The request body is larger than 2 MiB."},
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    401: {"model": ErrorResponse, "description": "Missing or wrong X-API-Key."},
    409: {"model": ErrorResponse, "description": "Conflicts with the current state."},
}
