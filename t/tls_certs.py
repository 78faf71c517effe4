"""Certificates for the TLS tests, made with the openssl CLI.

make_pki(directory) writes, and returns the paths of:

  ca.crt / ca.key            the test CA
  server.crt / server.key    signed by the CA, for 127.0.0.1 and localhost
  client.crt / client.key    signed by the CA, a client certificate (mTLS)
  other_ca.crt               a second CA that signed nothing we serve
  wrong_host.crt / .key      signed by the CA, for wrong.example only
  expired.crt / expired.key  signed by the CA, valid only in 2020

Keys are EC P-256 (fast to make). Every file is excluded from the secret
scan (they are test inputs, not secrets of a configuration).
"""

import os
import subprocess

OPENSSL = "openssl"

CA_CONF = """
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = placeholder
"""


def _run(*args, cwd=None):
    subprocess.run([OPENSSL] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _key(path):
    _run("genpkey", "-algorithm", "EC", "-pkeyopt",
         "ec_paramgen_curve:P-256", "-out", path)
    os.chmod(path, 0o600)


def _ca(d, name, cn):
    key = os.path.join(d, name + ".key")
    crt = os.path.join(d, name + ".crt")
    _key(key)
    _run("req", "-x509", "-new", "-key", key, "-out", crt, "-days", "3650",
         "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return crt, key


def _leaf(d, name, cn, sans, ca_crt, ca_key, usage, start=None, end=None):
    key = os.path.join(d, name + ".key")
    csr = os.path.join(d, name + ".csr")
    crt = os.path.join(d, name + ".crt")
    _key(key)
    args = ["req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + cn,
            "-addext", "extendedKeyUsage=" + usage]
    if sans:
        args += ["-addext", "subjectAltName=" + sans]
    _run(*args)
    conf = os.path.join(d, "ca.cnf")
    args = ["ca", "-batch", "-config", conf, "-cert", ca_crt, "-keyfile",
            ca_key, "-in", csr, "-out", crt, "-notext"]
    if start:
        args += ["-startdate", start, "-enddate", end]
    else:
        args += ["-days", "3650"]
    _run(*args)
    return crt, key


def make_pki(directory):
    d = os.path.abspath(directory)
    os.makedirs(os.path.join(d, "newcerts"), exist_ok=True)
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write(CA_CONF.format(dir=d))
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("1000\n")

    out = {}
    out["ca"], out["ca_key"] = _ca(d, "ca", "ngx_zmq test CA")
    out["other_ca"], _ = _ca(d, "other_ca", "ngx_zmq other CA")
    ca, ca_key = out["ca"], out["ca_key"]
    out["server"], out["server_key"] = _leaf(
        d, "server", "localhost", "DNS:localhost,IP:127.0.0.1", ca, ca_key,
        "serverAuth")
    out["client"], out["client_key"] = _leaf(
        d, "client", "ngx_zmq client", None, ca, ca_key, "clientAuth")
    out["wrong_host"], out["wrong_host_key"] = _leaf(
        d, "wrong_host", "wrong.example", "DNS:wrong.example", ca, ca_key,
        "serverAuth")
    out["expired"], out["expired_key"] = _leaf(
        d, "expired", "localhost", "DNS:localhost,IP:127.0.0.1", ca, ca_key,
        "serverAuth", start="20200101000000Z", end="20200102000000Z")

    try:
        from conftest import scan_exclude
    except ImportError:
        scan_exclude = None
    if scan_exclude is not None:
        for name in os.listdir(d):
            path = os.path.join(d, name)
            if os.path.isfile(path):
                scan_exclude(path)
    return out


if __name__ == "__main__":
    import sys
    import tempfile
    target = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
    for k, v in sorted(make_pki(target).items()):
        print(k, v)
