"""Paths are matched whole (issue 9, defect 8): the router cut a path after
64 segments, so an exact route of 64 segments also matched every longer
path that began like it, and a route of more than 64 segments never
matched. A path with more segments than a route has is simply not that
route's (prefix routes excepted)."""

import pytest
import requests

from conftest import amqp_config
from test_live_config import ROUTER, live, post  # noqa: F401  (live: fixture)


def path(n):
    """A path of n segments in all: api, then s1 ... s(n-1)."""
    return "/api/" + "/".join("s%d" % i for i in range(1, n))


@pytest.fixture
def gw(rabbitmq, live, queue):
    g = live(ROUTER, workers=1)
    doc = amqp_config(rabbitmq.port, {"svc": {"routing_key": queue.name},
                                      "psvc": {"routing_key": "{p}"}})
    doc["rest_channel"] = [
        {"name": "exact64", "url_path": path(64), "service": "svc"},
        {"name": "exact70", "url_path": path(70), "service": "svc"},
        {"name": "param66", "url_path": path(64) + "/x/{p}",
         "service": "psvc", "method": "PUT"},
        {"name": "deep", "url_path": "/api/deep/*", "service": "svc"},
    ]
    v = g.write(doc)
    g.start()
    g.wait_version(v)
    g.wait_ready()
    g.queue = queue
    return g


CASES = [
    ("an exact route of 64 segments matches its path", path(64), 202),
    ("one more segment is not that route", path(64) + "/s64", 404),
    ("a longer path that begins like it is not that route",
     path(64) + "/s64/s65/s66", 404),
    ("a route of 70 segments matches its path", path(70), 202),
    ("70 segments and one more", path(70) + "/s70", 404),
    ("69 segments are not the 70-segment route", path(69), 404),
    ("a prefix route takes a path of 500 segments",
     "/api/deep/" + "/".join(["z"] * 498), 202),
]


@pytest.mark.parametrize("title,uri,status", CASES,
                         ids=[c[0] for c in CASES])
def test_paths_are_matched_whole(gw, title, uri, status):
    r = post(gw.url + uri)
    assert r.status_code == status, (title, r.text)
    assert gw.queue.count() == (1 if status == 202 else 0)


def test_a_param_after_64_segments_is_bound(gw):
    # the 66th segment names the queue: {p} is the routing key
    r = requests.put(gw.url + path(64) + "/x/" + gw.queue.name, data=b"1",
                     timeout=10)
    assert r.status_code == 202, r.text
    assert gw.queue.count() == 1
    # 66 segments: the param route has 66, so one more is not it
    r = requests.put(gw.url + path(64) + "/x/value/more", data=b"1",
                     timeout=10)
    assert r.status_code == 404
