"""Active accounts' roles, remembered while the identities' change feed is live.

Why: every refresh re-reads its account (a deleted or disabled account must
not keep minting tokens; a role change applies at the next refresh), and that
read was a sixth of a refresh's CPU on PostgreSQL (bench/README.md, P16).
Accounts change rarely and refreshes are the hottest write, so the answer is
kept, and dropped when the `identities` trigger says the row changed
(auth_service/migrations/versions/0009_identity_changes.py).

What it keeps (docs/ARCHITECTURE.md, "What the auth service remembers"):
- only an active account's roles; an account that is not active is read
  every time;
- answers only while the feed is live (`shared.db.change_feed`), so a change
  of roles or status, a disabled or deleted account, committed by anyone,
  applies to every replica's refreshes within half a second; a feed that is
  down costs the read, never the guarantee;
- a read remembered only when no change arrived while it ran;
- at most `max_entries` accounts, the oldest dropped first.

Sessions are not here: a revoked session is refused by the rotation in Redis,
whatever this holds.
"""

from __future__ import annotations

import uuid

from shared.db.change_feed import ChangeFeed

__all__ = ["CHANNEL", "ActiveRoles"]

# Where the identities trigger notifies (migration 0009 names it too).
CHANNEL = "idp_identity_changes"

MAX_ENTRIES = 100_000  # ~20 MB at most; a refresh past it costs one read


class ActiveRoles:
    def __init__(self, feed: ChangeFeed, *, max_entries: int = MAX_ENTRIES) -> None:
        self.feed = feed
        self._max = max_entries
        self._roles: dict[uuid.UUID, tuple[str, ...]] = {}
        feed.listen(self._changed, self._roles.clear)

    def get(self, identity_id: uuid.UUID) -> tuple[str, ...] | None:
        """The remembered roles of an active account; None: read the database."""
        if not self._roles or not self.feed.live():
            return None
        return self._roles.get(identity_id)

    def ticket(self) -> int | None:
        """Take before the read whose answer `remember` may keep."""
        return self.feed.ticket()

    def remember(self, ticket: int | None, identity_id: uuid.UUID, roles: tuple[str, ...]) -> None:
        if not self.feed.valid(ticket):
            return
        if len(self._roles) >= self._max:
            del self._roles[next(iter(self._roles))]
        self._roles[identity_id] = roles

    def forget(self, identity_id: uuid.UUID) -> None:
        self._roles.pop(identity_id, None)

    def _changed(self, payload: str) -> None:
        try:
            self._roles.pop(uuid.UUID(payload), None)
        except ValueError:  # not a key of ours: forget all rather than guess
            self._roles.clear()
