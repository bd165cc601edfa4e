"""Read a Prometheus text exposition into samples, and compare two scrapes."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, frozenset[tuple[str, str]]]


class Scrape:
    """The samples of one scrape: ``scrape["shipyard_runs_total", {"agent": "echo"}]`` sums
    the samples of that name whose labels include the given ones (0 when there are none)."""

    def __init__(self, text: str) -> None:
        self.samples: dict[Key, float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[sample.name, frozenset(sample.labels.items())] = sample.value

    def __getitem__(self, query: tuple[str, Mapping[str, str]]) -> float:
        name, labels = query
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def labels(self, name: str) -> list[dict[str, str]]:
        return [dict(ls) for (n, ls) in self.samples if n == name]

    def buckets(self, name: str, labels: Mapping[str, str]) -> dict[float, float]:
        """A histogram's cumulative buckets: upper bound (``inf`` for ``+Inf``) → count."""
        found: dict[float, float] = {}
        for (n, ls), value in self.samples.items():
            as_dict = dict(ls)
            if n == f"{name}_bucket" and set(labels.items()) <= set(as_dict.items()):
                bound = float(as_dict["le"])
                found[bound] = found.get(bound, 0.0) + value
        return found


def parse(reply: httpx.Response) -> Scrape:
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return Scrape(reply.text)


def scrape(client: httpx.Client, path: str = "/metrics") -> Scrape:
    return parse(client.get(path))


def eventually(
    client: httpx.Client, check: Callable[[Scrape], bool], within_s: float = 10
) -> Scrape:
    """Scrape until ``check`` holds: what a response records after its last byte (its own
    latency) may land just after the client has read it."""
    deadline = time.monotonic() + within_s
    while True:
        found = scrape(client)
        if check(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after[name, labels] - before[name, labels]


def bucket_deltas(before: Scrape, after: Scrape, name: str, **labels: str) -> dict[float, float]:
    old, new = before.buckets(name, labels), after.buckets(name, labels)
    return {bound: new[bound] - old.get(bound, 0.0) for bound in sorted(new)}


def landed_in(deltas: Mapping[float, float], values_s: Iterable[float]) -> None:
    """Each observed value raised exactly the buckets whose bound is at or above it."""
    values = list(values_s)
    for bound, moved in deltas.items():
        assert moved == sum(1 for v in values if v <= bound), (bound, moved, values)
    assert deltas[math.inf] == len(values)
