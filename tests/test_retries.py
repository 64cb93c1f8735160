"""How many requests one call to several servers of a model (``api_base`` as a list) may send.

The Router behind :class:`lmcot.http_lm.RouterEngine` only fails over (one request per server per try)
and :class:`lmcot.http_lm.HttpLM`'s loop owns ``num_retries``: one call sends at most
(num_retries + 1) x servers requests. The Router used to retry ``servers`` times inside each of
HttpLM's tries: (num_retries + 1) x (servers + 1). Requests are counted on the servers; backoff
waits go through an injected sleep (none slept).
"""

from __future__ import annotations

import functools

import pytest

from lmcot.config import LargeLMConfig
from lmcot.http_lm import HttpLM, RouterEngine
from lmcot.lms import build_lm
from support.oracle_server import OracleServer

ANSWER = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"


@pytest.fixture()
def waits(monkeypatch):
    asked: list[float] = []
    monkeypatch.setattr(HttpLM, "_sleep", staticmethod(asked.append))
    return asked


@pytest.fixture()
def no_cooldown(monkeypatch):
    """Failed servers are not rested: what every try after the first meets once a call's backoff
    (1 + 2 + 4 + 8 + 16 s at the default num_retries) has outlasted the 30 s cooldown."""
    import litellm

    monkeypatch.setattr(litellm, "Router", functools.partial(litellm.Router, disable_cooldowns=True))


def _servers(n: int, failing: int):
    servers = [OracleServer(lambda body: ANSWER).start() for _ in range(n)]
    for srv in servers[:failing]:
        srv.fail_next(10_000, 500)
    return servers


@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_call_to_failing_servers_sends_at_most_retries_plus_one_times_servers_requests(n, waits, no_cooldown):
    servers = _servers(n, failing=n)
    try:
        lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=[s.url for s in servers], num_retries=2,
                                    total_timeout=600, cache=False))
        assert isinstance(lm.engine, RouterEngine)
        with pytest.raises(Exception):
            lm("q")
        assert sum(s.request_count for s in servers) == 3 * n  # 3 tries (num_retries=2), n requests a try
        assert len(waits) == 2  # HttpLM's backoff between its tries; the Router's failover waits for nothing
    finally:
        for srv in servers:
            srv.stop()


def test_failover_still_reaches_the_one_live_server_within_one_try(waits):
    """Cooldown on (the default): each failing server is asked once, then rested; the live one answers."""
    servers = _servers(3, failing=2)
    try:
        lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=[s.url for s in servers], num_retries=0,
                                    cache=False))
        assert "Paris" in lm("q")[0]
        assert [s.request_count for s in servers][2] == 1 and all(s.request_count <= 1 for s in servers)
        assert waits == []
    finally:
        for srv in servers:
            srv.stop()
