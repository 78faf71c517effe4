"""Orders through ngx_zmq, updates from Redis: the Flask example.

    POST /orders          a form or a JSON object {"customer", "item",
                          "quantity"[, "order_id"]}: published with
                          ngx_zmq.Client through the gateway's protected
                          REST channel; 202 (JSON) or 303 (form) once the
                          broker has confirmed it
    GET  /orders          the form
    GET  /updates?page=N  the Redis list zmqd fills from the queue
                          (customer:updates in the demo), a page at a time
                          with ngx_zmq.paginator.ListPaginator (Django's
                          Paginator API: get_page, get_elided_page_range)

Settings come from the environment, the demo's values (make run) by
default, and create_app(config) overrides them. Run it (see README.md):

    PYTHONPATH=clients/python python3 examples/flask_app/app.py
"""

import json
import math
import os
import re
import uuid

import redis
from flask import (Flask, jsonify, make_response, redirect, render_template,
                   request, url_for)

import ngx_zmq
from ngx_zmq.paginator import ListPaginator


def settings_from_env(env=None):
    """The app's settings: the environment's, else the demo's."""
    env = os.environ if env is None else env
    return {
        # the gateway and the REST channel's security definition
        # (conf/demo.json: rest_channel customer.updates.rest, security
        # crm-clients)
        "GATEWAY_URL": env.get("GATEWAY_URL", "http://127.0.0.1:8080"),
        "GATEWAY_USER": env.get("GATEWAY_USER", "crm"),
        "GATEWAY_PASSWORD": env.get("GATEWAY_PASSWORD", "change-me"),
        "GATEWAY_TIMEOUT": float(env.get("GATEWAY_TIMEOUT", "10")),
        # 503 answers retried this many times, honouring Retry-After
        "GATEWAY_RETRIES": int(env.get("GATEWAY_RETRIES", "0")),
        "ORDERS_CHANNEL": env.get("ORDERS_CHANNEL",
                                  "/api/customers/{customer}/updates"),
        # the list zmqd fills (amqp_channel customer.updates.in into the
        # redis service customer.updates.store)
        "UPDATES_REDIS_URL": env.get("UPDATES_REDIS_URL",
                                     "redis://127.0.0.1:6379/0"),
        "UPDATES_KEY": env.get("UPDATES_KEY", "customer:updates"),
        "UPDATES_PER_PAGE": int(env.get("UPDATES_PER_PAGE", "20")),
    }


# ------------------------------------------------------------------ orders

ORDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
DIGITS = re.compile(r"\s*[0-9]{1,9}\s*\Z")


def _integer(value):
    """An int from JSON (2) or a form ("2"); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and DIGITS.match(value):
        return int(value)
    return None


def parse_order(data):
    """(order, errors): the order to publish, or what is wrong with each
    field (errors, a dict, empty when the order is good)."""
    if not hasattr(data, "get"):
        return None, {"order": "a JSON object"}
    errors = {}
    customer = _integer(data.get("customer"))
    if customer is None or not 1 <= customer <= 999999999:
        errors["customer"] = "a customer number, 1 to 999999999"
    quantity = _integer(data.get("quantity", 1))
    if quantity is None or not 1 <= quantity <= 1000:
        errors["quantity"] = "a quantity, 1 to 1000"
    item = data.get("item")
    item = item.strip() if isinstance(item, str) else ""
    if not 1 <= len(item) <= 100:
        errors["item"] = "an item, 1 to 100 characters"
    order_id = data.get("order_id") or uuid.uuid4().hex
    if not isinstance(order_id, str) or not ORDER_ID.match(order_id):
        errors["order_id"] = "letters, digits, '.', '_', '-' (at most 64)"
    if errors:
        return None, errors
    return {"order_id": order_id, "customer": customer, "item": item,
            "quantity": quantity}, {}


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


# ----------------------------------------------------------------- updates

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


# ---------------------------------------------------------------------- app

def create_app(config=None):
    app = Flask(__name__)
    app.config.update(settings_from_env())
    if config:
        app.config.update(config)
    # one pool for the app's threads
    app.extensions["updates_redis"] = redis.Redis.from_url(
        app.config["UPDATES_REDIS_URL"], decode_responses=True,
        socket_timeout=5, socket_connect_timeout=5)

    def gateway():
        c = app.config
        return ngx_zmq.Client(c["GATEWAY_URL"],
                              auth=(c["GATEWAY_USER"], c["GATEWAY_PASSWORD"]),
                              timeout=c["GATEWAY_TIMEOUT"],
                              retries=c["GATEWAY_RETRIES"])

    def failure(as_json, status, code, message, retry_after=None,
                template="error.html", **context):
        if as_json:
            doc = {"error": code, "message": message}
            doc.update(context)
            resp = make_response(jsonify(doc), status)
        else:
            resp = make_response(render_template(
                template, error={"code": code, "message": message},
                **context), status)
        if retry_after is not None:
            resp.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        return resp

    @app.get("/")
    def index():
        return redirect(url_for("orders"))

    @app.route("/orders", methods=["GET", "POST"])
    def orders():
        if request.method == "GET":
            # a new order id with each form: sending the same form again
            # (after a 503) sends the same message id
            return render_template("orders.html", errors={},
                                   form={"order_id": uuid.uuid4().hex},
                                   sent=request.args.get("sent"))
        as_json = request.is_json
        data = request.get_json(silent=True) if as_json else request.form
        order, errors = parse_order(data)
        if errors:
            if as_json:
                return failure(True, 400, "invalid", "the order is not "
                               "valid", errors=errors)
            return failure(False, 400, "invalid", "the order is not valid",
                           template="orders.html", form=request.form,
                           errors=errors)
        path = app.config["ORDERS_CHANNEL"].format(
            customer=order["customer"])
        try:
            with gateway() as gw:
                # the order id is the message id: a consumer can drop a
                # message it has seen (after a retry, or a resent order)
                sent = gw.send(path, json=order, message_id=order["order_id"])
        except ngx_zmq.GatewayError as e:
            status, code, message, retry_after = gateway_failure(e)
            app.logger.warning("order %s not taken: %s", order["order_id"],
                               e)
            if as_json:
                return failure(True, status, code, message, retry_after,
                               order_id=order["order_id"])
            return failure(False, status, code, message, retry_after,
                           template="orders.html", form=request.form,
                           errors={})
        if as_json:
            return jsonify(order_id=order["order_id"],
                           message_id=sent.message_id,
                           confirmed=sent.confirmed), 202
        return redirect(url_for("orders", sent=order["order_id"]), 303)

    @app.get("/updates")
    def updates():
        c = app.config
        paginator = ListPaginator(app.extensions["updates_redis"],
                                  c["UPDATES_KEY"], c["UPDATES_PER_PAGE"])
        try:
            # Django's get_page: page 1 for a page that is not an integer,
            # the last page for one out of range
            page_obj = paginator.get_page(request.args.get("page"))
        except redis.RedisError as e:
            app.logger.warning("updates: %s", e)
            return failure(False, 503, "store_unavailable", "the updates "
                           "cannot be read right now: try again later", 5)
        # Django's ELLIPSIS is a lazy translation, which needs Django's
        # settings to print: mark the gaps with None instead
        page_range = [n if isinstance(n, int) else None for n in
                      paginator.get_elided_page_range(
                          page_obj.number, on_each_side=2, on_ends=1)]
        return render_template("updates.html", page_obj=page_obj,
                               page_range=page_range,
                               updates=rows(page_obj))

    return app


if __name__ == "__main__":
    create_app().run(host=os.environ.get("HOST", "127.0.0.1"),
                     port=int(os.environ.get("PORT", "5000")))
