"""POST /orders publishes an order through the gateway (ngx_zmq.Client);
GET /updates pages the list zmqd fills (ngx_zmq.paginator.ListPaginator,
Django's Paginator over Redis)."""

import json
import logging
import math

import redis
from django.conf import settings
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

import ngx_zmq
from ngx_zmq.paginator import ListPaginator

from .forms import OrderForm, new_order_id
from .gateway import gateway_failure, rows, send_order, updates_redis

log = logging.getLogger("orders")


def _retry_after(response, seconds):
    if seconds is not None:
        response["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response


def _json_error(status, code, message, retry_after=None, **extra):
    doc = {"error": code, "message": message}
    doc.update(extra)
    return _retry_after(JsonResponse(doc, status=status), retry_after)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def orders(request):
    # a JSON body needs no CSRF token: a form on another site cannot send
    # Content-Type: application/json; the HTML form is protected
    if request.method == "POST" \
            and request.content_type == "application/json":
        return _order_json(request)
    return _order_form(request)


@csrf_protect
def _order_form(request):
    if request.method == "GET":
        form = OrderForm(initial={"order_id": new_order_id(),
                                  "quantity": 1})
        return render(request, "orders/orders.html",
                      {"form": form, "sent": request.GET.get("sent")})
    form = OrderForm(request.POST)
    if not form.is_valid():
        return render(request, "orders/orders.html", {
            "form": form, "error": {"code": "invalid",
                                    "message": "the order is not valid"}},
            status=400)
    order = form.order()
    try:
        send_order(order)
    except ngx_zmq.GatewayError as e:
        status, code, message, retry_after = gateway_failure(e)
        log.warning("order %s not taken: %s", order["order_id"], e)
        return _retry_after(render(request, "orders/orders.html", {
            "form": form, "error": {"code": code, "message": message}},
            status=status), retry_after)
    response = HttpResponseRedirect("%s?sent=%s" % (reverse("orders"),
                                                    order["order_id"]))
    response.status_code = 303          # see other: GET the form again
    return response


def _order_json(request):
    try:
        data = json.loads(request.body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return _json_error(400, "invalid", "the order is not valid",
                           errors={"order": "a JSON object"})
    form = OrderForm(data)
    if not form.is_valid():
        return _json_error(400, "invalid", "the order is not valid",
                           errors={k: " ".join(v)
                                   for k, v in form.errors.items()})
    order = form.order()
    try:
        sent = send_order(order)
    except ngx_zmq.GatewayError as e:
        status, code, message, retry_after = gateway_failure(e)
        log.warning("order %s not taken: %s", order["order_id"], e)
        return _json_error(status, code, message, retry_after,
                           order_id=order["order_id"])
    return JsonResponse({"order_id": order["order_id"],
                         "message_id": sent.message_id,
                         "confirmed": sent.confirmed}, status=202)


@require_GET
def updates(request):
    paginator = ListPaginator(updates_redis(), settings.UPDATES_KEY,
                              settings.UPDATES_PER_PAGE)
    try:
        # page 1 for a page that is not an integer, the last page for one
        # out of range
        page_obj = paginator.get_page(request.GET.get("page"))
    except redis.RedisError as e:
        log.warning("updates: %s", e)
        return _retry_after(render(request, "orders/base.html", {
            "error": {"code": "store_unavailable",
                      "message": "the updates cannot be read right now: "
                                 "try again later"}}, status=503), 5)
    return render(request, "orders/updates.html", {
        "page_obj": page_obj,
        "page_range": paginator.get_elided_page_range(
            page_obj.number, on_each_side=2, on_ends=1),
        "updates": rows(page_obj),
    })
