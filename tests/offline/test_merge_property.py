"""The three-way merge, as properties over any base, local edits and server edits."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sync.offline.merge import three_way

FIELDS = st.sampled_from(["a", "b", "c", "d"])
VALUES = st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["x", "y"]))
ROWS = st.dictionaries(FIELDS, VALUES)


def _empty(value: Any) -> bool:
    return value in (None, "")


def _same(left: Any, right: Any) -> bool:
    return (_empty(left) and _empty(right)) or left == right


@given(base=ROWS, mine=ROWS, server=ROWS, policy=st.sampled_from(["server", "mine"]))
def test_merge_keeps_every_one_sided_change_and_flags_every_clash(
    base: dict[str, Any], mine: dict[str, Any], server: dict[str, Any], policy: str
) -> None:
    result = three_way(base, mine, server, policy)
    clashes = {c.field for c in result.conflicts}
    for name in {*base, *mine, *server}:
        mine_changed = name in mine and not _same(mine[name], base.get(name))
        server_changed = not _same(server.get(name), base.get(name))
        merged = result.merged.get(name)
        if name not in mine:
            assert _same(merged, server.get(name))  # untouched by me: the server's
            assert name not in result.patch
        elif _same(mine[name], server.get(name)):
            assert name not in clashes and name not in result.patch
        elif not server_changed:
            assert _same(merged, mine[name]) and name in result.patch  # only mine changed
        elif mine_changed:
            assert name in clashes  # both changed, differently
            winner = mine[name] if policy == "mine" else server.get(name)
            assert _same(merged, winner)
        else:  # I "set" the base value the server moved away from: its change stands
            assert name not in clashes and _same(merged, server.get(name))
    assert all(c.winner == policy for c in result.conflicts)
    # what is written is exactly what differs from the server in the merged row
    assert {k for k in result.patch} == {
        k for k in result.merged if not _same(result.merged[k], server.get(k))
    }
