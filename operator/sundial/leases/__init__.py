"""Leases: which replica may run a slot, and who owns a running attempt.

A lease is a key with an owner token and a TTL. Only the owner may renew or release it
(compare-and-set), and a dead owner's lease simply expires, so its work is taken over.
"""

from sundial.leases.base import Leases
from sundial.leases.local import LocalLeases
from sundial.leases.redis import RedisLeases

__all__ = ["Leases", "LocalLeases", "RedisLeases"]
