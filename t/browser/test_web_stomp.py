"""The web-admin's pages for the STOMP kinds (issue 16) in a real headless
Chromium: the menu reaches them, the forms follow the OpenAPI schemas (a
STOMP definition's defaults, its passcode as a secret that the password
dialog changes, references offered from the names), and a publish service
names a STOMP outgoing connection and a destination instead of an AMQP
one; a STOMP definition has a Ping button, an outgoing STOMP
connection a send page."""

from conftest import register_secret
from web_helpers import ADMIN_PW, stack, browser  # noqa: F401

PASSCODE = "web-stomp-Passc0de-5182"
NEW_PASSCODE = "web-stomp-Passc0de-new-2291"


def save(b):
    b.el("#save").click()


def test_stomp_definition_outconn_channel_and_publish_service(stack,
                                                               browser):
    for p in (PASSCODE, NEW_PASSCODE):
        register_secret(p)
    s = stack()
    b = browser()
    b.sign_in(s.ui, "root", ADMIN_PW)

    # the menu: a STOMP entry under definitions, outgoing and channels
    for kind in ("stomp_def", "stomp_outconn", "stomp_channel"):
        assert b.els('nav a[href="#/%s"]' % kind), kind

    b.go("#/stomp_def")
    b.text_in("#page-title", "STOMP connection definitions")
    b.el("#create").click()
    assert b.field("port").get_attribute("value") == "61613"
    assert b.field("heartbeat").get_attribute("value") == "10"
    assert b.field("use_jms").get_attribute("type") == "checkbox"
    assert b.field("passcode").get_attribute("type") == "password"
    b.fill("name", "amq")
    b.fill("login", "admin")
    b.fill("passcode", PASSCODE)
    b.shot("stomp_def-create")
    save(b)
    b.text_in("#flash", "Created stomp_def 'amq'")
    got = s.api("GET", "stomp_def/amq").json()
    assert got["passcode"] == {"$set": True} and got["login"] == "admin"
    sealed = s.live.redis.client().get("zmq:obj:stomp_def:amq")
    assert PASSCODE.encode() not in sealed

    # ping (no broker on 127.0.0.1:61613: it says why); the passcode
    b.el("#object-actions button.ping").click()
    b.text_in("#result", "Ping amq failed")
    b.el("#object-actions button.passwd").click()
    b.el("#pw1").send_keys(NEW_PASSCODE)
    b.el("#pw2").send_keys(NEW_PASSCODE)
    b.el("#pw-submit").click()
    b.text_in("#result", "password of amq was changed")
    assert s.live.redis.client().get("zmq:obj:stomp_def:amq") != sealed

    b.go("#/stomp_outconn/new")
    b.fill("name", "amq.out")
    b.fill("def", "amq")
    assert b.field("persistent").is_selected()
    save(b)
    b.text_in("#flash", "Created stomp_outconn 'amq.out'")

    # its send page: a destination, no exchange; no broker: not sent
    b.go("#/stomp_outconn/send/amq.out")
    b.text_in("#page-title", "Send a message")
    assert not b.els("#send-exchange") and not b.els("#send-mandatory")
    b.el("#send-destination").send_keys("/queue/orders")
    b.el("#send-body").send_keys("hello")
    b.el("#send").click()
    b.text_in("#send-result", "Not sent: ")

    b.go("#/service/new")
    b.fill("kind", "publish")
    b.fill("name", "spub")
    b.fill("stomp_outconn", "amq.out")
    b.fill("destination", "/queue/orders")
    save(b)
    b.text_in("#flash", "Created service 'spub'")
    got = s.api("GET", "service/spub").json()
    assert got["stomp_outconn"] == "amq.out" and "outconn" not in got
    assert "exchange" not in got and "routing_key" not in got

    b.go("#/stomp_channel/new")
    b.fill("name", "orders")
    b.fill("def", "amq")
    b.fill("destination", "/queue/orders")
    b.fill("service", "svc")
    assert b.field("prefetch").get_attribute("value") == "10"
    save(b)
    b.text_in("#flash", "Created stomp_channel 'orders'")
    b.go("#/stomp_channel")
    b.text_in('tr[data-name="orders"]', "/queue/orders")
    b.shot("stomp_channel-list")
    assert not b.js_errors()
