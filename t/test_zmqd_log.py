"""zmqd's log cannot be forged through a message: control bytes in a
logged value (a message_id with CR/LF) are written escaped."""

from test_zmqd import config, http_endpoint, publish  # noqa: F401
from zmqd_helpers import zmqd  # noqa: F401

FORGED = "2026-01-01T00:00:00Z zmqd[1] error: forged"


def test_a_message_id_with_cr_lf_cannot_forge_a_log_line(
        rabbitmq, queue, zmqd, http_endpoint):
    url = "http://127.0.0.1:%d" % http_endpoint.server_address[1]
    http_endpoint.status = lambda body: 500
    dead = queue.name + ".dead"
    try:
        z = zmqd(config(rabbitmq.port,
                        [{"name": "in", "queue": queue.name,
                          "service": "hook"}],
                        [{"name": "hook", "kind": "http", "outconn": "web"}],
                        {"http_outconn": [{"name": "web", "url": url}]}))
        z.wait_log("consuming queue")
        publish(rabbitmq, queue.name, [b"x"],
                message_id="evil\r\n" + FORGED + "\x1b[2J")
        z.wait_log("dead-lettered after")
        lines = z.text().splitlines()
        assert not [line for line in lines if line.startswith(FORGED)], z.text()
        assert "message 'evil\\x0d\\x0a" + FORGED + "\\x1b[2J' dead-lettered" \
            in z.text()
        assert "\x1b" not in z.text() and "\r" not in z.text()
    finally:
        queue.channel.queue_delete(dead)
