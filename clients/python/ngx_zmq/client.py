"""HTTP clients of the ngx_zmq gateway.

Client publishes to REST channels (send) and calls rpc channels (invoke);
AdminClient drives the admin REST API. Every error answer of the gateway,
{"error": "<code>", "message": "..."}, is raised as the GatewayError
subclass named after its code (see ERRORS); an error answer the gateway did
not make (a proxy in front of it, a body that is not its JSON) is raised as
the subclass for its status (BadRequest, NotFound, Unavailable, ...).
"""

import base64
import collections
import email.utils
import json as jsonlib
import time
import uuid

import requests

__all__ = [
    "Client", "AdminClient", "SendResult", "Reply", "AdminAnswer",
    "GatewayError", "ConnectionFailed", "ClientError", "ServerError",
    "BadRequest", "InvalidJSON", "BadHeader", "BadRoutingKey", "BadJSON",
    "Invalid", "NoSecret", "NotApikey", "PageNotAnIntegerError",
    "Unauthorized", "Forbidden", "CrossSite",
    "NotFound", "UnknownService", "ExchangeNotFound", "EmptyPageError",
    "MethodNotAllowed", "BodyTimeout", "Conflict", "Exists", "InUse",
    "ReadOnly", "NoKey", "TooManyKeys", "PreconditionFailed",
    "BodyTooLarge", "Unroutable", "TooManyAttempts",
    "InternalError", "NotImplementedByGateway", "ServiceKindUnsupported",
    "SecurityUnsupported", "NotInvokable", "BadGateway", "Nacked",
    "ExchangeRefused", "Unavailable", "BrokerUnavailable", "BrokerBlocked",
    "Overloaded", "ServiceInactive", "OutconnInactive",
    "SecurityUnavailable", "AuthBusy", "RedisUnavailable", "Busy",
    "StoreUnavailable", "GatewayTimeout", "ConfirmTimeout", "ReplyTimeout",
    "ERRORS",
]


# ----------------------------------------------------------------- errors


class GatewayError(Exception):
    """An answer that is not a success. Attributes: status (HTTP status,
    None when no answer came), code (the gateway's "error", or None),
    message, body (the decoded JSON answer, or {}), headers, retry_after
    (seconds from Retry-After, or None), response (the requests
    Response, or None)."""

    status = None

    def __init__(self, message, status=None, code=None, body=None,
                 headers=None, retry_after=None, response=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.code = code
        self.body = body if body is not None else {}
        self.headers = headers if headers is not None else {}
        self.retry_after = retry_after
        self.response = response

    def __str__(self):
        if self.status is None:
            return self.message
        if self.code:
            return "%s %s: %s" % (self.status, self.code, self.message)
        return "%s: %s" % (self.status, self.message)


class ConnectionFailed(GatewayError):
    """No answer: the gateway could not be reached, or did not answer
    within the client's timeout (the message may or may not have been
    published)."""


class ClientError(GatewayError):
    """4xx: the request was refused; sent again unchanged it fails again."""


class ServerError(GatewayError):
    """5xx."""


class BadRequest(ClientError):
    """400. errors: the list of {"kind", "name", "field", "message"} of an
    admin API "invalid" answer, else []."""
    status = 400

    @property
    def errors(self):
        e = self.body.get("errors") if isinstance(self.body, dict) else None
        return e if isinstance(e, list) else []


class InvalidJSON(BadRequest):
    """400 invalid_json: the channel's data format is JSON, the body is
    not."""


class BadHeader(BadRequest):
    """400 bad_header: a property header (or X-Zmq-Header-*) is refused;
    the message names it."""


class BadRoutingKey(BadRequest):
    """400 bad_routing_key."""


class BadJSON(BadRequest):
    """400 bad_json (admin API): the body is not a JSON object."""


class Invalid(BadRequest):
    """400 invalid (admin API): see errors."""


class NoSecret(BadRequest):
    """400 no_secret (admin API): the object has no password to change."""


class NotApikey(BadRequest):
    """400 not_apikey (admin API)."""


class PageNotAnIntegerError(BadRequest):
    """400 page_not_an_integer (redis_page endpoints)."""


class Unauthorized(ClientError):
    """401: the credentials were not accepted. challenge: the
    WWW-Authenticate header."""
    status = 401

    @property
    def challenge(self):
        return self.headers.get("WWW-Authenticate")


class Forbidden(ClientError):
    """403 forbidden: e.g. a viewer that tried to write."""
    status = 403


class CrossSite(Forbidden):
    """403 cross_site (admin API)."""


class NotFound(ClientError):
    """404 not_found."""
    status = 404


class UnknownService(NotFound):
    """404 unknown_service."""


class ExchangeNotFound(NotFound):
    """404 exchange_not_found (admin API send)."""


class EmptyPageError(NotFound):
    """404 empty_page (redis_page endpoints)."""


class MethodNotAllowed(ClientError):
    """405. allow: the methods the path serves."""
    status = 405

    @property
    def allow(self):
        a = self.headers.get("Allow")
        return [m.strip() for m in a.split(",")] if a else []


class BodyTimeout(ClientError):
    """408 body_timeout."""
    status = 408


class Conflict(ClientError):
    """409 conflict (admin API: the store kept changing)."""
    status = 409


class Exists(Conflict):
    """409 exists."""


class InUse(Conflict):
    """409 in_use. referrers: the objects that name it."""

    @property
    def referrers(self):
        return self.body.get("referrers", [])


class ReadOnly(Conflict):
    """409 read_only: the gateway reads a configuration file."""


class NoKey(Conflict):
    """409 no_key: a secret must be sealed and there is no zmq_key_file."""


class TooManyKeys(Conflict):
    """409 too_many_keys."""


class PreconditionFailed(ClientError):
    """412: If-Match did not match. etag: the object's current ETag."""
    status = 412

    @property
    def etag(self):
        return self.body.get("etag")


class BodyTooLarge(ClientError):
    """413 body_too_large."""
    status = 413


class Unroutable(ClientError):
    """422 unroutable: a mandatory message that no queue took."""
    status = 422


class TooManyAttempts(ClientError):
    """429 too_many_attempts: failed authentications; see retry_after."""
    status = 429


class InternalError(ServerError):
    """500."""
    status = 500


class NotImplementedByGateway(ServerError):
    """501."""
    status = 501


class ServiceKindUnsupported(NotImplementedByGateway):
    """501 service_kind_unsupported."""


class SecurityUnsupported(NotImplementedByGateway):
    """501 security_unsupported."""


class NotInvokable(NotImplementedByGateway):
    """501 not_invokable (admin API invoke)."""


class BadGateway(ServerError):
    """502."""
    status = 502


class Unavailable(ServerError):
    """503: try again later (retry_after seconds, when given). Client
    retries these when asked to (retries=N)."""
    status = 503


class Nacked(BadGateway, Unavailable):
    """nacked: 503 when RabbitMQ did not take the message (basic.nack: a
    quorum queue electing a leader, a full queue; retried with retries=N),
    502 when a STOMP broker refused it (ERROR)."""
    status = 503


class ExchangeRefused(BadGateway):
    """502 exchange_refused (admin API send)."""


class BrokerUnavailable(Unavailable):
    """503 broker_unavailable: not connected, or the connection was lost
    before the confirm (the message may or may not have arrived: a retry
    keeps its message id so that consumers can deduplicate)."""


class BrokerBlocked(Unavailable):
    """503 broker_blocked: the broker raised a resource alarm."""


class Overloaded(Unavailable):
    """503 overloaded: too many messages in flight."""


class ServiceInactive(Unavailable):
    """503 service_inactive."""


class OutconnInactive(Unavailable):
    """503 outconn_inactive (admin API send)."""


class SecurityUnavailable(Unavailable):
    """503 security_unavailable: the security definition cannot be used."""


class AuthBusy(Unavailable):
    """503 auth_busy: too many password checks under way."""


class RedisUnavailable(Unavailable):
    """503 redis_unavailable (admin API writes)."""


class Busy(Unavailable):
    """503 busy (admin API: too many writes waiting)."""


class StoreUnavailable(Unavailable):
    """503 store_unavailable (redis_page endpoints)."""


class GatewayTimeout(ServerError):
    """504."""
    status = 504


class ConfirmTimeout(GatewayTimeout):
    """504 confirm_timeout: the broker did not confirm in time (the
    message may or may not have arrived)."""


class ReplyTimeout(GatewayTimeout):
    """504 reply_timeout: an rpc request got no reply in time."""


# the gateway's error codes (and NGINX's error pages' codes as the module
# answers them) -> exception
ERRORS = {
    "bad_request": BadRequest,
    "invalid_json": InvalidJSON,
    "bad_header": BadHeader,
    "bad_routing_key": BadRoutingKey,
    "bad_json": BadJSON,
    "invalid": Invalid,
    "no_secret": NoSecret,
    "not_apikey": NotApikey,
    "page_not_an_integer": PageNotAnIntegerError,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "cross_site": CrossSite,
    "not_found": NotFound,
    "unknown_service": UnknownService,
    "exchange_not_found": ExchangeNotFound,
    "empty_page": EmptyPageError,
    "method_not_allowed": MethodNotAllowed,
    "body_timeout": BodyTimeout,
    "conflict": Conflict,
    "exists": Exists,
    "in_use": InUse,
    "read_only": ReadOnly,
    "no_key": NoKey,
    "too_many_keys": TooManyKeys,
    "precondition_failed": PreconditionFailed,
    "body_too_large": BodyTooLarge,
    "unroutable": Unroutable,
    "too_many_attempts": TooManyAttempts,
    "too_many_requests": TooManyAttempts,
    "internal_error": InternalError,
    "not_implemented": NotImplementedByGateway,
    "service_kind_unsupported": ServiceKindUnsupported,
    "security_unsupported": SecurityUnsupported,
    "not_invokable": NotInvokable,
    "bad_gateway": BadGateway,
    "nacked": Nacked,
    "exchange_refused": ExchangeRefused,
    "service_unavailable": Unavailable,
    "broker_unavailable": BrokerUnavailable,
    "broker_blocked": BrokerBlocked,
    "overloaded": Overloaded,
    "service_inactive": ServiceInactive,
    "outconn_inactive": OutconnInactive,
    "security_unavailable": SecurityUnavailable,
    "auth_busy": AuthBusy,
    "redis_unavailable": RedisUnavailable,
    "busy": Busy,
    "store_unavailable": StoreUnavailable,
    "gateway_timeout": GatewayTimeout,
    "confirm_timeout": ConfirmTimeout,
    "reply_timeout": ReplyTimeout,
}

_BY_STATUS = {400: BadRequest, 401: Unauthorized, 403: Forbidden,
              404: NotFound, 405: MethodNotAllowed, 408: BodyTimeout,
              409: Conflict, 412: PreconditionFailed, 413: BodyTooLarge,
              422: Unroutable, 429: TooManyAttempts, 500: InternalError,
              501: NotImplementedByGateway, 502: BadGateway,
              503: Unavailable, 504: GatewayTimeout}


def _retry_after(value):
    """Retry-After in seconds (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(r):
    """The GatewayError for an error answer (status >= 400)."""
    body = {}
    ctype = r.headers.get("Content-Type", "")
    if ctype.split(";")[0].strip().lower() == "application/json":
        try:
            body = r.json()
        except ValueError:
            body = {}
    if not isinstance(body, dict):
        body = {}
    code = body.get("error") if isinstance(body.get("error"), str) else None
    message = body.get("message")
    if not isinstance(message, str):
        message = (r.reason or "error") if code is None else code
    cls = ERRORS.get(code) if code is not None else None
    if cls is None:
        cls = _BY_STATUS.get(r.status_code)
    if cls is None:
        cls = ClientError if r.status_code < 500 else ServerError
    return cls(message, status=r.status_code, code=code, body=body,
               headers=r.headers,
               retry_after=_retry_after(r.headers.get("Retry-After")),
               response=r)


# ---------------------------------------------------------------- answers


SendResult = collections.namedtuple("SendResult", "message_id confirmed")
SendResult.__doc__ = """A published message: message_id (the client's or
the gateway's), confirmed (True: the broker confirmed it; False: the
service does not wait for confirms)."""


class Reply:
    """The reply to an rpc request: body (bytes), content_type, status
    (the responder's, default 200), correlation_id, headers."""

    def __init__(self, body, content_type, status, correlation_id=None,
                 headers=None):
        self.body = body
        self.content_type = content_type
        self.status = status
        self.correlation_id = correlation_id
        self.headers = headers if headers is not None else {}

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return jsonlib.loads(self.body.decode("utf-8"))

    @property
    def ok(self):
        return self.status < 400

    def __iter__(self):
        # body, content_type, status = client.invoke(...)
        return iter((self.body, self.content_type, self.status))

    def __repr__(self):
        return "<Reply %s %s %d bytes>" % (self.status, self.content_type,
                                          len(self.body))


class AdminAnswer(dict):
    """A JSON answer of the admin API (a dict) with its status and ETag
    (etag: the header's value, e.g. '"18"', or None)."""

    def __init__(self, doc, status=200, etag=None):
        super().__init__(doc if isinstance(doc, dict) else {})
        self.status = status
        self.etag = etag


# ----------------------------------------------------------------- client


def _basic(user, password):
    # RFC 7617 with charset UTF-8 (requests' own encodes latin-1)
    cred = ("%s:%s" % (user, password)).encode("utf-8")
    return "Basic " + base64.b64encode(cred).decode("ascii")


class _Http:
    """What both clients share: the session, credentials, retries."""

    def __init__(self, base_url, auth=None, api_key=None, token=None,
                 timeout=30.0, retries=0, retry_max_wait=30.0,
                 api_key_header="X-API-Key", session=None, verify=True):
        given = [x for x in (auth, api_key, token) if x is not None]
        if len(given) > 1:
            raise ValueError("give at most one of auth, api_key and token")
        if auth is not None and (not isinstance(auth, (tuple, list))
                                 or len(auth) != 2):
            raise ValueError("auth is a (user, password) pair")
        self.base_url = base_url.rstrip("/")
        self.auth = tuple(auth) if auth is not None else None
        self.api_key = api_key
        self.api_key_header = api_key_header
        self.token = token
        self.timeout = timeout
        self.retries = int(retries)
        self.retry_max_wait = retry_max_wait
        self.verify = verify
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        # tests (and impatient callers) may replace it
        self.sleep = time.sleep

    def close(self):
        if self._own_session:
            self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _credentials(self, headers):
        if self.auth is not None:
            headers["Authorization"] = _basic(*self.auth)
        elif self.api_key is not None:
            headers[self.api_key_header] = self.api_key
        elif self.token is not None:
            tok = self.token() if callable(self.token) else self.token
            headers["Authorization"] = "Bearer " + tok

    def _url(self, path):
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return self.base_url + "/" + path.lstrip("/")

    def _request(self, method, path, headers=None, data=None, params=None,
                 retries=None, timeout=None):
        """One request, sent again (same headers and body) after each 503
        answer up to retries times, waiting Retry-After seconds (at most
        retry_max_wait; without Retry-After 0.5 s doubling). Returns the
        requests Response of a success; raises GatewayError."""
        retries = self.retries if retries is None else int(retries)
        timeout = self.timeout if timeout is None else timeout
        url = self._url(path)
        attempt = 0
        while True:
            h = dict(headers or {})
            self._credentials(h)
            try:
                r = self.session.request(method, url, headers=h, data=data,
                                         params=params, timeout=timeout,
                                         verify=self.verify)
            except requests.RequestException as e:
                raise ConnectionFailed("%s %s: %s" % (method, url, e)) \
                    from e
            if r.status_code < 400:
                return r
            err = error_from_response(r)
            if r.status_code != 503 or attempt >= retries:
                raise err
            wait = err.retry_after
            if wait is None:
                wait = 0.5 * (2 ** attempt)
            self.sleep(min(wait, self.retry_max_wait))
            attempt += 1


def _body(data, json):
    """(bytes or None, content type or None) of send's data/json."""
    if data is not None and json is not None:
        raise ValueError("give data or json, not both")
    if json is not None:
        return (jsonlib.dumps(json, separators=(",", ":"),
                              ensure_ascii=False).encode("utf-8"),
                "application/json")
    if data is None:
        return b"", None
    if isinstance(data, str):
        return data.encode("utf-8"), "text/plain; charset=utf-8"
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), None
    if isinstance(data, dict):
        raise TypeError("data is bytes or text; give a dict as json=")
    return data, None                       # a file or an iterator


class Client(_Http):
    """A client of the gateway's REST channels.

        c = Client("http://gateway:8080", auth=("crm", "change-me"),
                   retries=3)
        r = c.send("/api/customers/42/updates", json={"email": "x@y"})
        r.message_id, r.confirmed

    Credentials: auth=(user, password) (basic_auth, UTF-8), api_key=KEY
    (sent in api_key_header, default X-API-Key) or token=JWT (Bearer; a
    callable is called for each request, so that it can renew the token).
    timeout: seconds for each request (connect and each read). retries: how
    many times a 503 answer is retried (Retry-After honoured, at most
    retry_max_wait seconds each); a retried message keeps its message id.
    """

    def _headers(self, content_type, message_id, correlation_id, reply_to,
                 priority, expiration, persistent, headers):
        h = {}
        if content_type is not None:
            h["Content-Type"] = content_type
        if message_id is not None:
            h["X-Message-Id"] = str(message_id)
        if correlation_id is not None:
            h["X-Correlation-Id"] = str(correlation_id)
        if reply_to is not None:
            h["X-Reply-To"] = reply_to
        if priority is not None:
            h["X-Priority"] = str(int(priority))
        if expiration is not None:
            if hasattr(expiration, "total_seconds"):
                expiration = int(expiration.total_seconds() * 1000)
            h["X-Expiration"] = str(expiration)
        if persistent is not None:
            h["X-Delivery-Mode"] = "persistent" if persistent \
                else "transient"
        for name, value in (headers or {}).items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            if isinstance(value, str):
                value = value.encode("utf-8")
            elif not isinstance(value, bytes):
                value = str(value).encode("utf-8")
            h["X-Zmq-Header-" + name] = value
        return h

    def send(self, path, data=None, json=None, *, message_id=None,
             correlation_id=None, reply_to=None, priority=None,
             expiration=None, persistent=True, headers=None,
             content_type=None, method="POST", retries=None, timeout=None):
        """Publish data (bytes, text, a file) or json (any JSON value) to
        the REST channel at path; returns SendResult(message_id,
        confirmed) once the broker has confirmed the message.

        message_id: X-Message-Id (when retries are on and none is given,
        one is made here, a UUID4, so that every attempt carries the same);
        correlation_id, reply_to, priority (0-9), expiration (milliseconds,
        or a timedelta), persistent (True: delivery mode 2, False: 1, None:
        the service's default), headers: AMQP headers
        (X-Zmq-Header-<name>), content_type (default: application/json for
        json, text/plain for text). Raises a GatewayError subclass."""
        retries = self.retries if retries is None else int(retries)
        if message_id is None and retries > 0:
            message_id = str(uuid.uuid4())
        body, ctype = _body(data, json)
        h = self._headers(content_type or ctype, message_id, correlation_id,
                          reply_to, priority, expiration, persistent,
                          headers)
        r = self._request(method, path, headers=h, data=body,
                          retries=retries, timeout=timeout)
        try:
            doc = r.json()
            return SendResult(doc["message_id"], bool(doc["confirmed"]))
        except (ValueError, KeyError, TypeError):
            raise GatewayError("%s %s answered %s without a message id"
                               % (method, path, r.status_code),
                               status=r.status_code, headers=r.headers,
                               response=r)

    def invoke(self, path, data=None, json=None, *, message_id=None,
               priority=None, expiration=None, persistent=None,
               headers=None, content_type=None, method="POST", retries=None,
               timeout=None):
        """Call the rpc channel at path and return its Reply (body,
        content_type, status, correlation_id): the responder's answer,
        whatever its status. The gateway's own errors raise a GatewayError
        subclass (ReplyTimeout: 504 reply_timeout, no reply in time;
        Unroutable: no queue took the request; the publish errors as for
        send). timeout should exceed the service's reply timeout."""
        retries = self.retries if retries is None else int(retries)
        if message_id is None and retries > 0:
            message_id = str(uuid.uuid4())
        body, ctype = _body(data, json)
        h = self._headers(content_type or ctype, message_id, None, None,
                          priority, expiration, persistent, headers)
        try:
            r = self._request(method, path, headers=h, data=body,
                              retries=retries, timeout=timeout)
        except GatewayError as e:
            # a responder's error answer is a reply: it carries the
            # request's correlation id, which the gateway's own error
            # answers do not
            r = e.response
            if r is None or e.code == "reply_timeout" \
                    or "X-Correlation-Id" not in r.headers:
                raise
        return Reply(r.content, r.headers.get("Content-Type"),
                     r.status_code, r.headers.get("X-Correlation-Id"),
                     r.headers)


# ------------------------------------------------------------------ admin


class AdminClient(_Http):
    """A client of the admin REST API, base_url being the zmq_admin
    location (e.g. http://gateway:8080/zmq/admin). Credentials as for
    Client, of a security definition with role admin (viewers may only
    read: Forbidden).

    Reads answer AdminAnswer (a dict with status and etag); writes the
    gateway's answer ({"changes", "data", "version"}, ...) as an
    AdminAnswer whose etag is the object's new ETag. if_match: the ETag of
    an earlier answer (the string '"18"', the number 18, or the answer
    itself): the write fails with PreconditionFailed if the object changed
    since. wait=True: answered once this worker runs the new version."""

    def _call(self, method, path, doc=None, params=None, if_match=None,
              raw=None, headers=None):
        h = dict(headers or {})
        data = raw
        if doc is not None:
            data = jsonlib.dumps(doc).encode("utf-8")
            h["Content-Type"] = "application/json"
        if if_match is not None:
            if isinstance(if_match, AdminAnswer):
                if_match = if_match.etag
            if isinstance(if_match, int):
                if_match = '"%d"' % if_match
            h["If-Match"] = if_match
        r = self._request(method, "api/" + path.lstrip("/"), headers=h,
                          data=data, params=params)
        try:
            body = r.json() if r.content else {}
        except ValueError:
            body = {"text": r.text}
        return AdminAnswer(body, r.status_code, r.headers.get("ETag"))

    @staticmethod
    def _wait(params, wait):
        if wait:
            params["wait"] = "1"
        return params

    # reads

    def page(self, kind, number=1, page_size=None, q=None):
        """One page of a kind: {"data", "page", "version"}."""
        params = {"page": number}
        if page_size is not None:
            params["page_size"] = page_size
        if q is not None:
            params["q"] = q
        return self._call("GET", kind, params=params)

    def list(self, kind, q=None, page_size=1000):
        """Every object of a kind (whose name contains q), sorted by
        name."""
        out = []
        n = 1
        while True:
            p = self.page(kind, n, page_size, q)
            out.extend(p["data"])
            if n >= p["page"]["num_pages"]:
                return out
            n += 1

    def get(self, kind, name):
        """The object (secrets as {"$set": true}); etag: its ETag."""
        return self._call("GET", "%s/%s" % (kind, _seg(name)))

    def whoami(self):
        return self._call("GET", "whoami")

    def status(self):
        return self._call("GET", "status")

    def export(self):
        return self._call("GET", "export")

    # writes

    def create(self, kind, obj, wait=False):
        """POST: Exists if the name is taken."""
        return self._call("POST", kind, obj, params=self._wait({}, wait))

    def replace(self, kind, name, obj, if_match=None, wait=False):
        """PUT: create or replace whole."""
        return self._call("PUT", "%s/%s" % (kind, _seg(name)), obj,
                          params=self._wait({}, wait), if_match=if_match)

    def update(self, kind, name, patch, if_match=None, wait=False):
        """PATCH with a JSON merge patch (None removes a field)."""
        return self._call("PATCH", "%s/%s" % (kind, _seg(name)), patch,
                          params=self._wait({}, wait), if_match=if_match)

    def delete(self, kind, name, cascade=False, if_match=None, wait=False):
        """DELETE: InUse (with referrers) unless cascade."""
        params = self._wait({}, wait)
        if cascade:
            params["cascade"] = "true"
        return self._call("DELETE", "%s/%s" % (kind, _seg(name)),
                          params=params, if_match=if_match)

    def change_password(self, kind, name, password, if_match=None,
                        wait=False):
        """Set the password of an amqp_def, a security definition (basic
        auth, jwt HS*, apikey out) or a redis service."""
        return self._call("POST", "%s/%s/password" % (kind, _seg(name)),
                          {"password1": password, "password2": password},
                          params=self._wait({}, wait), if_match=if_match)

    password = change_password

    def import_config(self, doc, check=False, replace=False, wait=False):
        """A whole configuration, all or nothing (zmqctl import)."""
        params = self._wait({}, wait)
        if check:
            params["check"] = "1"
        if replace:
            params["replace"] = "1"
        return self._call("POST", "import", doc, params=params)

    def create_key(self, name, key_id=None, wait=False):
        """A new key of an incoming apikey definition: (id, key); the key
        is shown this once."""
        a = self._call("POST", "security/%s/keys" % _seg(name),
                       {"id": key_id} if key_id is not None else {},
                       params=self._wait({}, wait))
        return a["id"], a["key"]

    def revoke_key(self, name, key_id, wait=False):
        return self._call("DELETE", "security/%s/keys/%s"
                          % (_seg(name), _seg(key_id)),
                          params=self._wait({}, wait))

    # operations

    def ping(self, kind, name):
        """Ping an amqp_def or http_outconn: {"ok", "address", "ms", ...}
        (a failed ping is an answer with ok false, not an exception)."""
        return self._call("POST", "%s/%s/ping" % (kind, _seg(name)))

    def send(self, outconn, body=b"", *, exchange="", routing_key="",
             properties=None, headers=None, mandatory=False):
        """Publish through an amqp_outconn; body as text or bytes (sent
        as body_base64). Returns SendResult."""
        doc = {"exchange": exchange, "routing_key": routing_key,
               "mandatory": bool(mandatory)}
        if isinstance(body, str):
            doc["body"] = body
        else:
            doc["body_base64"] = base64.b64encode(bytes(body)).decode()
        if properties:
            doc["properties"] = properties
        if headers:
            doc["headers"] = headers
        a = self._call("POST", "amqp_outconn/%s/send" % _seg(outconn), doc)
        return SendResult(a["message_id"], bool(a["confirmed"]))

    def invoke(self, service, data=b"", content_type=None, headers=None):
        """Invoke a service with a raw body (and the REST channels'
        property headers): SendResult for a publish service (or an invoke
        service's 202), the Reply of an rpc service."""
        h = dict(headers or {})
        if content_type is not None:
            h["Content-Type"] = content_type
        if isinstance(data, str):
            data = data.encode("utf-8")
        r = self._request("POST", "api/service/%s/invoke" % _seg(service),
                          headers=h, data=data)
        ctype = r.headers.get("Content-Type", "")
        if r.status_code == 202 and ctype.startswith("application/json"):
            try:
                doc = r.json()
            except ValueError:
                doc = None
            if isinstance(doc, dict) and "message_id" in doc:
                return SendResult(doc["message_id"],
                                  bool(doc.get("confirmed")))
        return Reply(r.content, r.headers.get("Content-Type"),
                     r.status_code, r.headers.get("X-Correlation-Id"),
                     r.headers)


def _seg(name):
    from urllib.parse import quote
    return quote(str(name), safe="")
