"""The two entities of the platform: users and items (ids are strings, unique across domains)."""

from __future__ import annotations

from feast import Entity, ValueType

from common.features import ITEM_ID, USER_ID

user = Entity(
    name="user",
    join_keys=[USER_ID],
    value_type=ValueType.STRING,
    description="A customer of one domain (retail shopper or bank client); ids carry the domain prefix.",
)
item = Entity(
    name="item",
    join_keys=[ITEM_ID],
    value_type=ValueType.STRING,
    description="A catalog item of one domain (retail product or banking product); ids carry the domain prefix.",
)

BY_JOIN_KEY: dict[str, Entity] = {USER_ID: user, ITEM_ID: item}
