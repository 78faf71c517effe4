"""Django's pagination over Redis lists and sorted sets.

    from ngx_zmq.paginator import ListPaginator, ZSetPaginator
    p = ListPaginator(redis.Redis(), "customer:updates", 20)
    page = p.get_page(request.GET.get("page"))

ListPaginator and ZSetPaginator have the whole public API of Django 3.2's
Paginator and Page (count, num_pages, page_range, validate_number, page,
get_page, get_elided_page_range, ELLIPSIS, iteration over the pages; a Page
is a sequence with has_next, has_previous, has_other_pages,
next_page_number, previous_page_number, start_index, end_index and repr
"<Page n of m>"), with Django's semantics, only the constructor differs.

When Django is importable, they subclass django.core.paginator.Paginator
and their pages are Django's Page, so PageNotAnInteger, EmptyPage and
InvalidPage are Django's own classes (and their messages Django's,
translated as Django translates them: a program that has Django installed
but not configured must configure its settings, or set NGX_ZMQ_DJANGO=0
in the environment before importing this module to use the standalone
classes). Without Django the module carries its own copies, which behave
identically.

Redis does the work: count is LLEN (lists), ZCARD (a whole sorted set) or
ZCOUNT (a score range); a page is one LRANGE, ZRANGE/ZREVRANGE or
ZRANGEBYSCORE/ZREVRANGEBYSCORE with LIMIT offset count: a page reads its
own items only, whatever the size of the list or of the score range. Like
Django's, a paginator counts once (count is cached); make one per request.
"""

import collections.abc
import math
import os

__all__ = ["ListPaginator", "ZSetPaginator", "Paginator", "Page",
           "InvalidPage", "PageNotAnInteger", "EmptyPage", "DJANGO"]


def _django():
    if os.environ.get("NGX_ZMQ_DJANGO", "1") == "0":
        return None
    try:
        from django.core import paginator
    except ImportError:
        return None
    return paginator


_dj = _django()

#: True when the classes are Django's subclasses
DJANGO = _dj is not None


if DJANGO:
    Paginator = _dj.Paginator
    Page = _dj.Page
    InvalidPage = _dj.InvalidPage
    PageNotAnInteger = _dj.PageNotAnInteger
    EmptyPage = _dj.EmptyPage
    from django.utils.functional import cached_property

else:
    try:
        from functools import cached_property
    except ImportError:                             # Python < 3.8
        class cached_property:
            def __init__(self, func):
                self.func = func
                self.__doc__ = func.__doc__
                self.name = func.__name__

            def __get__(self, instance, cls=None):
                if instance is None:
                    return self
                res = instance.__dict__[self.name] = self.func(instance)
                return res

    class InvalidPage(Exception):
        pass

    class PageNotAnInteger(InvalidPage):
        pass

    class EmptyPage(InvalidPage):
        pass

    class Paginator:
        """Django 3.2's Paginator, for a program without Django."""

        ELLIPSIS = "\u2026"

        def __init__(self, object_list, per_page, orphans=0,
                     allow_empty_first_page=True):
            self.object_list = object_list
            self.per_page = int(per_page)
            self.orphans = int(orphans)
            self.allow_empty_first_page = allow_empty_first_page

        def __iter__(self):
            for page_number in self.page_range:
                yield self.page(page_number)

        def validate_number(self, number):
            """Validate the given 1-based page number."""
            try:
                if isinstance(number, float) and not number.is_integer():
                    raise ValueError
                number = int(number)
            except (TypeError, ValueError):
                raise PageNotAnInteger("That page number is not an integer")
            if number < 1:
                raise EmptyPage("That page number is less than 1")
            if number > self.num_pages:
                if number == 1 and self.allow_empty_first_page:
                    pass
                else:
                    raise EmptyPage("That page contains no results")
            return number

        def get_page(self, number):
            """A valid page, even if number is not a number or is out of
            range."""
            try:
                number = self.validate_number(number)
            except PageNotAnInteger:
                number = 1
            except EmptyPage:
                number = self.num_pages
            return self.page(number)

        def page(self, number):
            """The Page for the given 1-based page number."""
            number = self.validate_number(number)
            bottom = (number - 1) * self.per_page
            top = bottom + self.per_page
            if top + self.orphans >= self.count:
                top = self.count
            return self._get_page(self.object_list[bottom:top], number, self)

        def _get_page(self, *args, **kwargs):
            return Page(*args, **kwargs)

        @cached_property
        def count(self):
            """The number of objects, across all pages."""
            return len(self.object_list)

        @cached_property
        def num_pages(self):
            """The number of pages."""
            if self.count == 0 and not self.allow_empty_first_page:
                return 0
            hits = max(1, self.count - self.orphans)
            return math.ceil(hits / self.per_page)

        @property
        def page_range(self):
            """A 1-based range of the pages."""
            return range(1, self.num_pages + 1)

        def get_elided_page_range(self, number=1, *, on_each_side=3,
                                  on_ends=2):
            """A 1-based range of pages with some values elided, e.g. 1, 2,
            ..., 40, 41, 42, 43, 44, 45, 46, ..., 49, 50."""
            number = self.validate_number(number)

            if self.num_pages <= (on_each_side + on_ends) * 2:
                yield from self.page_range
                return

            if number > (1 + on_each_side + on_ends) + 1:
                yield from range(1, on_ends + 1)
                yield self.ELLIPSIS
                yield from range(number - on_each_side, number + 1)
            else:
                yield from range(1, number + 1)

            if number < (self.num_pages - on_each_side - on_ends) - 1:
                yield from range(number + 1, number + on_each_side + 1)
                yield self.ELLIPSIS
                yield from range(self.num_pages - on_ends + 1,
                                 self.num_pages + 1)
            else:
                yield from range(number + 1, self.num_pages + 1)

    class Page(collections.abc.Sequence):
        """Django 3.2's Page, for a program without Django."""

        def __init__(self, object_list, number, paginator):
            self.object_list = object_list
            self.number = number
            self.paginator = paginator

        def __repr__(self):
            return "<Page %s of %s>" % (self.number,
                                        self.paginator.num_pages)

        def __len__(self):
            return len(self.object_list)

        def __getitem__(self, index):
            if not isinstance(index, (int, slice)):
                raise TypeError(
                    "Page indices must be integers or slices, not %s."
                    % type(index).__name__)
            if not isinstance(self.object_list, list):
                self.object_list = list(self.object_list)
            return self.object_list[index]

        def has_next(self):
            return self.number < self.paginator.num_pages

        def has_previous(self):
            return self.number > 1

        def has_other_pages(self):
            return self.has_previous() or self.has_next()

        def next_page_number(self):
            return self.paginator.validate_number(self.number + 1)

        def previous_page_number(self):
            return self.paginator.validate_number(self.number - 1)

        def start_index(self):
            """The 1-based index of the first object on this page."""
            if self.paginator.count == 0:
                return 0
            return (self.paginator.per_page * (self.number - 1)) + 1

        def end_index(self):
            """The 1-based index of the last object on this page."""
            if self.number == self.paginator.num_pages:
                return self.paginator.count
            return self.number * self.paginator.per_page


# ------------------------------------------------------------ Redis views


class _RedisSequence(collections.abc.Sequence):
    """A read-only sequence over a Redis key: len() asks Redis for the
    count, a slice reads exactly its items, iteration reads chunk items at
    a time."""

    chunk = 1000

    def __init__(self, conn, key):
        self.conn = conn
        self.key = key

    def _count(self):
        raise NotImplementedError

    def _range(self, offset, count):
        """count items from offset (both >= 0)."""
        raise NotImplementedError

    def __len__(self):
        return self._count()

    def count(self):
        return self._count()

    def __getitem__(self, index):
        if isinstance(index, slice):
            start, stop, step = index.start, index.stop, index.step
            if step not in (None, 1) or any(
                    v is not None and v < 0 for v in (start, stop)):
                # the rare forms need the length
                start, stop, step = index.indices(self._count())
                if step != 1:
                    return list(self)[index]
            start = start or 0
            if stop is None:
                stop = self._count()
            if stop <= start:
                return []
            return self._range(start, stop - start)
        if not isinstance(index, int):
            raise TypeError("indices must be integers or slices, not %s"
                            % type(index).__name__)
        if index < 0:
            index += self._count()
            if index < 0:
                raise IndexError("index out of range")
        got = self._range(index, 1)
        if not got:
            raise IndexError("index out of range")
        return got[0]

    def __iter__(self):
        offset = 0
        while True:
            got = self._range(offset, self.chunk)
            yield from got
            if len(got) < self.chunk:
                return
            offset += len(got)

    def __repr__(self):
        return "<%s %r>" % (type(self).__name__, self.key)


class RedisList(_RedisSequence):
    """A Redis list: LLEN, LRANGE."""

    def _count(self):
        return self.conn.llen(self.key)

    def _range(self, offset, count):
        return self.conn.lrange(self.key, offset, offset + count - 1)


def _bound(value, name):
    """A score bound as Redis takes it: a number, "-inf"/"+inf", or
    "(" and a number for an exclusive bound."""
    if isinstance(value, bool):
        raise TypeError("%s: a number or a Redis score bound" % name)
    if isinstance(value, (int, float)):
        if value != value:
            raise ValueError("%s: NaN is not a score" % name)
        if value == math.inf:
            return "+inf"
        if value == -math.inf:
            return "-inf"
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if not isinstance(value, str):
        raise TypeError("%s: a number or a Redis score bound" % name)
    s = value.strip()
    if s.lower() in ("-inf", "+inf", "inf"):
        return "+inf" if s.lower() in ("+inf", "inf") else "-inf"
    num = s[1:] if s.startswith("(") else s
    try:
        f = float(num)
    except ValueError:
        raise ValueError("%s: %r is not a Redis score bound (a number, "
                         "'(' and a number, '-inf' or '+inf')"
                         % (name, value))
    if f != f:
        raise ValueError("%s: NaN is not a score" % name)
    return s


class RedisZSet(_RedisSequence):
    """A sorted set, or its members whose scores are within [score_min,
    score_max], ascending or (reverse) descending: ZCARD or ZCOUNT, ZRANGE
    or ZRANGEBYSCORE with LIMIT (and the REV forms)."""

    def __init__(self, conn, key, score_min="-inf", score_max="+inf",
                 reverse=False, withscores=False):
        super().__init__(conn, key)
        self.score_min = _bound(score_min, "score_min")
        self.score_max = _bound(score_max, "score_max")
        self.reverse = bool(reverse)
        self.withscores = bool(withscores)
        self.whole = self.score_min == "-inf" and self.score_max == "+inf"

    def _count(self):
        if self.whole:
            return self.conn.zcard(self.key)
        return self.conn.zcount(self.key, self.score_min, self.score_max)

    def _range(self, offset, count):
        if self.whole:
            f = self.conn.zrevrange if self.reverse else self.conn.zrange
            return f(self.key, offset, offset + count - 1,
                     withscores=self.withscores)
        if self.reverse:
            return self.conn.zrevrangebyscore(
                self.key, self.score_max, self.score_min, start=offset,
                num=count, withscores=self.withscores)
        return self.conn.zrangebyscore(
            self.key, self.score_min, self.score_max, start=offset,
            num=count, withscores=self.withscores)


# ------------------------------------------------------------- paginators


class _RedisPaginator(Paginator):

    def _check_object_list_is_ordered(self):
        pass                    # Redis keeps lists and sorted sets ordered

    @cached_property
    def count(self):
        """The number of objects, across all pages (asked once)."""
        return self.object_list.count()

    def page(self, number):
        """The Page for the given 1-based page number: one range read of
        its items."""
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        items = self.object_list[bottom:top] if top > bottom else []
        return self._get_page(list(items), number, self)


class ListPaginator(_RedisPaginator):
    """Django's Paginator over the Redis list at key (conn: a redis-py
    client; items as it returns them: bytes, or str with
    decode_responses)."""

    def __init__(self, conn, key, per_page, orphans=0,
                 allow_empty_first_page=True):
        self.conn = conn
        self.key = key
        super().__init__(RedisList(conn, key), per_page, orphans,
                         allow_empty_first_page)


class ZSetPaginator(_RedisPaginator):
    """Django's Paginator over the Redis sorted set at key: its members by
    ascending score (reverse: descending), only those whose scores are
    within score_min and score_max (numbers, "-inf", "+inf", or "(" and a
    number for an exclusive bound, as Redis takes them); withscores: items
    are (member, score) pairs."""

    def __init__(self, conn, key, per_page, orphans=0,
                 allow_empty_first_page=True, score_min="-inf",
                 score_max="+inf", reverse=False, withscores=False):
        self.conn = conn
        self.key = key
        view = RedisZSet(conn, key, score_min, score_max, reverse,
                         withscores)
        self.score_min = view.score_min
        self.score_max = view.score_max
        self.reverse = view.reverse
        self.withscores = view.withscores
        super().__init__(view, per_page, orphans, allow_empty_first_page)
