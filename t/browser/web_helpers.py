"""Helpers and fixtures of the web-admin's browser tests (issue 13): the real stack
(Redis, RabbitMQ, NGINX with the module following Redis) with the web-admin
served next to the admin API, and headless Chromium driven by Selenium.

The UI is served as the README documents it: a location with `alias` to
web/ next to each zmq_admin location (/zmq/admin/ for the admin, /zmq/view/
for a viewer), calling the API at ../api/. Chromium (Debian's chromium and
chromium-driver) and Selenium (python3-selenium) are test packages (make
deps-test): when they are missing the tests fail, saying so; they are not
skipped."""

import os
import shutil
import tempfile
import time

import pytest

from conftest import ROOT, amqp_config, register_secret
from test_live_config import Live

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WEB = os.path.join(ROOT, "web")
SCREENSHOTS = os.path.join(os.environ.get("ZMQ_BUILD",
                                          os.path.join(ROOT, "build")),
                           "screenshots")

ADMIN_PW = "web-Admin-Passw0rd-4471"
VIEW_PW = "web-View-Passw0rd-8213"

# the static files hold no secret; they get the types and headers a
# production location would (mime.types is not in the test nginx.conf)
UI = """
location %(prefix)sui/ {
    alias %(web)s/;
    types { text/html html; text/css css; application/javascript js; }
    add_header Content-Security-Policy "default-src 'self'; frame-ancestors 'none'" always;
    add_header X-Content-Type-Options nosniff always;
    add_header Cache-Control no-cache always;
}
"""

LOCATIONS = (
    "location /zmq/admin/ { zmq_admin; zmq_security admins; }\n"
    + UI % {"prefix": "/zmq/admin/", "web": WEB}
    + "location /zmq/view/ { zmq_admin; zmq_security viewers; }\n"
    + UI % {"prefix": "/zmq/view/", "web": WEB}
    + "location /api/ { zmq_router; }\n")


def base_config(rabbitmq, extra_defs=()):
    register_secret(ADMIN_PW)
    register_secret(VIEW_PW)
    d = amqp_config(rabbitmq.port, {"svc": {"routing_key": "unused"}},
                    extra={"security": [
                        {"name": "admins", "type": "basic_auth",
                         "username": "root", "password": ADMIN_PW},
                        {"name": "viewers", "type": "basic_auth",
                         "username": "ops", "password": VIEW_PW,
                         "role": "viewer"},
                    ]})
    d["amqp_def"].extend(extra_defs)
    return d


class Stack:
    """NGINX following Redis (written by zmqctl), the web-admin on it."""

    def __init__(self, live, rabbitmq):
        self.live = live
        self.rabbitmq = rabbitmq
        self.url = live.url
        self.ui = live.url + "/zmq/admin/ui/"
        self.view_ui = live.url + "/zmq/view/ui/"

    def version(self):
        return int(self.live.redis.client().get("zmq:version"))

    def api(self, method, path, **kw):
        import requests
        with requests.Session() as s:
            return s.request(method, self.url + "/zmq/admin/api/" + path,
                             auth=("root", ADMIN_PW), timeout=15, **kw)


@pytest.fixture
def stack(nginx_factory, zmqctl, redis_store, tmp_path, rabbitmq):
    def make(extra_defs=(), workers=1):
        live = Live(nginx_factory, zmqctl, redis_store, tmp_path, LOCATIONS,
                    workers=workers)
        v = live.write(base_config(rabbitmq, extra_defs))
        live.start()
        live.wait_version(v)
        live.wait_ready()
        return Stack(live, rabbitmq)
    return make


class Browser:
    """One headless Chromium with helpers for the web-admin's pages."""

    def __init__(self, driver, downloads):
        from selenium.webdriver.support.ui import WebDriverWait
        self.d = driver
        self.downloads = downloads
        self.wait = WebDriverWait(driver, 20)

    # --- finding things
    def el(self, css):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        return self.wait.until(EC.visibility_of_element_located(
            (By.CSS_SELECTOR, css)))

    def els(self, css):
        from selenium.webdriver.common.by import By
        return self.d.find_elements(By.CSS_SELECTOR, css)

    def gone(self, css):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        self.wait.until(EC.invisibility_of_element_located(
            (By.CSS_SELECTOR, css)))

    def text_in(self, css, text, timeout=20):
        """Waits until the element's text contains text; returns it."""
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            for e in self.els(css):
                try:
                    seen = e.text
                except Exception:
                    continue
                if text in seen:
                    return seen
            time.sleep(0.1)
        raise AssertionError("%s: %r not in %r" % (css, text, seen))

    def field(self, path):
        """The input of a form field by its model path (e.g. port,
        retry.attempts)."""
        return self.el('[data-path="%s"] input, [data-path="%s"] select, '
                       '[data-path="%s"] textarea' % (path, path, path))

    def field_error(self, path):
        return self.el('[data-path="%s"] > .field-error' % path)

    def label_for(self, input_el):
        """Every input has a <label for=id>."""
        from selenium.webdriver.common.by import By
        i = input_el.get_attribute("id")
        assert i, input_el.get_attribute("outerHTML")
        return self.d.find_element(By.CSS_SELECTOR, 'label[for="%s"]' % i)

    def fill(self, path, value):
        from selenium.webdriver.support.ui import Select
        e = self.field(path)
        if e.tag_name == "select":
            Select(e).select_by_value(str(value))
        elif e.get_attribute("type") == "checkbox":
            if e.is_selected() != bool(value):
                e.click()
        else:
            e.clear()
            e.send_keys(str(value))
        return e

    # --- pages
    def open(self, url):
        self.d.get(url)

    def go(self, hash_):
        self.d.execute_script("window.location.hash = arguments[0]", hash_)

    def sign_in(self, url, user, password, expect_ok=True):
        from selenium.webdriver.support.ui import Select
        self.open(url)
        Select(self.el("#signin-method")).select_by_value("basic")
        u = self.el("#signin-username")
        u.clear()
        u.send_keys(user)
        p = self.el("#signin-password")
        p.clear()
        p.send_keys(password)
        self.el("#signin-submit").click()
        if expect_ok:
            self.el("#signout")
            self.text_in("#page-title", "Status")

    def shot(self, name):
        os.makedirs(SCREENSHOTS, exist_ok=True)
        path = os.path.join(SCREENSHOTS, name + ".png")
        self.d.save_screenshot(path)
        return path

    def js_errors(self):
        """Severe console entries (script errors, CSP violations)."""
        try:
            logs = self.d.get_log("browser")
        except Exception:
            return []
        return [l for l in logs if l.get("level") == "SEVERE"
                and "favicon" not in l.get("message", "")
                and "status of 4" not in l.get("message", "")
                and "status of 5" not in l.get("message", "")]


@pytest.fixture
def browser(tmp_path):
    """browser(width=1280, height=900) -> Browser; every one is quit at the
    end of the test, and none may have logged a script error."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("headless Chromium is needed: apt-get install chromium "
                    "chromium-driver (make deps-test)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("Selenium is needed: apt-get install python3-selenium "
                    "(make deps-test)")
    made = []
    profiles = []

    def make(width=1280, height=900):
        # the profile (where Chromium keeps sessionStorage, which holds the
        # sign-in) lives outside the test's directory, and is removed
        profile = tempfile.mkdtemp(prefix="zmq-chromium.")
        profiles.append(profile)
        downloads = tmp_path / ("downloads%d" % len(made))
        downloads.mkdir()
        o = webdriver.ChromeOptions()
        o.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-extensions", "--password-store=basic",
                  "--user-data-dir=" + profile,
                  "--window-size=%d,%d" % (width, height)):
            o.add_argument(a)
        o.add_experimental_option("prefs", {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "credentials_enable_service": False,
            "profile.password_manager_enabled": False})
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)
        d.execute_cdp_cmd("Page.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": str(downloads)})
        if width < 500:
            # a desktop window is at least 500 px wide: a phone is emulated
            d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1,
                "mobile": True})
        b = Browser(d, str(downloads))
        made.append(b)
        return b

    yield make

    errors = []
    for b in made:
        errors.extend(b.js_errors())
        try:
            b.d.quit()
        except Exception:
            pass
    for p in profiles:
        shutil.rmtree(p, ignore_errors=True)
    assert not errors, "browser console errors:\n%s" % "\n".join(
        str(e) for e in errors)
