"""The web-admin under attack and in careful hands: crafted URLs, HTML in
what the API returns, credentials forgotten on sign-out and on a 401
mid-session, forms that send exactly what was entered (secrets never
prefilled, {"$set": true} kept for untouched ones) and writes on an object's
own page (API keys) that never overwrite anyone silently. Real Chromium
against the real stack (web_helpers)."""

import json
import time

import pytest
import requests

from conftest import register_secret
from web_helpers import (ADMIN_PW, Browser, Stack, browser,  # noqa: F401
                         stack)

RECORD = """
window.__sent = [];
var f = window.fetch;
window.fetch = function (u, i) {
    window.__sent.push({url: String(u), method: i && i.method,
                        body: i && i.body, headers: i && i.headers});
    return f.apply(this, arguments);
};
"""


def record(b):
    """Records every request the page makes from now on (window.__sent)."""
    b.d.execute_script(RECORD)


def sent(b):
    return b.d.execute_script("return window.__sent")


def save(b):
    b.el("#save").click()


def not_found(b):
    b.text_in("#page-title", "Not found")
    assert not b.els("#object-form")


def test_crafted_page_urls_are_no_page(stack, browser):
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    # a malformed %-escape: no page, and no script error (the fixture
    # fails on any)
    b.go("#/amqp_def/edit/50%")
    not_found(b)
    b.go("#/status")
    b.text_in("#page-title", "Status")
    # a name with '/' and '..' would be another API path once NGINX decoded
    # it (GET security/admins shown as an amqp_def, Delete deleting it)
    record(b)
    for h in ("#/amqp_def/edit/x%2F..%2F..%2Fsecurity%2Fadmins",
              "#/amqp_def/edit/..",
              "#/amqp_outconn/send/x%2F..%2F..%2Fsecurity%2Fadmins",
              "#/amqp_def/edit/a%3Fb%23c",
              "#/amqp_def/edit/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"):
        b.go("#/status")
        b.text_in("#page-title", "Status")
        b.go(h)
        not_found(b)
        assert not b.els("#main img"), h
    assert not [x for x in sent(b) if "security" in x["url"]], sent(b)
    # every character the model allows in a name round-trips
    name = "a.b_c:d-e@f"
    r = s.api("POST", "amqp_def?wait=1", json={"name": name, "host": "mq1"})
    assert r.status_code == 201, r.text
    b.go("#/amqp_def")
    b.el('tr[data-name="%s"] th a' % name).click()
    b.text_in("#page-title", "'%s'" % name)
    b.fill("heartbeat", "17")
    save(b)
    b.text_in("#flash", "Saved amqp_def '%s'" % name)
    assert s.api("GET", "amqp_def/" + name).json()["heartbeat"] == 17


def test_html_from_the_api_is_text(stack, browser):
    s = stack()
    evil = '"><img/src=x/onerror=window.__xss=1>'
    # a value, the broker's ping error (NOT_ALLOWED - vhost ... not found)
    # and a validation error carry the markup
    r = s.api("POST", "amqp_def?wait=1", json={
        "name": "evil", "host": "127.0.0.1", "port": s.rabbitmq.port,
        "vhost": evil, "username": "guest", "password": "guest"})
    assert r.status_code == 201, r.text
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/amqp_def")
    b.text_in('tr[data-name="evil"]', "<img")
    b.el('tr[data-name="evil"] button.ping').click()
    b.text_in("#result", "failed")
    b.go("#/amqp_def/edit/evil")
    assert b.field("vhost").get_attribute("value") == evil
    b.fill("port", evil)
    save(b)
    b.el("#form-errors")
    assert b.d.execute_script("return window.__xss") is None
    assert not b.els("main img, #flash img, dialog img")


def test_sign_out_and_a_401_forget_what_the_session_showed(stack, browser):
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    # the outgoing connection's form suggests the definitions' names
    b.go("#/amqp_outconn/edit/out")
    b.field("def")
    deadline = time.monotonic() + 10
    while not b.d.execute_script(
            "return document.querySelectorAll('datalist option').length"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    b.el("#signout").click()
    b.el("#signin-username")
    assert b.d.execute_script(
        "return document.querySelectorAll('datalist, dialog').length") == 0
    assert b.d.execute_script("return sessionStorage.length") == 0

    # the password expires while a dialog holds a typed password
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/amqp_def")
    b.el('tr[data-name="rabbit"] button.passwd').click()
    b.el("#pw1").send_keys("typed-in-Dialog-1")
    b.el("#pw2").send_keys("typed-in-Dialog-1")
    register_secret("typed-in-Dialog-1")
    new = "web-Admin-Rotated-5521"
    register_secret(new)
    r = s.api("POST", "security/admins/password?wait=1",
              json={"password1": new, "password2": new})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while requests.get(s.url + "/zmq/admin/api/whoami",
                       auth=("root", ADMIN_PW), timeout=5).status_code != 401:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    b.el("#pw-submit").click()
    assert "sign in again" in b.text_in("#signin-error", "sign in again")
    assert b.d.execute_script(
        "return document.querySelectorAll('dialog, datalist').length") == 0
    assert not b.els("#pw1")
    assert b.d.execute_script("return sessionStorage.length") == 0
    b.shot("attack-401-signed-out")


def test_a_type_switch_keeps_the_typed_password(stack, browser):
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/security/new")
    b.fill("type", "basic_auth")
    b.fill("name", "partner")
    b.fill("username", "alice")
    pw = "Typed-Before-Switch-9"
    register_secret(pw)
    b.fill("password", pw)
    b.fill("type", "jwt")
    b.field("secret")
    b.fill("type", "basic_auth")
    # the user's own typing, not a stored secret: neither lost nor shown
    # as "set" (which would send {"$set": true} for a new object)
    p = b.field("password")
    assert "set:" not in (p.get_attribute("placeholder") or "")
    assert p.get_attribute("value") == pw
    record(b)
    save(b)
    b.text_in("#flash", "Created security 'partner'")
    posts = [json.loads(x["body"]) for x in sent(b)
             if x["method"] == "POST" and x["body"]]
    assert posts and posts[0]["password"] == pw, posts


def test_an_emptied_field_is_sent_empty(stack, browser):
    s = stack()
    # an empty app_id (no app id on messages) is a value; the default is
    # ngx_zmq: saving the form must not bring it back
    r = s.api("PATCH", "amqp_outconn/out?wait=1", json={"app_id": ""})
    assert r.status_code == 200, r.text
    assert s.api("GET", "amqp_outconn/out").json()["app_id"] == ""
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/amqp_outconn/edit/out")
    assert b.field("app_id").get_attribute("value") == ""
    save(b)
    b.text_in("#flash", "nothing changed")
    assert s.api("GET", "amqp_outconn/out").json()["app_id"] == ""
    # and a user who empties it gets it empty
    s.api("PATCH", "amqp_outconn/out?wait=1", json={"app_id": None})
    b.go("#/amqp_outconn")
    b.go("#/amqp_outconn/edit/out")
    b.text_in('[data-path="app_id"] .hint', "ngx_zmq")
    assert b.field("app_id").get_attribute("value") == "ngx_zmq"
    b.fill("app_id", "")
    save(b)
    b.text_in("#flash", "Saved amqp_outconn 'out'")
    assert s.api("GET", "amqp_outconn/out").json()["app_id"] == ""


def test_keys_made_on_the_form_page_survive_its_save(stack, browser):
    s = stack()
    r = s.api("POST", "security?wait=1", json={"name": "partners",
                                        "type": "apikey"})
    assert r.status_code == 201, r.text
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/security/edit/partners")
    # an unsaved edit, then a key made on the same page: the user's own
    # write is no conflict, and the save keeps the key
    b.fill("header", "X-Partner-Key")
    b.el("#key-id").send_keys("ci")
    b.el("#create-key").click()
    register_secret(b.el("#key-value").get_attribute("value"))
    save(b)
    b.text_in("#flash", "Saved security 'partners'")
    got = s.api("GET", "security/partners").json()
    assert got["keys"] == [{"id": "ci"}] and got["header"] == "X-Partner-Key"

    # a revoke keeps what was typed in the form, and the save does not
    # bring the key back
    b.fill("header", "X-Mine")
    b.el('#key-list li[data-id="ci"] button.revoke').click()
    b.el("#confirm-revoke").click()
    b.text_in("#flash", "revoked")
    assert b.field("header").get_attribute("value") == "X-Mine"
    save(b)
    b.text_in("#flash", "Saved security 'partners'")
    got = s.api("GET", "security/partners").json()
    assert got.get("keys", []) == [] and got["header"] == "X-Mine"

    # someone else's change before my key: Save still reports it, and
    # "save mine over theirs" keeps my key
    b.go("#/security")
    b.go("#/security/edit/partners")
    b.field("header")
    r = s.api("PATCH", "security/partners?wait=1",
              json={"header": "X-Theirs"})
    assert r.status_code == 200, r.text
    b.el("#key-id").send_keys("k2")
    b.el("#create-key").click()
    register_secret(b.el("#key-value").get_attribute("value"))
    b.text_in("#key-list", "k2")
    b.fill("header", "X-Mine-Again")
    save(b)
    b.text_in("#conflict", "someone else")
    assert s.api("GET", "security/partners").json()["header"] == "X-Theirs"
    b.el("#overwrite").click()
    b.text_in("#flash", "Saved security 'partners'")
    got = s.api("GET", "security/partners").json()
    assert got["keys"] == [{"id": "k2"}] and got["header"] == "X-Mine-Again"


def test_numbers_are_sent_as_typed(stack, browser):
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    # Number() reads 0x1e as 30 and Infinity as a number JSON sends as
    # null (the field's default): the server must see what was typed
    for typed in ("0x1e", "Infinity"):
        b.go("#/amqp_def")
        b.go("#/amqp_def/edit/rabbit")
        b.fill("heartbeat", typed)
        save(b)
        b.el("#form-errors")
        assert s.api("GET", "amqp_def/rabbit").json()["heartbeat"] == 10


def test_delete_from_the_form_is_of_the_version_shown(stack, browser):
    s = stack()
    r = s.api("POST", "amqp_def?wait=1",
              json={"name": "shared", "host": "mq1"})
    assert r.status_code == 201, r.text
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)
    b.go("#/amqp_def/edit/shared")
    b.field("host")
    r = s.api("PATCH", "amqp_def/shared?wait=1", json={"host": "mq2"})
    assert r.status_code == 200, r.text
    b.el("#object-actions button.delete").click()
    b.el("#confirm-delete").click()
    b.text_in("#delete-conflict", "someone else changed")
    assert s.api("GET", "amqp_def/shared").status_code == 200
    # reloaded, it is deleted
    b.d.refresh()
    b.field("host")
    assert b.field("host").get_attribute("value") == "mq2"
    b.el("#object-actions button.delete").click()
    b.el("#confirm-delete").click()
    b.text_in("#flash", "Deleted")
    assert s.api("GET", "amqp_def/shared").status_code == 404


CSRF = """<!DOCTYPE html><form method="POST" enctype="text/plain"
action="%s/zmq/admin/api/amqp_def"><input type="hidden"
name='{"name":"csrf","host":"mq9","vhost":"/x' value='y"}'></form>
<script>document.forms[0].submit()</script>"""


@pytest.mark.xfail(strict=True, reason=(
    "the admin API takes a cross-site text/plain form post carrying the "
    "browser's cached Basic credentials (CSRF); needs a check in "
    "ngx_zmq_module (JSON Content-Type, or refuse Sec-Fetch-Site "
    "cross-site / a foreign Origin), not fixable in web/"))
def test_a_cross_site_form_with_cached_basic_credentials(stack, browser,
                                                         tmp_path):
    """No cookie, but a browser that once answered the API's Basic
    challenge (its own password dialog, outside the web-admin) keeps the
    credentials and sends them with any site's form post: here it creates
    an amqp_def (PUT/PATCH/DELETE cannot be sent by a form; POST can: create,
    import, password, keys, ping, send, invoke)."""
    s = stack()
    b = browser()
    host = s.url.split("//", 1)[1]
    b.open("http://root:%s@%s/zmq/admin/api/whoami" % (ADMIN_PW, host))
    assert "admin" in b.d.page_source
    page = tmp_path / "evil.html"
    page.write_text(CSRF % s.url)
    b.open("file://" + str(page))
    time.sleep(2)
    assert s.api("GET", "amqp_def/csrf").status_code == 404
