"""ngx_zmq.paginator (issue 15) against Django 3.2's own Paginator
(python3-django) as the oracle, on a real Redis.

The same items in a Python list (Django's Paginator) and in a Redis list
(ListPaginator): every size 0-300, per_page 1-40, orphans 0-10, both
allow_empty_first_page values; every attribute and method of the paginator
and of each of its pages, and every page number (each valid one, 0,
negative, past the end, floats, strings, None) through validate_number,
page, get_page and get_elided_page_range, must give the same values, or the
same exception class (Django's own, when Django is importable) with the
same message. Redis answers every distinct LRANGE the paginators issue
once (the test's connection remembers the answers, which keeps the matrix
of 265,000 paginators within a minute); each paginator must ask LLEN at
most once and never read more than per_page + orphans items for a page.

Sorted sets: score ranges (inclusive, exclusive, infinite, empty,
inverted) against a Python filter of the same members, ascending and
reverse, with and without scores, through Django's Paginator over the
filtered list; each page is one ZRANGEBYSCORE/ZREVRANGEBYSCORE ... LIMIT
(or ZRANGE/ZREVRANGE for the whole set) of its own items.

Without Django: the list matrix again (every size and per_page, orphans 0,
1, 2, 5 and 10, both allow_empty_first_page) in a process that cannot
import Django (sys.modules blocks it), run at the same time as the Django
run (itself in two processes); its digest of every answer (exception
classes by name, with their messages) must equal the oracle's. About 75 s
on two idle cores."""

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

SIZES = list(range(0, 301))
PER_PAGE = range(1, 41)
ORPHANS = range(0, 11)
EMPTY_FIRST = (True, False)
# page numbers tried on every paginator besides its valid ones and
# past the end (num_pages + 1), an integral float (float(num_pages)) and a
# numeric string (str(num_pages)): 0, negative, a fraction, a word, None
# Without Django, orphans 0, 1, 2, 5, 10 (each branch of the orphans rule;
# the whole matrix three times would take minutes on two cores)
STANDALONE_ORPHANS = (0, 1, 2, 5, 10)
BAD_NUMBERS = (0, -1, 1.5, "x", None)


def configure_django():
    """Django's messages are lazy translations: they need settings."""
    from django.conf import settings
    if not settings.configured:
        settings.configure(USE_I18N=False)


def key(n):
    return "pg:list:%d" % n


def items(n):
    return [b"item-%d" % i for i in range(n)]


# ------------------------------------------------------------ signatures


def outcome(f, *args, **kw):
    """('ok', value) or ('raise', exception class, message)."""
    try:
        return ("ok", f(*args, **kw))
    except Exception as e:          # noqa: BLE001: the class is compared
        return ("raise", type(e), str(e))


def sequence_sig(page):
    """A Page as a sequence: indexing, slicing, iteration, membership,
    count, index, a bad index."""
    n = len(page)
    return (n, list(page), page[0] if n else outcome(page.__getitem__, 0),
            page[-1] if n else outcome(page.__getitem__, -1), page[1:3],
            page[::-1], outcome(page.__getitem__, n),
            outcome(page.__getitem__, "a"), (b"item-0" in page),
            page.count(b"item-1"), outcome(page.index, b"item-2"),
            list(reversed(page)))


def page_sig(page, last):
    """Every method of a page; the ones that raise only where they may
    (validate_number past either end)."""
    number = page.number
    return (number, page.object_list, len(page), repr(page),
            page.has_next(), page.has_previous(), page.has_other_pages(),
            page.next_page_number() if number < last
            else outcome(page.next_page_number),
            page.previous_page_number() if number > 1
            else outcome(page.previous_page_number),
            page.start_index(), page.end_index())


def paginator_sig(p):
    """Everything the public API says about p, in order."""
    last = p.num_pages
    out = [p.count, last, p.page_range, p.per_page, p.orphans,
           p.allow_empty_first_page, str(p.ELLIPSIS)]
    pages = list(p)                                 # __iter__
    for page in pages:
        assert page.paginator is p
        out.append(page_sig(page, last))
        out.append(list(p.get_elided_page_range(page.number)))
    if pages and p.orphans == 0:
        # a Page's sequence methods do not depend on orphans
        out.append(sequence_sig(pages[0]))
        out.append(sequence_sig(pages[-1]))
    if last >= 10:
        out.append(list(p.get_elided_page_range(
            last // 2, on_each_side=1, on_ends=1)))
    for number in BAD_NUMBERS + (last + 1, float(last), str(last)):
        out.append(outcome(p.validate_number, number))
        pg = outcome(p.page, number)
        out.append(pg if pg[0] == "raise" else page_sig(pg[1], last))
        g = outcome(p.get_page, number)   # raises when there is no page
        out.append(g if g[0] == "raise" else (g[1].number,
                                              g[1].object_list))
        out.append(outcome(lambda: list(p.get_elided_page_range(number))))
    return out


def digest(sig):
    """sha256 of a signature, exception classes by name only: the same
    text in any mode."""
    text = repr(sig).replace("django.core.paginator.", "") \
        .replace("ngx_zmq.paginator.", "")
    return hashlib.sha256(text.encode()).hexdigest()


class Memo:
    """A redis-py client that asks Redis each distinct LLEN/LRANGE once,
    and counts what each paginator asks."""

    def __init__(self, conn):
        self.conn = conn
        self.cache = {}
        self.reset()

    def reset(self):
        self.llens = 0
        self.widest = 0

    def llen(self, k):
        self.llens += 1
        c = ("llen", k)
        if c not in self.cache:
            self.cache[c] = self.conn.llen(k)
        return self.cache[c]

    def lrange(self, k, a, b):
        assert 0 <= a <= b, (a, b)
        self.widest = max(self.widest, b - a + 1)
        c = ("lrange", k, a, b)
        if c not in self.cache:
            self.cache[c] = self.conn.lrange(k, a, b)
        return self.cache[c]


def run_matrix(conn, sizes, digest_sizes=()):
    """Every paginator of the list matrix for these sizes. With Django:
    each compared with Django's own on the same items (exception classes
    by identity), and the oracle's digest for digest_sizes; without: the
    digest of ours. {"errors": [...], "digests": {size: hex}}."""
    from ngx_zmq.paginator import DJANGO, ListPaginator
    if DJANGO:
        configure_django()
        from django.core.paginator import Paginator
    memo = Memo(conn)
    errors = []
    digests = {}
    for n in sizes:
        h = hashlib.sha256() if n in digest_sizes else None
        objects = items(n)
        for pp in PER_PAGE:
            for o in ORPHANS if DJANGO else STANDALONE_ORPHANS:
                for aef in EMPTY_FIRST:
                    memo.reset()
                    p = ListPaginator(memo, key(n), pp, orphans=o,
                                      allow_empty_first_page=aef)
                    ours = paginator_sig(p)
                    where = "size %d per_page %d orphans %d " \
                        "allow_empty_first_page %s" % (n, pp, o, aef)
                    if memo.llens > 1:
                        errors.append("%s: LLEN %d times" % (where,
                                                             memo.llens))
                    if memo.widest > pp + o:
                        errors.append("%s: read %d items for a page"
                                      % (where, memo.widest))
                    if not DJANGO:
                        h.update(digest(ours).encode())
                        continue
                    want = paginator_sig(Paginator(
                        objects, pp, orphans=o, allow_empty_first_page=aef))
                    if ours != want:
                        diff = [i for i, (a, b) in enumerate(zip(ours, want))
                                if a != b] or [min(len(ours), len(want))]
                        i = diff[0]
                        errors.append("%s: answer %d: ours %r, Django's %r"
                                      % (where, i, ours[i:i + 1],
                                         want[i:i + 1]))
                    if h is not None and o in STANDALONE_ORPHANS:
                        h.update(digest(want).encode())
                    if len(errors) >= 10:
                        return {"errors": errors, "digests": digests}
        if h is not None:
            digests[n] = h.hexdigest()
    return {"errors": errors, "digests": digests}


# ------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lists(redis_server):
    """One Redis, a list of each size: pg:list:N holds item-0..item-N-1."""
    c = redis_server.client()
    pipe = c.pipeline(transaction=False)
    for n in SIZES:
        pipe.delete(key(n))
        if n:
            pipe.rpush(key(n), *items(n))
    pipe.execute()
    return c


# --------------------------------------------------------------- lists


def worker(mode, port, sizes):
    """A process that runs the matrix for sizes: mode "django" (ours
    against Django's) or "standalone" (Django cannot be imported)."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("NGX_ZMQ_DJANGO", None)
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), mode, str(port)]
        + [str(n) for n in sizes],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)


def test_list_paginator_is_djangos_paginator_with_and_without_django(
        lists, redis_server):
    """The whole matrix with Django, compared call by call with Django's
    Paginator (exception classes by identity), in two processes (sizes
    split so that both have as many items), and at the same time the
    matrix for orphans 0, 1, 2, 5, 10 in a process without Django,
    compared with Django's answers by digest."""
    configure_django()
    from django.core import paginator as dj
    import ngx_zmq.paginator as pg
    assert pg.DJANGO is True
    assert pg.EmptyPage is dj.EmptyPage
    assert pg.PageNotAnInteger is dj.PageNotAnInteger
    assert pg.InvalidPage is dj.InvalidPage
    assert issubclass(pg.ListPaginator, dj.Paginator)
    assert issubclass(pg.ZSetPaginator, dj.Paginator)
    assert pg.ListPaginator(lists, key(3), 2).page(1).__class__ is dj.Page

    t = time.monotonic()
    procs = [worker("django", redis_server.port, SIZES[0::2]),
             worker("django", redis_server.port, SIZES[1::2]),
             worker("standalone", redis_server.port, SIZES)]
    answers = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, err.decode()[-3000:]
            answers.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    errors = answers[0]["errors"] + answers[1]["errors"]
    assert not errors, "\n".join(errors)
    assert not answers[2]["errors"], "\n".join(answers[2]["errors"])
    oracle = dict(answers[0]["digests"], **answers[1]["digests"])
    standalone = answers[2]["digests"]
    assert sorted(map(int, oracle)) == list(SIZES)
    bad = [n for n in SIZES if standalone[str(n)] != oracle[str(n)]]
    assert not bad, "without Django, sizes %s differ from Django" % bad[:20]
    print("list matrix: %d paginators in %.1f s" % (
        len(SIZES) * len(PER_PAGE) * len(ORPHANS) * len(EMPTY_FIRST),
        time.monotonic() - t))


def test_django_exception_classes_and_messages_are_raised(lists):
    configure_django()
    from django.core.paginator import EmptyPage, InvalidPage, \
        PageNotAnInteger
    from ngx_zmq.paginator import ListPaginator
    p = ListPaginator(lists, key(25), 10)
    with pytest.raises(PageNotAnInteger,
                       match="^That page number is not an integer$"):
        p.page("x")
    with pytest.raises(EmptyPage, match="^That page number is less than 1$"):
        p.page(0)
    with pytest.raises(EmptyPage, match="^That page contains no results$"):
        p.page(4)
    with pytest.raises(InvalidPage):
        p.validate_number(1.5)
    assert repr(p.page(3)) == "<Page 3 of 3>"
    assert p.page(3).object_list == items(25)[20:]


def test_a_page_reads_only_its_own_items_from_redis(redis_server):
    """MONITOR-free proof on the wire: a 100,000-item list, page 2,500 of
    40 reads 40 items (the connection's bytes received stay small)."""
    from ngx_zmq.paginator import ListPaginator
    c = redis_server.client()
    c.delete("pg:big")
    pipe = c.pipeline(transaction=False)
    for i in range(0, 100000, 5000):
        pipe.rpush("pg:big", *[b"%09d" % j for j in range(i, i + 5000)])
    pipe.execute()
    seen = []
    real = c.execute_command

    def spy(*args, **kw):
        r = real(*args, **kw)
        seen.append((args[0], r if isinstance(r, int) else len(r)))
        return r
    c.execute_command = spy
    p = ListPaginator(c, "pg:big", 40)
    page = p.page(2500)
    assert page.object_list == [b"%09d" % j for j in range(99960, 100000)]
    assert seen == [("LLEN", 100000), ("LRANGE", 40)]
    c.delete("pg:big")


# -------------------------------------------------------- sorted sets


def zset_members():
    """Members with repeated, negative, fractional and huge scores."""
    out = []
    for i in range(137):
        score = [i, i // 3, -i / 4.0, 1e12 + i, 7][i % 5]
        out.append((b"m-%03d" % i, float(score)))
    return out


def score_ok(score, bound, low):
    """score within a Redis bound ("(x" exclusive, "-inf", "+inf")."""
    b = str(bound)
    if b in ("-inf", "+inf", "inf"):
        return True if (b == "-inf") == low else False
    if b.startswith("("):
        v = float(b[1:])
        return score > v if low else score < v
    v = float(b)
    return score >= v if low else score <= v


def python_filter(members, lo, hi, reverse, withscores):
    got = [(m, s) for m, s in members
           if score_ok(s, lo, True) and score_ok(s, hi, False)]
    got.sort(key=lambda ms: (ms[1], ms[0]), reverse=reverse)
    return got if withscores else [m for m, _ in got]


RANGES = [("-inf", "+inf"), (0, 50), ("(0", "(50"), ("-inf", 7),
          ("(7", "+inf"), (7, 7), ("(7", 7), (100, 0), (-10.5, 10.25),
          (1e12, "+inf"), ("(-0.5", "(1e12"), (-1000, -999)]


@pytest.fixture(scope="module")
def zset(redis_server):
    c = redis_server.client()
    c.delete("pg:zset")
    c.zadd("pg:zset", {m: s for m, s in zset_members()})
    return c


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lo,hi", RANGES)
def test_score_ranges_are_a_python_filter_paged_by_django(zset, lo, hi,
                                                          reverse):
    configure_django()
    from django.core import paginator as dj
    from ngx_zmq.paginator import ZSetPaginator
    calls = []
    real = zset.execute_command

    def spy(*args, **kw):
        r = real(*args, **kw)
        calls.append((args, r if isinstance(r, int) else len(r)))
        return r
    zset.execute_command = spy
    try:
        for withscores in (False, True):
            want = python_filter(zset_members(), lo, hi, reverse,
                                 withscores)
            for pp, o in ((1, 0), (7, 0), (7, 3), (10, 10), (200, 0)):
                for aef in EMPTY_FIRST:
                    del calls[:]
                    ours = ZSetPaginator(zset, "pg:zset", pp, orphans=o,
                                         allow_empty_first_page=aef,
                                         score_min=lo, score_max=hi,
                                         reverse=reverse,
                                         withscores=withscores)
                    assert paginator_sig(ours) == paginator_sig(
                        dj.Paginator(want, pp, orphans=o,
                                     allow_empty_first_page=aef)), \
                        (lo, hi, reverse, withscores, pp, o, aef)
                    counts = [a for a, _ in calls
                              if a[0] in ("ZCARD", "ZCOUNT")]
                    assert len(counts) == 1
                    whole = (lo, hi) == ("-inf", "+inf")
                    assert counts[0][0] == ("ZCARD" if whole else "ZCOUNT")
                    for args, n in calls:
                        if args[0] in ("ZCARD", "ZCOUNT"):
                            continue
                        assert n <= pp + o, (args, n)
                        if whole:
                            assert args[0] == ("ZREVRANGE" if reverse
                                               else "ZRANGE")
                        else:
                            assert args[0] == ("ZREVRANGEBYSCORE" if reverse
                                               else "ZRANGEBYSCORE")
                            assert "LIMIT" in [str(a).upper() for a
                                               in args], args
    finally:
        del zset.execute_command


def test_a_score_range_page_reads_only_its_items(redis_server):
    """100,000 members, a range of 50,000 in the middle, page 1,000 of 20:
    one ZCOUNT and one ZRANGEBYSCORE ... LIMIT 19980 20 returning 20."""
    from ngx_zmq.paginator import ZSetPaginator
    c = redis_server.client()
    c.delete("pg:bigz")
    for i in range(0, 100000, 10000):
        c.zadd("pg:bigz", {b"%06d" % j: j for j in range(i, i + 10000)})
    seen = []
    real = c.execute_command

    def spy(*args, **kw):
        r = real(*args, **kw)
        seen.append((args[0], r if isinstance(r, int) else len(r)))
        return r
    c.execute_command = spy
    for reverse in (False, True):
        del seen[:]
        p = ZSetPaginator(c, "pg:bigz", 20, score_min=25000,
                          score_max="(75000", reverse=reverse,
                          withscores=True)
        page = p.page(1000)
        first = 25000 + 19980 if not reverse else 74999 - 19980
        step = 1 if not reverse else -1
        assert page.object_list == [
            (b"%06d" % j, float(j))
            for j in range(first, first + 20 * step, step)]
        assert seen == [("ZCOUNT", 50000),
                        ("ZREVRANGEBYSCORE" if reverse else "ZRANGEBYSCORE",
                         20)]
    c.delete("pg:bigz")


@pytest.mark.parametrize("bound", ["x", "(", "((1", "nan", float("nan"),
                                   True, None, b"\xff"])
def test_a_bad_score_bound_is_refused_before_redis(zset, bound):
    from ngx_zmq.paginator import ZSetPaginator
    with pytest.raises((ValueError, TypeError)):
        ZSetPaginator(zset, "pg:zset", 10, score_min=bound)


def test_decoded_answers_and_a_missing_key(redis_server):
    import redis
    from ngx_zmq.paginator import ListPaginator, ZSetPaginator
    c = redis.Redis(host="127.0.0.1", port=redis_server.port,
                    decode_responses=True)
    c.delete("pg:s")
    c.rpush("pg:s", "\u00e9t\u00e9", "b")
    assert ListPaginator(c, "pg:s", 1).page(1).object_list == [
        "\u00e9t\u00e9"]
    p = ZSetPaginator(c, "pg:absent", 10)
    assert (p.count, p.num_pages, list(p.page(1))) == (0, 1, [])
    p = ZSetPaginator(c, "pg:absent", 10, allow_empty_first_page=False)
    assert p.num_pages == 0
    c.delete("pg:s")


if __name__ == "__main__":
    # python3 t/test_paginator.py django|standalone REDIS_PORT SIZE...
    if sys.argv[1] == "standalone":
        sys.modules["django"] = None            # "import django" fails
    import redis
    import ngx_zmq.paginator as pg
    assert pg.DJANGO is (sys.argv[1] == "django")
    if not pg.DJANGO:
        assert pg.EmptyPage.__module__ == "ngx_zmq.paginator"
    sizes = [int(a) for a in sys.argv[3:]]
    print(json.dumps(run_matrix(redis.Redis(host="127.0.0.1",
                                            port=int(sys.argv[2])),
                                sizes, sizes)))
