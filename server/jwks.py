"""Verification keys from a JWKS URL (docs/PROTOCOL.md §2.2): cached, refreshed, failing closed.

The rules, all in ``JwksKeys``:

* The set is loaded on first use, then again in the background once it is
  ``max_age`` seconds old. A load that fails keeps the keys loaded before, and holds
  off every further load for ``min_interval`` seconds.
* A token whose ``kid`` (for its ``alg``) is not in the set forces a reload, at most
  once every ``min_interval`` seconds; the call waits for that load, or for one
  already running, and then looks once more. A call waits for at most one load.
* With no keys (never loaded, the endpoint down since start, or a set without a
  usable key) nothing verifies: every token is refused.

Loads run in a worker thread (the fetch is blocking ``urllib``), never on the
event loop. An answer larger than ``MAX_SIZE`` bytes is refused unread (a failed load:
the endpoint is not trusted to bound it), as is a redirect.

A key is a ``PyJWK`` bound to one algorithm: the token's ``alg`` must be
configured and fit the key (a JWK's own ``alg``, where it names one, must match), so
a token cannot choose how it is verified.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from jwt import PyJWK
from jwt.exceptions import PyJWTError

from server.tasks import cancel_and_wait

log = logging.getLogger("tidings.auth")

#: Seconds between forced reloads, and the pause after a failed load.
MIN_INTERVAL = 10.0
#: Seconds after which a loaded set is reloaded in the background.
MAX_AGE = 300.0
#: Seconds one fetch may take.
FETCH_TIMEOUT = 5.0
#: The largest JWK Set answer accepted, in bytes (a real one is a few KiB).
MAX_SIZE = 1 << 20

KeyTable = dict[tuple[str, str], PyJWK]


def key_table(document: Mapping[str, Any], algorithms: Sequence[str]) -> KeyTable:
    """The signing keys of a JWK Set document, by (``kid``, algorithm).

    Keys without a ``kid``, keys for encryption, and keys that fit none of
    ``algorithms`` are left out.
    """
    table: KeyTable = {}
    keys = document.get("keys")
    for jwk in keys if isinstance(keys, list) else ():
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str):
            continue
        for alg in algorithms:
            if jwk.get("alg", alg) != alg:
                continue
            try:
                key = PyJWK(jwk, alg)
                key.Algorithm.prepare_key(key.key)  # the curve must fit the algorithm too
            except (PyJWTError, TypeError, ValueError):
                continue
            table[(kid, alg)] = key
    return table


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed load (``HTTPError``), not followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Fetcher:
    """GETs one http(s) URL and parses its JSON answer, refusing one over ``max_size`` bytes."""

    def __init__(self, url: str, *, timeout: float = FETCH_TIMEOUT, max_size: int = MAX_SIZE):
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            raise ValueError(f"a JWKS URL must be http:// or https://, got {url!r}")
        self._url = url
        self._timeout = timeout
        self._max_size = max_size
        self._opener = urllib.request.build_opener(_NoRedirect())

    def __call__(self) -> Any:
        request = urllib.request.Request(self._url, headers={"Accept": "application/json"})
        too_large = ValueError(f"the answer is larger than {self._max_size} bytes: refused")
        with self._opener.open(request, timeout=self._timeout) as response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self._max_size:
                raise too_large
            body = response.read(self._max_size + 1)
        if len(body) > self._max_size:
            raise too_large
        return json.loads(body)


class JwksKeys:
    """The keys of one JWKS URL for the configured ``algorithms``."""

    def __init__(
        self,
        url: str,
        algorithms: Sequence[str],
        *,
        min_interval: float = MIN_INTERVAL,
        max_age: float = MAX_AGE,
        timeout: float = FETCH_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        fetch: Callable[[], Any] | None = None,
    ) -> None:
        self.url = url
        self._algorithms = tuple(algorithms)
        self._min_interval = min_interval
        self._max_age = max_age
        self._clock = clock
        self._fetch = fetch or Fetcher(url, timeout=timeout)
        self._keys: KeyTable | None = None
        self._loading: asyncio.Task[None] | None = None
        self._attempted = False
        self._next_load = -math.inf  # when the background reload is due
        self._hold_until = -math.inf  # no load of any kind before this (after a failure)
        self._last_forced = -math.inf

    @property
    def loaded(self) -> bool:
        """Whether a set has been loaded (a token can verify)."""
        return self._keys is not None

    def cached(self, kid: str, alg: str) -> PyJWK | None:
        """The key for ``kid`` and ``alg`` if the cache has it (no waiting); starts the
        background reload when it is due."""
        keys = self._keys
        if keys is not None and self._loading is None:
            now = self._clock()
            if now >= self._next_load and now >= self._hold_until:
                self._start()
        return None if keys is None else keys.get((kid, alg))

    async def key(self, kid: str, alg: str) -> PyJWK | None:
        """The key for ``kid`` and ``alg``, loading the set if the rules allow; None if
        there is none (the token is to be refused)."""
        key = self.cached(kid, alg)
        if key is not None:
            return key
        if self._loading is None:
            now = self._clock()
            if now < self._hold_until:
                return None
            if self._attempted:  # the first load is not forced
                if now - self._last_forced < self._min_interval:
                    return None
                self._last_forced = now
            self._start()
        assert self._loading is not None
        await asyncio.shield(self._loading)  # a caller that goes away leaves the load running
        return None if self._keys is None else self._keys.get((kid, alg))

    def _start(self) -> None:
        self._attempted = True
        self._next_load = self._clock() + self._max_age
        self._loading = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        try:
            table = await asyncio.to_thread(self._fetch_table)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._hold_until = self._next_load = self._clock() + self._min_interval
            log.warning(
                "could not load the JWKS from %s (%s); %s",
                self.url,
                exc,
                "keeping the keys loaded before" if self._keys else "every token is refused",
            )
        else:
            self._keys = table
            log.info("loaded %d signing keys from %s", len({k for k, _ in table}), self.url)
        finally:
            self._loading = None

    def _fetch_table(self) -> KeyTable:
        document = self._fetch()
        if not isinstance(document, Mapping):
            raise ValueError("the answer is not a JWK Set (a JSON object with keys)")
        table = key_table(document, self._algorithms)
        if not table:
            raise ValueError(f"no usable signing key for {', '.join(self._algorithms)}")
        return table

    async def close(self) -> None:
        """Stop a load in progress (the worker thread finishes on its own)."""
        await cancel_and_wait(self._loading)
