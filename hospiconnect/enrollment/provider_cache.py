"""A per-process cache of an upstream OpenID provider's discovery document and signature keys (FranceConnect+,
Pro Santé Connect).

Both change rarely and are fetched over the network: each is kept :attr:`ProviderCache.seconds` per discovery
URL. The keys are dropped after a signature failure (:meth:`ProviderCache.forget_keys`) so that a rotation at the
provider heals on the next attempt. Nothing here is secret or shared between processes: every process fetches
its own copy.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

Discovery = TypeVar("Discovery")
Keys = TypeVar("Keys")


class ProviderCache(Generic[Discovery, Keys]):
    """Discovery documents and key sets, each cached ``seconds`` per discovery URL (thread-safe)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._discovery: dict[str, tuple[float, Discovery]] = {}
        self._keys: dict[str, tuple[float, Keys]] = {}

    def _get(self, table: dict[str, tuple[float, object]], url: str, load: Callable[[], object],
             clock: Callable[[], float]) -> object:
        with self._lock:
            hit = table.get(url)
        if hit is not None and hit[0] > clock():
            return hit[1]
        value = load()  # outside the lock: a slow provider must not hold up the other threads
        with self._lock:
            table[url] = (clock() + self.seconds, value)
        return value

    def discovery(self, url: str, load: Callable[[], Discovery], *,
                  clock: Callable[[], float] = time.monotonic) -> Discovery:
        """Return the discovery document of ``url``, calling ``load()`` when it is missing or too old."""
        return self._get(self._discovery, url, load, clock)  # type: ignore[arg-type, return-value]

    def keys(self, url: str, load: Callable[[], Keys], *, clock: Callable[[], float] = time.monotonic) -> Keys:
        """Return the signature keys of the provider of ``url``, calling ``load()`` when missing or too old."""
        return self._get(self._keys, url, load, clock)  # type: ignore[arg-type, return-value]

    def forget_keys(self, url: str) -> None:
        """Drop the keys of the provider of ``url`` (after a signature failure: they may have rotated)."""
        with self._lock:
            self._keys.pop(url, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._discovery.clear()
            self._keys.clear()
