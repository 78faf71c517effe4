"""The NGINX module: it loads into Debian's nginx, reads its configuration
file, reports configuration errors with file and line, and answers
zmq_status."""

import json
import os

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "conf", "demo.json")

STATUS = "location = /zmq/status { zmq_status; }"


def test_module_loads_and_status_reports_the_configuration(nginx_factory):
    ngx = nginx_factory(http="zmq_config file:%s;" % DEMO,
                        server=STATUS).start()
    r = requests.get(ngx.url + "/zmq/status", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    doc = r.json()
    assert doc["module"] == "ngx_zmq"
    assert doc["version"] == "0.1.0"
    cfg = doc["config"]
    assert cfg["source"] == "file:" + DEMO
    assert cfg["state"] == "loaded"
    assert cfg["version"] == int(os.stat(DEMO).st_mtime)
    assert cfg["objects"]["amqp_def"] == 1
    assert cfg["objects"]["service"] == 2
    assert cfg["objects"]["rest_channel"] == 1


def test_status_without_configuration(nginx_factory):
    ngx = nginx_factory(server=STATUS).start()
    doc = requests.get(ngx.url + "/zmq/status", timeout=5).json()
    assert doc["config"] is None


def test_status_answers_only_get_and_head(nginx_factory):
    ngx = nginx_factory(server=STATUS).start()
    assert requests.post(ngx.url + "/zmq/status", data="x",
                         timeout=5).status_code == 405
    r = requests.head(ngx.url + "/zmq/status", timeout=5)
    assert r.status_code == 200 and r.text == ""


def test_relative_paths_are_relative_to_the_configuration(nginx_factory):
    ngx = nginx_factory(http="zmq_config file:demo.json;", server=STATUS)
    with open(DEMO) as src, open(os.path.join(ngx.dir, "demo.json"),
                                 "w") as dst:
        dst.write(src.read())
    ngx.start()
    doc = requests.get(ngx.url + "/zmq/status", timeout=5).json()
    assert doc["config"]["path"] == os.path.join(ngx.dir, "demo.json")


def config_line(ngx, needle):
    with open(ngx.conf) as f:
        for n, line in enumerate(f, 1):
            if needle in line:
                return n
    raise AssertionError(needle)


CASES = [
    ("an invalid object names kind, object, field and the nginx.conf line",
     {"amqp_def": [{"name": "crm", "port": 70000}]},
     "amqp_def 'crm': port 70000 is out of range 1-65535"),
    ("a dangling reference is named",
     {"amqp_outconn": [{"name": "o", "def": "crm"}]},
     "amqp_outconn 'o': def 'crm' does not exist"),
    ("an unknown field is rejected",
     {"service": [{"name": "s", "kind": "redis", "key": "k", "ttl": 1}]},
     "service 's': unknown field 'ttl'"),
    ("invalid JSON names the file's line and column",
     '{\n "amqp_def": [\n  {"name": "a",,}\n ]\n}',
     "bad.json:3:"),
]


@pytest.mark.parametrize("title,doc,message", CASES,
                         ids=[c[0] for c in CASES])
def test_configuration_errors_fail_nginx_t(nginx_factory, title, doc,
                                           message):
    ngx = nginx_factory(http="    zmq_config file:bad.json;", server=STATUS)
    with open(os.path.join(ngx.dir, "bad.json"), "w") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    rc, out = ngx.test_config()
    assert rc != 0
    line = config_line(ngx, "zmq_config")
    assert "[emerg]" in out
    assert message in out
    assert "in %s:%d" % (ngx.conf, line) in out


@pytest.mark.parametrize("directive,message", [
    ("zmq_config redis://127.0.0.1:0/0;", "port 0 is out of range 1-65535"),
    ("zmq_config /etc/zmq.json;", "expected file:PATH"),
    ("zmq_config file:/nonexistent/zmq.json;", "No such file"),
    ("zmq_config file:%s; zmq_config file:%s;" % (DEMO, DEMO),
     "\"zmq_config\" directive is duplicate"),
])
def test_directive_errors(nginx_factory, directive, message):
    ngx = nginx_factory(http=directive, server=STATUS)
    rc, out = ngx.test_config()
    assert rc != 0
    assert message in out
    assert "in %s:" % ngx.conf in out


def test_zmq_status_takes_no_arguments(nginx_factory):
    ngx = nginx_factory(server="location /s { zmq_status on; }")
    rc, out = ngx.test_config()
    assert rc != 0
    assert "invalid number of arguments in \"zmq_status\"" in out


def parent_pid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("PPid:"):
                return int(line.split()[1])


def test_status_is_answered_by_worker_processes(nginx_factory):
    ngx = nginx_factory(http="zmq_config file:%s;" % DEMO, server=STATUS,
                        workers=2).start()
    pids = set()
    for _ in range(20):
        with requests.Session() as s:      # a new connection each time
            doc = s.get(ngx.url + "/zmq/status", timeout=5).json()
        assert doc["config"]["objects"]["amqp_def"] == 1
        pids.add(doc["pid"])
    for pid in pids:
        assert pid != ngx.proc.pid
        assert parent_pid(pid) == ngx.proc.pid
