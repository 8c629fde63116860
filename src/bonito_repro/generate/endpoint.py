"""Generator kind `endpoint`: any OpenAI-compatible chat endpoint (a hosted model, or one already
served by vLLM) as a prompted generator. Each passage's request (prompted.py) is the user's turn
of one ``/chat/completions`` call with the config's sampling; the server applies its model's chat
template. Calls run ``concurrency`` at a time; a 429, a 5xx, a timeout or a refused connection is
retried with exponential backoff (``max_retries`` times), then the shard fails and nothing of it
is recorded, so a rerun asks only the passages of unfinished shards (shards.py). A wait is never
shorter than the server's ``Retry-After`` and is stretched by a random share of up to
``JITTER`` (``retry_wait``), so that the ``concurrency`` requests a rate limit refused together do
not all come back at the same moment.

The API key is read from the environment variable the config names (``api_key_env``) and sent
only in the Authorization header: never logged, never in a manifest. Standard library only.
"""
from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ..runtime.backends import Sampling

log = logging.getLogger(__name__)

RETRIED_STATUS = (429, 500, 502, 503, 504)
JITTER = 0.5  # a wait is stretched by a random share of up to this much of itself


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for: a number of seconds or an HTTP date; None
    where there is none or it cannot be read."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def retry_wait(attempt: int, backoff: float, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before retry ``attempt + 1``: exponential backoff, or the server's Retry-After where
    that is longer, stretched by jitter (never shorter than either)."""
    base = max(backoff * 2 ** attempt, retry_after or 0.0)
    return base * (1 + JITTER * rng.random())


class EndpointError(RuntimeError):
    """The endpoint refused a request, or kept failing after every retry."""


class EndpointBackend:
    """The generation backend of an endpoint spec (config ``generators.NAME`` of kind endpoint:
    ``base_url``, ``served_model``, ``api_key_env``, ``concurrency``, ``max_retries``, ``backoff_seconds``,
    ``timeout_seconds``)."""

    def __init__(self, spec: dict, sampling: Sampling):
        self.url = spec["base_url"].rstrip("/") + "/chat/completions"
        self.model = spec["served_model"]
        self.sampling = sampling
        self.concurrency = spec["concurrency"]
        self.max_retries = spec["max_retries"]
        self.backoff = spec["backoff_seconds"]
        self.timeout = spec["timeout_seconds"]
        env = spec.get("api_key_env")
        if env and not os.environ.get(env):
            raise EndpointError(f"endpoint {spec['base_url']}: the environment variable {env} (api_key_env) "
                                "is not set")
        self._key = os.environ[env] if env else None
        # what shapes the answers besides sampling: part of every shard's name (never the key)
        self.identity = {"endpoint": spec["base_url"], "endpoint_model": self.model}
        self.requests = 0  # HTTP requests sent, retries included (the manifest records them)
        self._lock = threading.Lock()
        self._rng = random.Random()  # jitter only: it shapes no answer

    def _post(self, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        for attempt in range(self.max_retries + 1):
            with self._lock:
                self.requests += 1
            try:
                request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                if error.code not in RETRIED_STATUS:
                    detail = error.read()[:300].decode(errors="replace")
                    raise EndpointError(f"{self.url}: HTTP {error.code}: {detail}") from None
                problem = f"HTTP {error.code}"
                retry_after = retry_after_seconds(error.headers.get("Retry-After"))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                problem, retry_after = str(getattr(error, "reason", error)), None
            if attempt == self.max_retries:
                raise EndpointError(f"{self.url}: {problem}, after {self.max_retries} retries")
            with self._lock:
                wait = retry_wait(attempt, self.backoff, retry_after, self._rng)
            log.warning("%s: %s%s; retry %d of %d in %.1f s", self.url, problem,
                        f" (Retry-After {retry_after:g} s)" if retry_after is not None else "",
                        attempt + 1, self.max_retries, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")

    def _complete(self, prompt: str, seed: int) -> list[str]:
        s = self.sampling
        reply = self._post({"model": self.model, "messages": [{"role": "user", "content": prompt}],
                            "n": s.n, "temperature": s.temperature, "top_p": s.top_p,
                            "max_tokens": s.max_new_tokens, "seed": seed})
        choices = sorted(reply.get("choices", []), key=lambda c: c.get("index", 0))
        return [c["message"].get("content") or "" for c in choices]

    def generate(self, prompts: list[str], seeds: list[int]) -> list[list[str]]:
        """``sampling.n`` replies per prompt, in prompt order, ``concurrency`` requests at a time."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._complete, prompts, seeds))


PROBE_PROMPT = "Reply with the word OK."


def probe(spec: dict) -> dict:
    """One cheap request to an endpoint spec (the preflight's): a one-token reply, no retry. Its
    ``usage`` (tokens billed) and the model that answered; EndpointError names what failed (an
    unset key variable, a refused key, an unknown model, an unreachable host)."""
    backend = EndpointBackend({**spec, "max_retries": 0}, Sampling(n=1, temperature=0.0, top_p=1.0, max_new_tokens=1))
    reply = backend._post({"model": backend.model, "messages": [{"role": "user", "content": PROBE_PROMPT}],
                           "max_tokens": 1, "temperature": 0.0})
    if not reply.get("choices"):
        raise EndpointError(f"{backend.url}: a reply without choices: {json.dumps(reply)[:300]}")
    return {"model": reply.get("model", backend.model), "usage": reply.get("usage", {})}
