"""Sign-in throttling: slow a password guesser down without locking the real person out.

Failures are counted per (account, client address) and per client address across accounts, never
per account alone: a guesser at one address must not be able to refuse the control-room operator
signing in from another. Each key allows `limit` failed attempts; after that every further attempt
is refused (429) until a wait that doubles with each failure beyond the limit, from `first_wait_s`
up to `max_wait_s`. An attempt is counted as a failure when it begins and forgiven when it
succeeds, so parallel guesses cannot slip past the limit while their hashes are being verified.
A key with no attempt for `2 * max_wait_s` is forgotten.

The counts live here, in the process's memory. A cluster's workers share them through PostgreSQL
instead (accounts/shared_throttle.py), with the same rules: `Throttle`'s record arithmetic and
`SignInThrottle.refusal` and `counted` are used by both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

MAX_KEYS = 10_000  # remembered keys per kind: a spray of made-up names or addresses stays bounded


@dataclass(slots=True)
class Record:
    failures: int  # counted attempts not forgiven by a success
    last: float  # when the last attempt began
    blocked_until: float  # attempts before this are refused


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # for the person refused; never says whether the account exists
    retry_after_s: float


class Throttle:
    """Failure counts for one kind of key (a pair or an address), with the doubling wait."""

    def __init__(self, limit: int, first_wait_s: float, max_wait_s: float) -> None:
        self.limit = limit
        self.first_wait_s = first_wait_s
        self.max_wait_s = max(max_wait_s, first_wait_s)
        self._records: dict[object, Record] = {}

    # -- the rules, on one key's record (wherever it is kept) --------------------------------------

    def stale(self, record: Record, now: float) -> bool:
        """Quiet long enough, and not waiting: the key starts afresh."""
        return now - record.last > 2 * self.max_wait_s and now >= record.blocked_until

    def counted(self, record: Record | None, now: float) -> Record:
        """`record` (None: a fresh key) with one more failure; past the limit, the key waits."""
        if record is None:
            record = Record(0, now, 0.0)
        record.failures += 1
        record.last = now
        beyond = record.failures - self.limit
        if beyond >= 0:
            wait = min(self.first_wait_s * 2.0 ** min(beyond, 32), self.max_wait_s)
            record.blocked_until = now + wait
        return record

    def uncounted(self, record: Record) -> None:
        """One counted attempt taken back (it succeeded); a wait it alone started is lifted."""
        if record.failures == 0:
            return
        record.failures -= 1
        if record.failures < self.limit:
            record.blocked_until = 0.0

    # -- this process's records --------------------------------------------------------------------

    def refusal_wait(self, key: object, now: float) -> float:
        """Seconds this key must still wait (0: it may try)."""
        return wait_of(self.fresh(key, now), now)

    def count_attempt(self, key: object, now: float) -> None:
        """Count an attempt as a failure; past the limit, the key waits before the next one."""
        self.remember(key, self.counted(self.fresh(key, now), now))

    def remember(self, key: object, record: Record) -> None:
        self._records[key] = record
        if len(self._records) > MAX_KEYS:
            self._evict()

    def forgive(self, key: object) -> None:
        self._records.pop(key, None)

    def uncount(self, key: object) -> None:
        """Take back one counted attempt (it succeeded); a wait it alone started is lifted."""
        record = self._records.get(key)
        if record is not None:
            self.uncounted(record)

    def failures(self, key: object, now: float) -> int:
        record = self.fresh(key, now)
        return 0 if record is None else record.failures

    def fresh(self, key: object, now: float) -> Record | None:
        record = self._records.get(key)
        if record is not None and self.stale(record, now):
            del self._records[key]  # quiet long enough: start afresh
            return None
        return record

    def _evict(self) -> None:
        # Drop the half that tried longest ago. One address cannot use this to clear its own wait:
        # its own address key stops it after `per_address` failures, long before MAX_KEYS.
        by_age = sorted(self._records.items(), key=lambda kv: kv[1].last)
        for key, _record in by_age[: len(by_age) // 2]:
            self._records.pop(key, None)


def wait_of(record: Record | None, now: float) -> float:
    return 0.0 if record is None else max(0.0, record.blocked_until - now)


class SignInThrottle:
    """The two throttles sign-in consults: per (account, address) and per address."""

    def __init__(
        self,
        *,
        per_account: int,
        per_address: int,
        first_wait_s: float,
        max_wait_s: float,
    ) -> None:
        self.pairs = Throttle(per_account, first_wait_s, max_wait_s)
        self.addresses = Throttle(per_address, first_wait_s, max_wait_s)
        self._lock = threading.Lock()

    def refusal(
        self, name: str, address: str, pair: Record | None, by_address: Record | None, now: float
    ) -> Refusal | None:
        """The refusal for a waiting pair or address (fresh records, None for a fresh key)."""
        pair_wait = wait_of(pair, now)
        if pair_wait > 0:
            failures = 0 if pair is None else pair.failures
            return Refusal(
                f"{failures} failed sign-ins for {name!r} from {address or 'this address'}: "
                f"try again in {pair_wait:.0f} s",
                pair_wait,
            )
        address_wait = wait_of(by_address, now)
        if address_wait > 0:
            return Refusal(
                f"too many failed sign-ins from {address or 'this address'}: "
                f"try again in {address_wait:.0f} s",
                address_wait,
            )
        return None

    def counted(self, pair: Record | None, by_address: Record | None, now: float) -> tuple[Record, Record]:
        """The two records with an attempt counted."""
        return self.pairs.counted(pair, now), self.addresses.counted(by_address, now)

    def waiting(self, name: str, address: str, now: float) -> Refusal | None:
        """The refusal for a pair or address this process knows to be waiting (counting nothing)."""
        with self._lock:
            pair = self.pairs.fresh((name, address), now)
            return self.refusal(name, address, pair, self.addresses.fresh(address, now), now)

    def begin(self, name: str, address: str, now: float) -> Refusal | None:
        """Refuse a waiting pair or address; else count this attempt until it succeeds. The check
        and the count are one step under a lock."""
        with self._lock:
            pair = self.pairs.fresh((name, address), now)
            by_address = self.addresses.fresh(address, now)
            refusal = self.refusal(name, address, pair, by_address, now)
            if refusal is not None:
                return refusal
            self._keep(name, address, *self.counted(pair, by_address, now))
            return None

    def remember(self, name: str, address: str, pair: Record | None, by_address: Record | None) -> None:
        """Hold these records for the pair and the address, as the cluster counted them (None:
        the key is fresh there)."""
        with self._lock:
            self._keep(name, address, pair, by_address)

    def _keep(self, name: str, address: str, pair: Record | None, by_address: Record | None) -> None:
        if pair is None:
            self.pairs.forgive((name, address))
        else:
            self.pairs.remember((name, address), pair)
        if by_address is None:
            self.addresses.forgive(address)
        else:
            self.addresses.remember(address, by_address)

    def succeeded(self, name: str, address: str) -> None:
        """A right password: the pair starts afresh, and this attempt no longer counts against the
        address (earlier failures from it still do, so signing in to an account of one's own does
        not reset a guesser's count)."""
        with self._lock:
            self.pairs.forgive((name, address))
            self.addresses.uncount(address)
