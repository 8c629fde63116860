"""The endpoint generator against a fake OpenAI-compatible server on a loopback port: its retries
honour Retry-After and add jitter; the preflight's check of an endpoint (its key's variable, one
one-token request); and the paper config's GPT-4 generator, bounded and priced in the cost
model."""
from __future__ import annotations

import copy
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bonito_repro.cluster import cost, preflight
from bonito_repro.core.config import load_scale
from bonito_repro.generate import endpoint
from bonito_repro.runtime.backends import Sampling
from conftest import REPO, Job, dry_run_jobs, snakemake

KEY = "sk-fake-test-key"


class FakeEndpoint:
    """An OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1: answers each request with the
    next scripted (status, headers) or, once the script is spent, a one-choice reply; a request
    without ``Bearer KEY`` gets 401. Records every request's body and Authorization header."""

    def __init__(self):
        self.script: list[tuple[int, dict]] = []
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                status, headers = fake.script.pop(0) if fake.script else (200, {})
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    status, headers = 401, {}
                reply = ({"model": body["model"], "choices": [{"index": 0, "message": {"content": "Instruction: Q\nResponse: A"}}],
                          "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}}
                         if status == 200 else {"error": {"message": f"status {status}"}})
                data = json.dumps(reply).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spec(self, **changes) -> dict:
        return {"kind": "endpoint", "base_url": self.url, "served_model": "gpt-4", "api_key_env": "FAKE_ENDPOINT_KEY",
                "concurrency": 1, "max_retries": 3, "backoff_seconds": 0.01, "timeout_seconds": 10, **changes}


@pytest.fixture
def fake(monkeypatch):
    server = FakeEndpoint()
    monkeypatch.setenv("FAKE_ENDPOINT_KEY", KEY)
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The client's retry waits, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(endpoint.time, "sleep", slept.append)
    return slept


SAMPLING = Sampling(n=1, temperature=0.5, top_p=0.95, max_new_tokens=8)


# --- retries


def test_a_rate_limited_request_waits_as_long_as_retry_after_asks(fake, waits):
    fake.script = [(429, {"Retry-After": "3"}), (503, {"Retry-After": "0"})]
    replies = endpoint.EndpointBackend(fake.spec(), SAMPLING).generate(["Write a task."], [0])
    assert replies == [["Instruction: Q\nResponse: A"]] and len(fake.requests) == 3
    # the 429 asked for 3 s, far above the 0.01 s backoff; the 503's "0" leaves the backoff
    assert 3 <= waits[0] <= 3 * (1 + endpoint.JITTER)
    assert 0.02 <= waits[1] <= 0.02 * (1 + endpoint.JITTER)


def test_retry_after_as_a_date_and_unreadable():
    assert endpoint.retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412500.0) == pytest.approx(10.0)
    assert endpoint.retry_after_seconds("soon") is None and endpoint.retry_after_seconds(None) is None


def test_backoff_has_jitter_and_never_waits_less_than_asked():
    rng = random.Random(0)
    draws = [endpoint.retry_wait(2, 1.0, None, rng) for _ in range(50)]
    assert all(4.0 <= w <= 4.0 * (1 + endpoint.JITTER) for w in draws)
    assert len(set(draws)) == 50  # requests refused together come back apart
    assert endpoint.retry_wait(0, 1.0, 30.0, rng) >= 30.0


def test_every_retry_refused_names_the_retries(fake, waits):
    fake.script = [(429, {})] * 4
    with pytest.raises(endpoint.EndpointError, match="HTTP 429, after 3 retries"):
        endpoint.EndpointBackend(fake.spec(), SAMPLING).generate(["Write a task."], [0])
    assert len(waits) == 3 and waits[0] < waits[1] < waits[2]


# --- the preflight's check


def _config(spec: dict, *, in_run: bool = False) -> dict:
    config = copy.deepcopy(load_scale("paper", REPO))
    config["generators"]["gpt4"] = spec
    if in_run:
        config["run"]["sources"] = [*config["run"]["sources"], "gpt4"]
    return config


def test_the_preflight_makes_one_one_token_request_with_the_key(fake):
    [check] = preflight.check_endpoints(_config(fake.spec()))
    assert check.status == preflight.OK and "FAKE_ENDPOINT_KEY set" in check.detail and "13 tokens billed" in check.detail
    [request] = fake.requests
    assert request["auth"] == f"Bearer {KEY}" and request["body"]["max_tokens"] == 1
    assert request["path"] == "/v1/chat/completions"
    assert KEY not in check.detail


def test_without_a_key_the_preflight_names_the_generator_and_how_to_drop_it(fake, monkeypatch):
    monkeypatch.delenv("FAKE_ENDPOINT_KEY")
    [check] = preflight.check_endpoints(_config(fake.spec()))
    assert check.item.startswith("generators.gpt4: gpt-4 at ")
    assert "FAKE_ENDPOINT_KEY (api_key_env) is not set" in check.detail
    assert "drop gpt4 from ablations.generators.generators" in check.detail
    assert check.status == preflight.WARN  # only the generators ablation needs it
    assert not fake.requests
    [check] = preflight.check_endpoints(_config(fake.spec(), in_run=True))
    assert check.status == preflight.FAIL and "drop gpt4 from run.sources and ablations.generators.generators" in check.detail


def test_a_refused_key_fails_the_check(fake, monkeypatch):
    monkeypatch.setenv("FAKE_ENDPOINT_KEY", "sk-wrong")
    [check] = preflight.check_endpoints(_config(fake.spec(), in_run=True))
    assert check.status == preflight.FAIL and "HTTP 401" in check.detail and len(fake.requests) == 1


# --- GPT-4 in the paper config's generators ablation, bounded and priced


def test_the_paper_gpt4_is_capped_at_matched_n_and_priced():
    paper = load_scale("paper", REPO)
    gpt4, matched = paper["generators"]["gpt4"], paper["ablations"]["generators"]["matched_n"]
    assert "gpt4" in paper["ablations"]["generators"]["generators"] and gpt4["max_passages"] <= matched
    jobs = [Job("endpoint_tasks", {"generator": "gpt4", "dataset": d}) for d in paper["datasets"]]
    rows = cost.Rows({})
    [projected] = cost.endpoint_costs(paper, jobs, rows)
    assert projected.passages == len(paper["datasets"]) * min(paper["cost"]["unannotated_rows"], matched)
    assert projected.completion_tokens == projected.passages * paper["generation"]["max_new_tokens"]
    price = gpt4["price_per_1000_tokens"]
    assert projected.price == pytest.approx(projected.prompt_tokens / 1000 * price["prompt"]
                                            + projected.completion_tokens / 1000 * price["completion"])
    # what the adaptation on its set is costed with: at most the capped passages' tasks
    assert cost.tasks(paper, "gpt4", "pubmed_qa", rows) == matched
    # the summary the cost command and the preflight print: GPT-4's cap, tokens and price
    summary = cost.format_report(cost.project(paper, jobs, rows), paper)
    [line] = [line.split() for line in summary.splitlines() if line.startswith("gpt4 ")]
    assert line == ["gpt4", "7", "10,000", f"{projected.passages:,}", f"{projected.prompt_tokens:,}",
                    f"{projected.completion_tokens:,}", "USD", f"{projected.price:,.0f}"]


@pytest.mark.dag  # a dry run of the paper DAG
def test_the_paper_dry_run_has_gpt4_in_the_generators_ablation_capped_and_priced():
    """The generators ablation's dry run asks GPT-4 for at most matched_n passages a dataset (the
    cap its jobs' params carry), and the cost summary prices them."""
    paper = load_scale("paper", REPO)
    result = snakemake("-n", "-p", "ablation_generators")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    jobs = [j for j in dry_run_jobs(out) if j.rule == "endpoint_tasks"]
    assert sorted(j.wildcards["dataset"] for j in jobs) == sorted(paper["datasets"])
    assert {j.wildcards["generator"] for j in jobs} == {"gpt4"}
    commands = [line for line in out.splitlines() if "--kind endpoint" in line]
    assert len(commands) == len(jobs) and all('"max_passages": 10000' in c for c in commands)
    assert all("price_per_1000_tokens" not in c for c in commands)  # the price reruns nothing
    released = {j.wildcards["dataset"] for j in dry_run_jobs(out)
                if j.rule == "published_tasks" and j.wildcards["generator"] == "bonito_released"}
    assert released == set(paper["datasets"])  # the authors' Bonito sets beside the regenerated ones
    # the cost summary of these jobs, as the cost command and the preflight print it
    summary = cost.format_report(cost.project(paper, dry_run_jobs(out)), paper)
    [line] = [line.split() for line in summary.splitlines() if line.startswith("gpt4 ")]
    assert line[:4] == ["gpt4", "7", "10,000", "70,000"] and line[-2] == "USD" and float(line[-1].replace(",", "")) > 0
