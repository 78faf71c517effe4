"""The NGINX module: it loads into Debian's nginx, reads its configuration
file, reports configuration errors with file and line, and answers
zmq_status."""

import json
import os
import pwd
import signal
import subprocess
import time

import pytest
import requests

from conftest import (ASAN_PRELOAD, nginx_log_problems, register_input_file,
                      sanitizer_reports)

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
    copy = os.path.join(ngx.dir, "demo.json")
    with open(DEMO) as src, open(copy, "w") as dst:
        dst.write(src.read())
    register_input_file(copy)       # the test's input: its secrets in clear
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


def test_zmq_max_body_is_at_most_rabbitmqs_largest_message(nginx_factory):
    # 128 MiB: a larger message makes RabbitMQ close the shared channel
    ngx = nginx_factory(server="location /p { zmq_max_body 129m; }")
    rc, out = ngx.test_config()
    assert rc != 0
    assert "zmq_max_body 135266304 is larger than the largest message " \
           "RabbitMQ takes (134217728 bytes)" in out
    ngx = nginx_factory(server="location /p { zmq_max_body 128m; }")
    assert ngx.test_config()[0] == 0


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


# ------------------------------------------------ what fails a test at teardown

@pytest.mark.parametrize("log_level", ["info", "error"])
def test_a_worker_killed_by_a_signal_is_caught_by_the_teardown_check(
        nginx_factory, log_level):
    """A worker that dies (here SIGSEGV from outside) is what the teardown
    check exists for: it sees the exit in the error log at any log level
    and, under ASan, the worker's report, which an unprivileged worker can
    write. The test then forgets them, so that the suite passes."""
    ngx = nginx_factory(server=STATUS, log_level=log_level).start()
    assert ngx.problems() == []
    [pid] = ngx.worker_pids()
    os.kill(pid, signal.SIGSEGV)

    exited = "worker process %d exited" % pid
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        problems = ngx.problems()
        if any(exited in p for p in problems) and (
                not ASAN_PRELOAD or any("AddressSanitizer" in p
                                        for p in problems)):
            break
        time.sleep(0.05)
    assert any(exited in p for p in problems), problems
    if ASAN_PRELOAD:
        assert any("ERROR: AddressSanitizer: SEGV" in p
                   for p in problems), problems

    # the master started another worker, which answers
    deadline = time.monotonic() + 10
    while ngx.worker_pids() in ([], [pid]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert requests.get(ngx.url + "/zmq/status", timeout=5).json()["pid"] \
        not in (pid, ngx.proc.pid)
    ngx.forget_problems()
    assert ngx.problems() == []


@pytest.mark.parametrize("line,bad", [
    ("2024/05/01 10:00:00 [alert] 10#10: worker process 11 exited on "
     "signal 11 (core dumped)", True),
    ("2024/05/01 10:00:00 [notice] 10#10: worker process 11 exited with "
     "code 1", True),
    ("2024/05/01 10:00:00 [alert] 10#10: worker process 11 exited with "
     "fatal code 2 and cannot be respawned", True),
    ("2024/05/01 10:00:00 [notice] 10#10: cache manager process 12 exited "
     "with code 0", False),
    ("2024/05/01 10:00:00 [notice] 10#10: worker process 11 exited with "
     "code 0", False),
    ("2024/05/01 10:00:00 [notice] 10#10: signal 17 (SIGCHLD) received "
     "from 11", False),
    ("==11==ERROR: AddressSanitizer: heap-use-after-free on address", True),
    ("ngx_http_zmq_amqp.c:1030:9: runtime error: unsigned integer "
     "overflow", True),
    ("2024/05/01 10:00:00 [alert] 11#11: zmq: cannot happen", True),
    ("2024/05/01 10:00:00 [emerg] 10#10: unknown directive", False),
    ("2024/05/01 10:00:00 [error] 11#11: *1 zmq: broker unavailable", False),
])
def test_the_error_log_lines_that_fail_a_test(line, bad):
    assert bool(nginx_log_problems(line)) == bad


def test_sanitizer_reports_of_any_process_reach_the_check(sanitizer_check):
    """Every process a test starts gets sanitizer options that write into
    the test's report directory, which an unprivileged process can write
    too (NGINX workers run as nobody under root)."""
    opts = os.environ["ASAN_OPTIONS"]
    assert "log_path=%s/report" % sanitizer_check in opts
    assert "log_path=%s/report" % sanitizer_check in os.environ[
        "UBSAN_OPTIONS"]
    # what a sanitizer does on a report: open log_path.<pid> and write
    script = ('import os; p = os.environ["UBSAN_OPTIONS"].split('
              '"log_path=")[1].split(":")[0]; '
              'open("%s.%d" % (p, os.getpid()), "w").write('
              '"x.c:1:1: runtime error: something\\n")')

    def as_nobody():
        if os.getuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)

    subprocess.run(["/usr/bin/python3", "-c", script], check=True,
                   preexec_fn=as_nobody, timeout=30)
    [report] = sanitizer_reports(sanitizer_check)
    assert "runtime error: something" in report
    for name in os.listdir(sanitizer_check):      # the suite must pass
        os.unlink(os.path.join(sanitizer_check, name))
