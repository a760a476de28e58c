"""Which replica claims a CronConfig's slots first: rendezvous hashing over the live replicas.

Every replica may run every slot (a slot's lease and row decide), but if all raced for all of
them, one Lua call would win a whole second's batch and one replica would do all the work. So the
preferred replica of a CronConfig claims at the lookahead, the others only a moment later as a
fallback for a replica that died or is slow. Rendezvous hashing moves only the dead or new
replica's share when membership changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _weight(member: str, uid: str) -> int:
    digest = hashlib.blake2b(f"{member}\x00{uid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Shards:
    """The live replicas and, cached per membership, the preferred one of each CronConfig."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.members: tuple[str, ...] = (me,)
        self._owner: dict[str, str] = {}

    def update(self, members: Sequence[str]) -> bool:
        """New membership (always including this replica); True if it changed."""
        live = tuple(sorted({*members, self.me}))
        if live == self.members:
            return False
        self.members = live
        self._owner.clear()
        return True

    def owner(self, uid: str) -> str:
        found = self._owner.get(uid)
        if found is None:
            if len(self.members) == 1:
                found = self.members[0]
            else:
                found = max(self.members, key=lambda m: _weight(m, uid))
            self._owner[uid] = found
        return found

    def mine(self, uid: str) -> bool:
        return self.owner(uid) == self.me

    def forget(self, uid: str) -> None:
        self._owner.pop(uid, None)
