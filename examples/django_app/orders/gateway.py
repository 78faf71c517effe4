"""The gateway and the updates list, as the views use them."""

import json

import redis
from django.conf import settings

import ngx_zmq

_redis = {}


def client():
    """A Client of the gateway's REST channels, with the settings'
    credentials."""
    return ngx_zmq.Client(settings.GATEWAY_URL,
                          auth=(settings.GATEWAY_USER,
                                settings.GATEWAY_PASSWORD),
                          timeout=settings.GATEWAY_TIMEOUT,
                          retries=settings.GATEWAY_RETRIES)


def send_order(order):
    """Publish an order through the REST channel; SendResult once the
    broker confirmed it, else a ngx_zmq.GatewayError."""
    path = settings.ORDERS_CHANNEL.format(customer=order["customer"])
    with client() as gw:
        # the order id is the message id: a consumer can drop a message it
        # has seen (after a retry, or a resent order)
        return gw.send(path, json=order, message_id=order["order_id"])


def updates_redis():
    """The Redis of the updates list (one pool per URL)."""
    url = settings.UPDATES_REDIS_URL
    conn = _redis.get(url)
    if conn is None:
        conn = _redis[url] = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=5,
            socket_connect_timeout=5)
    return conn


def gateway_failure(e):
    """What the app answers when the gateway did not take an order:
    (status, code, message, retry_after seconds or None)."""
    if isinstance(e, ngx_zmq.TooManyAttempts):
        return (503, "gateway_auth", "the gateway refused too many logins "
                "of this application: try again later", e.retry_after or 10)
    if isinstance(e, (ngx_zmq.Unauthorized, ngx_zmq.Forbidden)):
        return (502, "gateway_auth", "the gateway refused this "
                "application's credentials (GATEWAY_USER, "
                "GATEWAY_PASSWORD)", None)
    if isinstance(e, ngx_zmq.Unavailable):
        # broker_unavailable, broker_blocked, overloaded, ...
        return (503, e.code or "unavailable", "orders cannot be taken "
                "right now (%s): try again later" % (e.code or e.status),
                e.retry_after or 5)
    if isinstance(e, ngx_zmq.ConnectionFailed):
        return (503, "gateway_unreachable", "the gateway did not answer: "
                "the order may or may not have been taken; send it again "
                "with the same order_id", 5)
    if isinstance(e, ngx_zmq.GatewayTimeout):
        return (504, e.code or "gateway_timeout", "the broker did not "
                "confirm the order in time: it may or may not have been "
                "taken; send it again with the same order_id", None)
    if isinstance(e, ngx_zmq.BodyTooLarge):
        return 413, "too_large", "the order is too large", None
    # unroutable, nacked, a misconfigured channel: not the user's fault
    return (502, e.code or "gateway_error", "the gateway did not take the "
            "order (%s)" % (e.code or e.status), None)


def rows(page_obj):
    """The items of a page for the template: index (1-based, in the
    list), raw text, and data (the JSON object, when the item is one)."""
    out = []
    for index, raw in enumerate(page_obj, start=page_obj.start_index()):
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        out.append({"index": index, "raw": raw,
                    "data": data if isinstance(data, dict) else None})
    return out
