/*
 * zmqd: a binary min-heap of items keyed by a due time, for the messages
 * that wait for a retry: adding one and taking the next due are O(log n),
 * however many are held.
 */

#include <stdlib.h>

#include "zmqd.h"


static void
zmqd_heap_swap(zmqd_heap_t *h, size_t i, size_t j)
{
    zmqd_heap_entry_t  t;

    t = h->a[i];
    h->a[i] = h->a[j];
    h->a[j] = t;
}


static void
zmqd_heap_up(zmqd_heap_t *h, size_t i)
{
    while (i > 0 && h->a[(i - 1) / 2].due > h->a[i].due) {
        zmqd_heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}


static void
zmqd_heap_down(zmqd_heap_t *h, size_t i)
{
    size_t  l, r, m;

    for ( ;; ) {
        l = 2 * i + 1;
        r = l + 1;
        m = i;

        if (l < h->n && h->a[l].due < h->a[m].due) {
            m = l;
        }
        if (r < h->n && h->a[r].due < h->a[m].due) {
            m = r;
        }
        if (m == i) {
            return;
        }

        zmqd_heap_swap(h, i, m);
        i = m;
    }
}


int
zmqd_heap_push(zmqd_heap_t *h, double due, void *item)
{
    size_t              cap;
    zmqd_heap_entry_t  *a;

    if (h->n == h->cap) {
        cap = h->cap ? h->cap * 2 : 64;
        a = realloc(h->a, cap * sizeof(zmqd_heap_entry_t));
        if (a == NULL) {
            return -1;
        }
        h->a = a;
        h->cap = cap;
    }

    h->a[h->n].due = due;
    h->a[h->n].item = item;
    zmqd_heap_up(h, h->n++);
    return 0;
}


void *
zmqd_heap_pop_due(zmqd_heap_t *h, double now)
{
    void  *item;

    if (h->n == 0 || h->a[0].due > now) {
        return NULL;
    }

    item = h->a[0].item;
    h->a[0] = h->a[--h->n];
    zmqd_heap_down(h, 0);
    return item;
}


void
zmqd_heap_filter(zmqd_heap_t *h, int (*keep)(void *item, void *arg),
    void *arg)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < h->n; i++) {
        if (keep(h->a[i].item, arg)) {
            h->a[n++] = h->a[i];
        }
    }

    h->n = n;

    for (i = n / 2; i-- > 0; ) {
        zmqd_heap_down(h, i);
    }
}


void
zmqd_heap_free(zmqd_heap_t *h)
{
    free(h->a);
    h->a = NULL;
    h->n = h->cap = 0;
}
