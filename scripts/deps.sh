#!/bin/bash
# Installs the Debian packages ngx_zmq needs, when any is missing.
#   scripts/deps.sh        what building and running need (make deps)
#   scripts/deps.sh test   what only the tests need (make deps-test, run by
#                          make test): clang with libFuzzer and the
#                          sanitizer runtimes, for the fuzz targets, and
#                          llvm-symbolizer, for readable sanitizer stacks,
#                          and PyJWT and cryptography, which sign the
#                          security tests' tokens independently of ours,
#                          and jsonschema, Node.js and npm, which check
#                          the admin API's OpenAPI document (Node.js and
#                          npm only where no npm is on the PATH), and
#                          headless Chromium, its WebDriver and Selenium,
#                          for the web-admin's browser tests (t/browser)
set -euo pipefail

PACKAGES=(
    build-essential nginx nginx-dev
    librabbitmq-dev libhiredis-dev libjansson-dev libssl-dev libcmocka-dev
    libcurl4-openssl-dev libxml2-dev libmicrohttpd-dev
    redis-server rabbitmq-server
    python3 python3-pytest python3-pika python3-redis python3-requests
    curl wrk
)

if [ "${1:-}" = "test" ]; then
    PACKAGES=(clang libclang-rt-14-dev llvm python3-jwt python3-cryptography
              python3-jsonschema chromium chromium-driver python3-selenium
              python3-django python3-flask
              activemq libactivemq-java libgeronimo-jms-1.1-spec-java
              default-jdk-headless prometheus python3-yaml)
    if ! command -v npm >/dev/null; then
        PACKAGES+=(nodejs npm)
    fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#PACKAGES[@]} packages are installed"
    exit 0
fi

echo "deps: installing ${missing[*]}"

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        SUDO=sudo
    else
        echo "deps: not root and no sudo; install as root:" \
             "apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
