"""make install / make uninstall (Debian's nginx module layout), the
installed module loading into Debian's nginx, the installed programs,
and docker/ checked at lint level (no container runtime here) with its
entrypoint run outside a container against real Redis and RabbitMQ.

Run as: ZMQ_BUILD=$PWD/build python3 -m pytest -q t/test_install.py"""
import hashlib
import base64
import json
import os
import re
import shutil
import stat
import subprocess
import time

import pytest
import requests

from conftest import (BUILD, NGINX, ROOT, free_port, scan_exclude, stop_pid,
                      wait_port)

yaml = pytest.importorskip("yaml")

PREFIX = "/usr"
# path -> mode of every file make install DESTDIR=... PREFIX=/usr makes
EXPECTED = {
    "usr/lib/nginx/modules/ngx_http_zmq_module.so": 0o644,
    "usr/share/nginx/modules-available/mod-http-zmq.conf": 0o644,
    "usr/bin/zmqd": 0o755,
    "usr/bin/zmqctl": 0o755,
    "usr/lib/systemd/system/zmqd.service": 0o644,
    "usr/share/doc/ngx-zmq/examples/zmq.conf": 0o644,
    "usr/share/doc/ngx-zmq/examples/demo.json": 0o644,
    "usr/share/doc/ngx-zmq/examples/zmqd.default": 0o644,
    "usr/share/ngx-zmq/web/index.html": 0o644,
    "usr/share/ngx-zmq/web/app.css": 0o644,
    "usr/share/ngx-zmq/web/app.js": 0o644,
    "usr/share/ngx-zmq/web/forms.js": 0o644,
    "usr/share/ngx-zmq/install-manifest": 0o644,
    "etc/default/zmqd": 0o644,
}
DOCKER = os.path.join(ROOT, "docker")


def make(target, destdir, **kw):
    args = ["make", "--no-print-directory", "-C", ROOT, target,
            "DESTDIR=%s" % destdir, "PREFIX=%s" % PREFIX, "BUILD=%s" % BUILD]
    args += ["%s=%s" % kv for kv in kw.items()]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def tree(top):
    """Every path under top with its type and mode (and content digest)."""
    out = {}
    for d, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(d, name)
            st = os.lstat(p)
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(p, top)] = (stat.S_IFMT(st.st_mode),
                                            stat.S_IMODE(st.st_mode), digest)
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = str(tmp_path_factory.mktemp("destdir"))
    r = make("install", dest)
    return dest, r.stdout


def test_install_files_and_modes(installed):
    dest, out = installed
    files = {p: m for p, (t, m, _) in tree(dest).items()
             if t == stat.S_IFREG}
    assert files == EXPECTED
    # the binaries are the ones built
    for name in ("zmqd", "zmqctl", "ngx_http_zmq_module.so"):
        src = os.path.join(BUILD, name)
        dst = [os.path.join(dest, p) for p in EXPECTED
               if p.endswith("/" + name)][0]
        with open(src, "rb") as a, open(dst, "rb") as b:
            assert a.read() == b.read(), name
    for web in ("index.html", "app.css", "app.js", "forms.js"):
        with open(os.path.join(ROOT, "web", web), "rb") as a, \
                open(os.path.join(dest, "usr/share/ngx-zmq/web", web),
                     "rb") as b:
            assert a.read() == b.read()
    # the operator is told how to enable the module (install does not)
    assert ("ln -s /usr/share/nginx/modules-available/mod-http-zmq.conf "
            "/etc/nginx/modules-enabled/50-mod-http-zmq.conf") in out
    assert not os.path.exists(os.path.join(dest, "etc/nginx"))


def test_snippet_loads_the_module_debian_style(installed):
    dest, _ = installed
    with open(os.path.join(
            dest, "usr/share/nginx/modules-available/mod-http-zmq.conf")) as f:
        assert f.read() == "load_module modules/ngx_http_zmq_module.so;\n"


def unit_settings(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def test_unit_content(installed):
    dest, _ = installed
    with open(os.path.join(dest, "usr/lib/systemd/system/zmqd.service")) as f:
        text = f.read()
    s = unit_settings(text)
    assert s["ExecStart"] == ["/usr/bin/zmqd $ZMQD_ARGS"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["Restart"] == ["on-failure"]
    assert s["User"] == ["zmqd"] and s["Group"] == ["zmqd"]
    assert s["EnvironmentFile"] == ["-/etc/default/zmqd"]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["CapabilityBoundingSet"] == [""]
    assert s["WantedBy"] == ["multi-user.target"]
    assert "@" not in "".join(s["ExecStart"] + s["Documentation"])
    with open(os.path.join(dest, "etc/default/zmqd")) as f:
        d = f.read()
    assert "ZMQ_REDIS=" in d and "ZMQ_KEY_FILE=" in d and "ZMQD_ARGS=" in d


def test_unit_systemd_analyze_verify(installed, tmp_path):
    sa = shutil.which("systemd-analyze")
    if sa is None:
        pytest.skip("systemd-analyze is not installed")
    dest, _ = installed
    with open(os.path.join(dest, "usr/lib/systemd/system/zmqd.service")) as f:
        text = f.read()
    # ExecStart must name an executable that exists: the one in DESTDIR
    unit = tmp_path / "zmqd.service"
    unit.write_text(text.replace("/usr/bin/zmqd",
                                 os.path.join(dest, "usr/bin/zmqd")))
    r = subprocess.run([sa, "verify", str(unit)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0 and "Failed to" in r.stderr \
            and "zmqd.service" not in r.stderr:
        pytest.skip("systemd-analyze verify does not work here: %s"
                    % r.stderr.strip())
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    # the hardening options are understood (an offline security score)
    r = subprocess.run([sa, "security", "--offline=yes", str(unit)],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for zmqd.service: ([0-9.]+)",
                  r.stdout)
    assert m and float(m.group(1)) <= 2.5, r.stdout[-2000:] + r.stderr


def test_manifest_lists_what_was_installed(installed):
    dest, _ = installed
    with open(os.path.join(dest, "usr/share/ngx-zmq/install-manifest")) as f:
        lines = f.read().splitlines()
    files = {l.split()[1].lstrip("/") for l in lines if l[0] in "fc"}
    dirs = {l.split()[1].lstrip("/") for l in lines if l[0] == "d"}
    assert files == set(EXPECTED)
    assert dirs == {p for p, (t, _, _) in tree(dest).items()
                    if t == stat.S_IFDIR}


def test_uninstall_leaves_nothing_behind(tmp_path):
    dest = str(tmp_path / "root")
    # what was there before stays, with its directories
    os.makedirs(os.path.join(dest, "usr/bin"))
    with open(os.path.join(dest, "usr/bin/other"), "w") as f:
        f.write("not ours\n")
    before = tree(dest)
    make("install", dest)
    make("install", dest)          # again: still one manifest, same dirs
    assert tree(dest) != before
    make("uninstall", dest)
    assert tree(dest) == before


def test_uninstall_keeps_a_changed_default_file(tmp_path):
    dest = str(tmp_path / "root")
    os.makedirs(dest)
    make("install", dest)
    path = os.path.join(dest, "etc/default/zmqd")
    with open(path, "a") as f:
        f.write("ZMQ_REDIS=redis://10.0.0.1:6379/0\n")
    r = make("uninstall", dest)
    assert "/etc/default/zmqd was changed: kept" in r.stdout
    assert sorted(tree(dest)) == ["etc", "etc/default", "etc/default/zmqd"]


def test_install_keeps_an_existing_default_file(tmp_path):
    dest = str(tmp_path / "root")
    os.makedirs(os.path.join(dest, "etc/default"))
    with open(os.path.join(dest, "etc/default/zmqd"), "w") as f:
        f.write("ZMQD_ARGS=--workers 4\n")
    before = tree(dest)
    r = make("install", dest)
    assert "/etc/default/zmqd exists: left as it is" in r.stdout
    make("uninstall", dest)
    assert tree(dest) == before


def nginx_prefix(dest):
    """Debian's nginx prefix inside DESTDIR, with its modules symlink (as
    nginx-common ships it), so that the snippet's relative path works."""
    prefix = os.path.join(dest, "usr/share/nginx")
    link = os.path.join(prefix, "modules")
    if not os.path.islink(link):
        os.symlink("../../lib/nginx/modules", link)
    return prefix


def nginx_t(conf, prefix):
    return subprocess.run([NGINX, "-t", "-p", prefix + "/", "-c", conf,
                           "-e", "/dev/stderr"], capture_output=True,
                          text=True, timeout=60)


def test_installed_module_loads_with_the_snippet(installed, tmp_path,
                                                 redis_store):
    dest, _ = installed
    prefix = nginx_prefix(dest)
    key = str(tmp_path / "keys/secret.key")
    r = subprocess.run([os.path.join(dest, "usr/bin/zmqctl"), "--key-file",
                        key, "keygen"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(dest,
                           "usr/share/doc/ngx-zmq/examples/zmq.conf")) as f:
        example = f.read()
    assert "alias /usr/share/ngx-zmq/web/;" in example
    example = (example.replace("/etc/ngx_zmq/secret.key", key)
               .replace("redis://127.0.0.1:6379/0", redis_store.url)
               .replace("/var/lib/nginx/zmq_cache", str(tmp_path / "cache"))
               .replace("/usr/share/ngx-zmq/web/",
                        os.path.join(dest, "usr/share/ngx-zmq/web/")))
    (tmp_path / "zmq.conf").write_text(example)
    scan_exclude(tmp_path / "zmq.conf")     # the demo's passwords, as input
    conf = tmp_path / "nginx.conf"
    conf.write_text("""
include %s/usr/share/nginx/modules-available/mod-http-zmq.conf;
pid %s/nginx.pid;
events { worker_connections 64; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    include %s/zmq.conf;
}
""" % (dest, tmp_path, tmp_path))
    r = nginx_t(str(conf), prefix)
    assert r.returncode == 0, r.stderr
    assert "test is successful" in r.stderr


def test_installed_programs_run(installed, tmp_path):
    dest, _ = installed
    for prog in ("zmqd", "zmqctl"):
        r = subprocess.run([os.path.join(dest, "usr/bin", prog), "--help"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "usage:" in r.stdout, r.stderr


def test_keygen_creates_missing_directories_0700(installed, tmp_path):
    dest, _ = installed
    zmqctl = os.path.join(dest, "usr/bin/zmqctl")
    key = tmp_path / "etc/ngx_zmq/secret.key"
    r = subprocess.run(["sh", "-c", 'umask 022 && exec "$0" --key-file "$1" '
                        'keygen', zmqctl, str(key)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    for d in (tmp_path / "etc", tmp_path / "etc/ngx_zmq"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert "created directory %s (mode 0700)" % (tmp_path / "etc/ngx_zmq") \
        in r.stderr
    assert re.fullmatch(r"[0-9a-f]{64}\n", key.read_text())
    # an existing directory keeps its mode; a second key in it is fine
    os.chmod(tmp_path / "etc/ngx_zmq", 0o750)
    r = subprocess.run([zmqctl, "--key-file", str(tmp_path / "etc/ngx_zmq/k2"),
                        "keygen"], capture_output=True, text=True)
    assert r.returncode == 0 and "created" not in r.stderr, r.stderr
    assert stat.S_IMODE(os.stat(tmp_path / "etc/ngx_zmq").st_mode) == 0o750
    # a path that cannot be made: a clear error, exit 1
    (tmp_path / "file").write_text("")
    r = subprocess.run([zmqctl, "--key-file", str(tmp_path / "file/d/k"),
                        "keygen"], capture_output=True, text=True)
    assert r.returncode == 1
    assert "cannot create directory '%s'" % (tmp_path / "file/d") in r.stderr


# ------------------------------------------------------------------ docker/

def dockerfile():
    with open(os.path.join(DOCKER, "Dockerfile")) as f:
        text = f.read()
    text = re.sub(r"\\\n", " ", text)
    return [l.strip() for l in text.splitlines()
            if l.strip() and not l.strip().startswith("#")]


def apt_packages(run_line):
    m = re.search(r"apt-get install (.*?)(&&|$)", run_line)
    return {w for w in m.group(1).split() if not w.startswith("-")}


def test_dockerfile_stages_and_copy_sources():
    lines = dockerfile()
    stages = [l.split() for l in lines if l.startswith("FROM ")]
    assert [s[1] for s in stages] == ["debian:12", "debian:12"]
    assert [s[3] for s in stages if len(s) == 4 and s[2] == "AS"] == \
        ["build", "run"]
    for l in lines:
        if not l.startswith("COPY "):
            continue
        words = l.split()[1:]
        if words[0].startswith("--from="):
            assert words[0] == "--from=build"
            continue
        for src in words[:-1]:
            # the build context is the project (compose.yaml: context ..)
            assert os.path.exists(os.path.join(ROOT, src)), src
    assert "ENTRYPOINT [\"/usr/local/bin/zmq-entrypoint\"]" in lines


def test_dockerfile_packages():
    lines = dockerfile()
    build = [l for l in lines if "apt-get install" in l][0]
    run = [l for l in lines if "apt-get install" in l][1]
    # the build stage has every build package of scripts/deps.sh
    with open(os.path.join(ROOT, "scripts/deps.sh")) as f:
        deps = f.read()
    first = re.search(r"PACKAGES=\((.*?)\)", deps, re.S).group(1)
    wanted = {w for w in first.split()
              if w.endswith("-dev") and w != "libcmocka-dev"}
    wanted |= {"build-essential", "nginx", "nginx-dev"}
    assert wanted <= apt_packages(build), wanted - apt_packages(build)
    assert "make -j\"$(nproc)\" all" in build + "".join(
        l for l in lines if l.startswith("RUN make"))
    # the run stage has, and needs no -dev for, what the binaries link
    pkgs = set()
    for f in ("zmqd", "zmqctl", "ngx_http_zmq_module.so"):
        r = subprocess.run(["readelf", "-d", os.path.join(BUILD, f)],
                           capture_output=True, text=True, check=True)
        for lib in re.findall(r"NEEDED.*\[(.*)\]", r.stdout):
            path = subprocess.run(
                "ldconfig -p | awk -v l=%s '$1==l {print $NF; exit}'" % lib,
                shell=True, capture_output=True, text=True).stdout.strip()
            owner = subprocess.run(["dpkg", "-S", path],
                                   capture_output=True, text=True)
            if owner.returncode != 0:
                owner = subprocess.run(["dpkg", "-S", "/usr" + path],
                                       capture_output=True, text=True)
            pkgs.add(owner.stdout.split(":")[0])
    pkgs.discard("libc6")          # in debian:12 itself
    have = apt_packages(run)
    assert pkgs <= have, pkgs - have
    assert not {p for p in have if p.endswith("-dev")}


def test_compose_references_existing_files():
    with open(os.path.join(DOCKER, "compose.yaml")) as f:
        doc = yaml.safe_load(f)
    services = doc["services"]
    assert set(services) == {"redis", "rabbitmq", "gateway", "zmqd",
                             "prometheus"}
    named = set(doc.get("volumes") or {})
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert os.path.exists(os.path.join(DOCKER, src)), (name, v)
            else:
                assert src in named, (name, v)
        for dep in svc.get("depends_on", {}):
            assert dep in services
    build = services["gateway"]["build"]
    ctx = os.path.join(DOCKER, build["context"])
    assert os.path.isfile(os.path.join(ctx, build["dockerfile"]))
    assert services["zmqd"]["image"] == services["gateway"]["image"]
    assert services["zmqd"]["command"] == ["zmqd"]
    assert "--metrics 0.0.0.0:9108" in services["zmqd"]["environment"][
        "ZMQD_ARGS"]
    hc = services["gateway"]["healthcheck"]["test"]
    assert "http://127.0.0.1:8080/zmq/status" in hc
    # Prometheus scrapes both
    with open(os.path.join(DOCKER, "prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    targets = {(j["metrics_path"], t) for j in prom["scrape_configs"]
               for sc in j["static_configs"] for t in sc["targets"]}
    assert targets == {("/zmq/metrics", "gateway:8080"),
                       ("/metrics", "zmqd:9108")}
    with open(os.path.join(DOCKER, "nginx.conf")) as f:
        conf = f.read()
    assert "location = /zmq/metrics {\n            zmq_metrics;" in conf
    assert "listen 8080;" in conf


def test_docker_demo_matches_conf_demo():
    """docker/demo.json is conf/demo.json with the broker of compose.yaml,
    whose user definitions.json creates."""
    with open(os.path.join(ROOT, "conf/demo.json")) as f:
        demo = json.load(f)
    with open(os.path.join(DOCKER, "demo.json")) as f:
        ddemo = json.load(f)
    for a in demo["amqp_def"]:
        a.update(host="rabbitmq", username="zmq", password="change-me-amqp")
    assert ddemo == demo
    with open(os.path.join(DOCKER, "rabbitmq/definitions.json")) as f:
        defs = json.load(f)
    user = defs["users"][0]
    raw = base64.b64decode(user["password_hash"])
    assert user["name"] == "zmq"
    assert hashlib.sha256(raw[:4] + b"change-me-amqp").digest() == raw[4:]
    assert {q["name"] for q in defs["queues"]} >= {"customer.updates"}


# ----------------------------------------------------- entrypoint smoke test

def test_entrypoint_gateway_and_zmqd(installed, tmp_path, redis_store,
                                     rabbitmq):
    import pika
    dest, _ = installed
    prefix = nginx_prefix(dest)
    port = free_port()
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", rabbitmq.port))
    ch = conn.channel()
    ch.queue_delete("customer.updates")
    ch.queue_declare("customer.updates", durable=True)
    conn.close()

    with open(os.path.join(DOCKER, "demo.json")) as f:
        demo = json.load(f)
    for a in demo["amqp_def"]:
        a.update(host="127.0.0.1", port=rabbitmq.port, username="guest",
                 password="guest")
    (tmp_path / "demo.json").write_text(json.dumps(demo))
    scan_exclude(tmp_path / "demo.json")    # an input: the demo's passwords

    with open(os.path.join(DOCKER, "nginx.conf")) as f:
        conf = f.read()
    module = open(os.path.join(BUILD, "ngx_http_zmq_module.so"), "rb").read()
    if b"zmq_metrics" not in module:
        # the metrics directive lands with issue 17 item 3
        conf = re.sub(r"\n *# scraped by Prometheus.*?\n *}\n", "\n", conf,
                      flags=re.S)
    key = str(tmp_path / "keys/secret.key")
    conf = (conf.replace("include /etc/nginx/modules-enabled/*.conf;",
                         "include %s/usr/share/nginx/modules-available/"
                         "mod-http-zmq.conf;" % dest)
            .replace("user www-data;\n", "")
            .replace("worker_processes auto;", "worker_processes 1;")
            .replace("/run/nginx.pid", str(tmp_path / "nginx.pid"))
            .replace("/etc/ngx_zmq/keys/secret.key", key)
            .replace("redis://redis:6379/0", redis_store.url)
            .replace("/var/lib/nginx/zmq_cache", str(tmp_path / "cache"))
            .replace("listen 8080;", "listen 127.0.0.1:%d;" % port)
            .replace("/dev/stdout", str(tmp_path / "access.log"))
            .replace("/usr/share/ngx-zmq/web/",
                     os.path.join(dest, "usr/share/ngx-zmq/web/")))
    (tmp_path / "nginx.conf").write_text(conf)
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        os.makedirs(os.path.join(prefix, d), exist_ok=True)

    env = dict(os.environ, PATH="%s/usr/bin:/usr/sbin:/usr/bin:/bin" % dest,
               ZMQ_REDIS=redis_store.url, ZMQ_KEY_FILE=key,
               ZMQ_IMPORT=str(tmp_path / "demo.json"),
               ZMQ_NGINX_CONF=str(tmp_path / "nginx.conf"),
               ZMQ_NGINX_PREFIX=prefix + "/", ZMQD_USER="", ZMQ_WAIT="20")
    entry = os.path.join(DOCKER, "entrypoint.sh")
    glog = open(tmp_path / "gateway.log", "w")
    zlog = open(tmp_path / "zmqd.log", "w")
    gw = subprocess.Popen([entry, "gateway"], env=env, stdout=glog,
                          stderr=subprocess.STDOUT)
    zd = None
    try:
        wait_port(port, 30, gw)
        # the entrypoint made the key (and its directory) and imported
        assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
        r = requests.get("http://127.0.0.1:%d/zmq/status" % port, timeout=5)
        assert r.status_code == 200
        # the entrypoint exec'ed nginx: the master's PID is the script's
        with open(tmp_path / "nginx.pid") as f:
            assert int(f.read()) == gw.pid
        zd = subprocess.Popen([entry, "zmqd"], env=env, stdout=zlog,
                              stderr=subprocess.STDOUT)
        # 503 until the worker's broker connection is up
        for _ in range(100):
            r = requests.post(
                "http://127.0.0.1:%d/api/customers/updates" % port,
                json={"customer": 42}, timeout=10,
                headers={"X-Message-Id": "entry-1"})
            if r.status_code != 503:
                break
            time.sleep(0.1)
        assert r.status_code == 202, r.text
        c = redis_store.client()
        for _ in range(100):
            if c.llen("customer:updates"):
                break
            time.sleep(0.1)
        assert json.loads(c.lrange("customer:updates", 0, -1)[0]) == \
            {"customer": 42}
        assert zd.poll() is None
    finally:
        if zd is not None:
            stop_pid(zd)
        stop_pid(gw)
        glog.close()
        zlog.close()
    # zmqd (exec'ed by the entrypoint) stopped cleanly on SIGTERM
    assert zd.returncode == 0, (tmp_path / "zmqd.log").read_text()
