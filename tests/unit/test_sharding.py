"""Rendezvous sharding: every replica agrees on one preferred claimer per CronConfig."""

from __future__ import annotations

from collections import Counter

from sundial.engine.sharding import Shards

UIDS = [f"uid-{i}" for i in range(3000)]


def test_alone_a_replica_owns_everything() -> None:
    shards = Shards("a")
    assert all(shards.mine(uid) for uid in UIDS[:100])


def test_replicas_agree_and_share_evenly() -> None:
    views = [Shards(name) for name in ("a", "b", "c")]
    for view in views:
        view.update(["a", "b", "c"])
    owners = [views[0].owner(uid) for uid in UIDS]
    assert all(view.owner(uid) == owner for view in views for uid, owner in zip(UIDS, owners, strict=True))
    assert sum(view.mine(uid) for view in views for uid in UIDS) == len(UIDS), "each has one owner"
    counts = Counter(owners)
    assert all(800 < n < 1200 for n in counts.values()), counts


def test_only_the_departed_replicas_share_moves() -> None:
    shards = Shards("a")
    shards.update(["a", "b", "c"])
    before = {uid: shards.owner(uid) for uid in UIDS}
    assert shards.update(["a", "b"])
    after = {uid: shards.owner(uid) for uid in UIDS}
    moved = [uid for uid in UIDS if before[uid] != after[uid]]
    assert moved and all(before[uid] == "c" for uid in moved)
    assert not shards.update(["b", "a"]), "same membership, no change"


def test_membership_always_includes_this_replica() -> None:
    shards = Shards("a")
    shards.update(["b"])
    assert shards.members == ("a", "b")
