"""The web-admin (issue 13) in a real headless Chromium against the real
stack: NGINX with the module following Redis, RabbitMQ (read with pika),
the UI's static files served by NGINX next to the admin API. Each scenario
saves a screenshot under build/screenshots/."""

import json
import os
import time

import pytest
import requests

from web_helpers import (ADMIN_PW, VIEW_PW, Browser, Stack,  # noqa: F401
                         browser, stack)


def test_sign_in_and_a_wrong_password_is_refused(stack, browser):
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", "not-the-password", expect_ok=False)
    assert "refused" in b.text_in("#signin-error", "refused")
    assert not b.els("#signout")
    b.shot("signin-refused")

    b.sign_in(s.ui, "root", ADMIN_PW)
    assert b.el("#role").text == "admin"
    # the dashboard: the outgoing connection of the running configuration
    b.text_in('tr[data-outconn="out"] .state', "ready")
    b.shot("status")
    # every input of the page has a label
    for e in b.els("input, select, textarea"):
        if e.is_displayed():
            b.label_for(e)

    # sign out forgets the credentials
    b.el("#signout").click()
    b.el("#signin-username")
    assert b.d.execute_script("return sessionStorage.length") == 0


def wait_outconn(s, name, state="ready", timeout=30):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = [w["outconns"].get(name, {}).get("state")
                for w in s.live.status()["workers"]]
        if seen and all(x == state for x in seen):
            return
        time.sleep(0.1)
    raise AssertionError("%s is %s, not %s" % (name, seen, state))


def save(b):
    b.el("#save").click()


def test_a_new_definition_is_unusable_until_its_password_is_changed(
        stack, browser):
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/amqp_def")
    b.el("#create").click()
    # the form follows the model: defaults shown, enums, booleans
    assert b.field("port").get_attribute("value") == "5672"
    assert b.field("vhost").get_attribute("value") == "/"
    assert b.field("tls").get_attribute("type") == "checkbox"
    b.fill("name", "crm")
    b.fill("host", "127.0.0.1")
    b.fill("port", s.rabbitmq.port)
    b.fill("username", "guest")
    b.shot("amqp_def-create")
    save(b)
    b.text_in("#flash", "Created amqp_def 'crm'")
    # created without a password: a random, unusable one
    assert s.api("GET", "amqp_def/crm").json()["password"] == {"$set": True}

    b.el("#object-actions button.ping").click()
    err = b.text_in("#result", "failed")
    assert "ACCESS_REFUSED" in err or "refused" in err.lower(), err
    b.shot("amqp_def-ping-fails")

    b.el("#object-actions button.passwd").click()
    b.el("#pw1").send_keys("guest")
    b.el("#pw2").send_keys("guset")
    b.el("#pw-submit").click()
    assert "differ" in b.text_in("#pw-error", "differ")
    b.el("#pw2").clear()
    b.el("#pw2").send_keys("guest")
    b.el("#pw-submit").click()
    b.text_in("#result", "password of crm was changed")

    b.el("#object-actions button.ping").click()
    ok = b.text_in("#result", "OK in")
    assert "RabbitMQ" in ok, ok
    b.d.execute_script("document.getElementById('result')"
                       ".scrollIntoView({block: 'end'})")
    b.shot("amqp_def-ping-ok")

    b.go("#/amqp_def?q=r")
    b.text_in('tr[data-name="crm"]', str(s.rabbitmq.port))
    b.text_in('tr[data-name="rabbit"]', str(s.rabbitmq.port))
    b.shot("amqp_def-list")


def test_send_a_message_on_a_new_outgoing_connection(stack, browser,
                                                      queue):
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/amqp_outconn/new")
    b.fill("name", "web-out")
    b.fill("def", "rabbit")
    b.fill("app_id", "web-admin")
    save(b)
    b.text_in("#flash", "Created amqp_outconn 'web-out'")
    wait_outconn(s, "web-out")

    b.go("#/amqp_outconn")
    b.el('tr[data-name="web-out"] a.send').click()
    b.el("#send-exchange")
    b.el("#send-routing_key").send_keys(queue.name)
    from selenium.webdriver.support.ui import Select
    Select(b.el("#send-delivery_mode")).select_by_value("2")
    b.el("#send-priority").send_keys("5")
    b.el("#send-expiration").send_keys("60000")
    b.el("#send-correlation_id").send_keys("corr-1")
    b.el("#send-reply_to").send_keys("replies")
    b.el("#send-message_id").send_keys("web-m-1")
    b.el("#send-content_type").send_keys("application/json")
    b.el("#send-headers").send_keys('{"tenant": "acme", "attempt": 2}')
    b.el("#send-body").send_keys('{"order": 42}')
    b.el("#send").click()
    assert b.text_in("#send-result", "Confirmed")
    assert b.el("#sent-id").text == "web-m-1"
    b.d.execute_script("document.getElementById('send-result')"
                       ".scrollIntoView({block: 'end'})")
    b.shot("send")

    [(m, props, body)] = queue.drain(1)
    assert body == b'{"order": 42}'
    assert props.message_id == "web-m-1"
    assert props.correlation_id == "corr-1"
    assert props.reply_to == "replies"
    assert props.delivery_mode == 2 and props.priority == 5
    assert props.expiration == "60000"
    assert props.content_type == "application/json"
    assert props.app_id == "web-admin"
    assert props.headers["tenant"] == "acme"
    assert props.headers["attempt"] == 2
    assert props.headers["x-zmq-auth"] == "admins:root"

    # an error is shown as such: a bad header name
    b.el("#send-headers").clear()
    b.el("#send-headers").send_keys('{"x-forged": "1"}')
    b.el("#send").click()
    assert "Not sent" in b.text_in("#send-error", "headers")


def test_a_rest_channel_made_in_the_browser_publishes(stack, browser,
                                                      queue):
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/service/new")
    # the kind selects the fields: an http service has a method, no
    # routing key
    b.fill("kind", "http")
    assert b.field("method").tag_name == "select"
    assert not b.els('[data-path="routing_key"]')
    b.fill("kind", "publish")
    b.fill("name", "orders.publish")
    b.fill("outconn", "out")
    b.fill("routing_key", queue.name)
    save(b)
    b.text_in("#flash", "Created service 'orders.publish'")

    b.go("#/rest_channel/new")
    b.fill("name", "orders")
    b.fill("url_path", "/api/web/orders")
    b.fill("method", "POST")
    b.fill("service", "orders.publish")
    b.fill("data_format", "json")
    save(b)
    b.text_in("#flash", "Created rest_channel 'orders'")
    b.go("#/rest_channel")
    b.text_in('tr[data-name="orders"]', "/api/web/orders")
    b.shot("rest_channel-list")

    r = requests.post(s.url + "/api/web/orders", json={"id": 7},
                      headers={"X-Message-Id": "rest-1"}, timeout=15)
    assert r.status_code == 202, r.text
    [(m, props, body)] = queue.drain(1)
    assert json.loads(body) == {"id": 7}
    assert props.message_id == "rest-1"


def test_an_invalid_form_shows_each_error_next_to_its_field(stack,
                                                            browser):
    s = stack()
    v0 = s.version()
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/amqp_def/new")
    b.fill("name", "bad")
    b.fill("port", "99999")
    b.fill("heartbeat", "often")
    save(b)
    assert "out of range" in b.field_error("port").text
    assert "integer" in b.field_error("heartbeat").text
    assert b.field("port").get_attribute("aria-invalid") == "true"
    assert "nothing was written" in b.el("#form-errors").text
    b.shot("form-errors")
    assert s.version() == v0

    # nested fields: an AMQP channel's retry policy and dead letter
    b.go("#/amqp_channel/new")
    b.fill("name", "ch")
    b.fill("def", "rabbit")
    b.fill("queue", "q")
    b.fill("service", "svc")
    b.fill("retry.attempts", "-1")
    b.fill("dead_letter.exchange", "dlx")
    save(b)
    assert "out of range" in b.field_error("retry.attempts").text
    assert "routing_key" in b.field_error("dead_letter.routing_key").text
    assert s.version() == v0


def test_a_viewer_sees_everything_and_cannot_save(stack, browser):
    s = stack()
    b = browser()
    b.sign_in(s.view_ui, "ops", VIEW_PW)
    assert "viewer" in b.el("#role").text
    b.go("#/amqp_def")
    b.text_in('tr[data-name="rabbit"]', "127.0.0.1")
    assert not b.els("#create")
    assert not b.els("button.delete") and not b.els("button.ping")
    b.el('tr[data-name="rabbit"] a').click()
    b.el("#readonly-note")
    assert not b.els("#save")
    assert not b.field("port").is_enabled()
    b.shot("viewer")
    # the security definitions are readable too, secrets never shown
    b.go("#/security/edit/admins")
    b.el("#readonly-note")
    assert b.field("password").get_attribute("value") == ""
    b.go("#/import")
    assert not b.el("#import-check").is_enabled()


def test_two_sessions_editing_one_object_the_second_sees_the_conflict(
        stack, browser):
    s = stack()
    r = s.api("POST", "amqp_def", json={"name": "shared", "host": "mq1"})
    assert r.status_code == 201, r.text
    a = browser()
    c = browser()
    for x in (a, c):
        x.sign_in(s.ui, "root", ADMIN_PW)
        x.go("#/amqp_def/edit/shared")
        x.field("heartbeat")
    a.fill("heartbeat", "15")
    save(a)
    a.text_in("#flash", "Saved amqp_def 'shared'")

    c.fill("port", "5999")
    save(c)
    text = c.text_in("#conflict", "someone else")
    assert "changed" in text
    c.shot("conflict")
    assert s.api("GET", "amqp_def/shared").json()["port"] == 5672
    c.el("#reload").click()
    c.gone("#conflict")
    deadline = time.monotonic() + 10
    while c.field("heartbeat").get_attribute("value") != "15":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    c.fill("port", "5999")
    save(c)
    c.text_in("#flash", "Saved amqp_def 'shared'")
    got = s.api("GET", "amqp_def/shared").json()
    assert got["port"] == 5999 and got["heartbeat"] == 15


def test_delete_shows_referrers_and_offers_cascade(stack, browser):
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/amqp_def")
    b.el('tr[data-name="rabbit"] button.delete').click()
    b.el("#confirm-delete").click()
    b.text_in("#referrers", "amqp_outconn 'out'")
    b.shot("delete-referrers")
    assert s.api("GET", "amqp_def/rabbit").status_code == 200
    b.el("#confirm-delete").click()
    b.text_in("#flash", "Deleted")
    for path in ("amqp_def/rabbit", "amqp_outconn/out", "service/svc"):
        assert s.api("GET", path).status_code == 404, path


def test_api_keys_are_shown_once_and_revoked(stack, browser):
    s = stack()
    r = s.api("POST", "security", json={"name": "partners",
                                        "type": "apikey"})
    assert r.status_code == 201, r.text
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/security")
    b.el('tr[data-name="partners"] a.keys').click()
    b.el("#key-id").send_keys("ci")
    b.el("#create-key").click()
    key = b.el("#key-value").get_attribute("value")
    from conftest import register_secret
    register_secret(key)
    assert len(key) >= 40
    assert "only this once" in b.el("#new-key").text
    assert s.api("GET", "security/partners").json()["keys"] == [{"id": "ci"}]
    # saving the definition's form keeps its keys
    b.go("#/security/edit/partners")
    b.fill("header", "X-Partner-Key")
    save(b)
    b.text_in("#flash", "Saved security 'partners'")
    got = s.api("GET", "security/partners").json()
    assert got["keys"] == [{"id": "ci"}] and got["header"] == "X-Partner-Key"
    b.go("#/security")
    b.go("#/security/edit/partners")
    b.el('#key-list li[data-id="ci"] button.revoke').click()
    b.el("#confirm-revoke").click()
    b.text_in("#flash", "revoked")
    assert s.api("GET", "security/partners").json().get("keys", []) == []


def test_export_then_import(stack, browser, tmp_path):
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/import")
    b.el("#export").click()
    deadline = time.monotonic() + 15
    files = []
    while not files:
        files = [f for f in os.listdir(b.downloads) if f.endswith(".json")]
        assert time.monotonic() < deadline, os.listdir(b.downloads)
        time.sleep(0.1)
    with open(os.path.join(b.downloads, files[0])) as f:
        doc = json.load(f)
    assert [d["name"] for d in doc["amqp_def"]] == ["rabbit"]
    v0 = s.version()

    # an invalid document: every error shown, nothing changes
    bad = json.loads(json.dumps(doc))
    bad["amqp_def"][0]["port"] = 0
    bad["amqp_def"].append({"name": "two", "bogus": True})
    bad["service"].append({"name": "lost", "kind": "publish",
                           "outconn": "nowhere"})
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    b.el("#import-file").send_keys(str(p))
    b.el("#import-check").click()
    b.text_in("#import-error", "refused")
    errors = b.el("#import-errors").text
    assert "port" in errors and "bogus" in errors and "nowhere" in errors
    assert not b.els("#import-apply")[0].is_displayed()
    b.shot("import-errors")
    assert s.version() == v0

    good = json.loads(json.dumps(doc))
    good["amqp_def"].append({"name": "imported", "host": "mq.example"})
    p = tmp_path / "good.json"
    p.write_text(json.dumps(good))
    b.el("#import-file").clear()
    b.el("#import-file").send_keys(str(p))
    b.el("#import-check").click()
    assert "1 change" in b.text_in("#import-checked", "Valid")
    assert s.version() == v0
    b.el("#import-apply").click()
    b.text_in("#import-done", "Imported")
    assert s.api("GET", "amqp_def/imported").json()["host"] == "mq.example"
    b.shot("import-done")


def test_the_dashboard_shows_a_connection_going_to_backoff(stack, browser):
    from fake_amqp import FakeAmqp
    fake = FakeAmqp()
    try:
        s = stack()
        r = s.api("POST", "import", data=json.dumps({
            "amqp_def": [{"name": "fake", "host": "127.0.0.1",
                          "port": fake.port, "username": "guest",
                          "password": "guest"}],
            "amqp_outconn": [{"name": "fake-out", "def": "fake"}]}))
        assert r.status_code == 200, r.text
        b = browser()
        b.sign_in(s.ui, "root", ADMIN_PW)
        b.text_in('tr[data-outconn="fake-out"] .state', "ready")
        b.shot("status-ready")
        fake.close()
        # the page refreshes by itself
        b.text_in('tr[data-outconn="fake-out"] .state', "backoff",
                  timeout=30)
        b.shot("status-backoff")
    finally:
        fake.close()


def test_phone_width_is_readable(stack, browser):
    s = stack()
    b = browser(width=390, height=844)
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/amqp_def")
    b.text_in('tr[data-name="rabbit"]', "127.0.0.1")
    # nothing wider than the screen
    wide = b.d.execute_script(
        "return Array.from(document.querySelectorAll('*')).filter("
        "e => e.getBoundingClientRect().right > 391).map(e => e.tagName"
        " + '#' + e.id + '.' + e.className + ' ' + "
        "e.getBoundingClientRect().right)")
    assert not wide
    b.shot("phone-list")
    b.go("#/amqp_def/edit/rabbit")
    b.field("port")
    assert b.d.execute_script(
        "return document.documentElement.scrollWidth") <= 390
    b.shot("phone-edit")


def test_the_keyboard_reaches_the_menu_and_the_forms(stack, browser):
    from selenium.webdriver.common.keys import Keys
    s = stack()
    b = browser()
    b.open(s.ui)
    # sign in with the keyboard only
    b.el("#signin-username").send_keys("root", Keys.TAB)
    active = b.d.switch_to.active_element
    assert active.get_attribute("id") == "signin-password"
    active.send_keys(ADMIN_PW, Keys.ENTER)
    b.el("#signout")
    # on a fresh page Tab reaches the skip link first, then the menu
    from selenium.webdriver.common.action_chains import ActionChains
    b.d.refresh()
    b.el("#signout")
    ActionChains(b.d).send_keys(Keys.TAB).perform()
    assert b.d.switch_to.active_element.get_attribute("class") == "skip"
    for _ in range(20):
        ActionChains(b.d).send_keys(Keys.TAB).perform()
        if b.d.switch_to.active_element.get_attribute("data-href") \
                == "#/amqp_def":
            break
    else:
        raise AssertionError("Tab never reached the AMQP definitions")
    ActionChains(b.d).send_keys(Keys.ENTER).perform()
    b.text_in("#page-title", "AMQP connection definitions")
    # the new page's title has the focus; Tab goes on into the page
    assert b.d.switch_to.active_element.get_attribute("id") == "page-title"
    b.el('tr[data-name="rabbit"]')
    for _ in range(10):
        ActionChains(b.d).send_keys(Keys.TAB).perform()
        if b.d.switch_to.active_element.get_attribute("id") == "create":
            break
    else:
        raise AssertionError("Tab never reached Create")
    ActionChains(b.d).send_keys(Keys.ENTER).perform()
    b.field("name")
