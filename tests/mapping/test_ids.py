from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from adapter.mapping.ids import _NAMESPACE, resource_id


@given(st.text(), st.text(), st.lists(st.text(), max_size=3))
def test_resource_id_is_uuid5(source: str, rtype: str, key: list[str]) -> None:
    assert resource_id(source, rtype, *key) == str(uuid.uuid5(_NAMESPACE, "\x1f".join((source, rtype, *key))))
