"""Generator kind `endpoint`: any OpenAI-compatible chat endpoint (a hosted model, or one already
served by vLLM) as a prompted generator. Each passage's request (prompted.py) is the user's turn
of one ``/chat/completions`` call with the config's sampling; the server applies its model's chat
template. Calls run ``concurrency`` at a time; a 429, a 5xx, a timeout or a refused connection is
retried with exponential backoff (``max_retries`` times), then the shard fails and nothing of it
is recorded, so a rerun asks only the passages of unfinished shards (shards.py).

The API key is read from the environment variable the config names (``api_key_env``) and sent
only in the Authorization header: never logged, never in a manifest. Standard library only.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ..runtime.backends import Sampling

log = logging.getLogger(__name__)

RETRIED_STATUS = (429, 500, 502, 503, 504)


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
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                problem = str(getattr(error, "reason", error))
            if attempt == self.max_retries:
                raise EndpointError(f"{self.url}: {problem}, after {self.max_retries} retries")
            wait = self.backoff * 2 ** attempt
            log.warning("%s: %s; retry %d of %d in %.1f s", self.url, problem, attempt + 1, self.max_retries, wait)
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
