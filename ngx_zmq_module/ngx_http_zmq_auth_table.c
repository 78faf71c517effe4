
/*
 * ngx_zmq: the bounded per-worker tables behind security checks: the cache
 * of verified credentials and the counts of failed attempts. Entries are
 * found by a 32-byte keyed hash (never by a credential), expire, and the
 * least recently used one gives way when a table is full.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_zmq_auth.h"


static void ngx_http_zmq_auth_table_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_rbtree_key_t ngx_http_zmq_auth_table_key(u_char *id);


void
ngx_http_zmq_auth_table_init(ngx_http_zmq_auth_table_t *t, ngx_uint_t max)
{
    ngx_rbtree_init(&t->rbtree, &t->sentinel,
                    ngx_http_zmq_auth_table_insert);
    ngx_queue_init(&t->lru);
    t->n = 0;
    t->max = max;
}


static ngx_rbtree_key_t
ngx_http_zmq_auth_table_key(u_char *id)
{
    ngx_rbtree_key_t  key;

    ngx_memcpy(&key, id, sizeof(ngx_rbtree_key_t));
    return key;
}


static void
ngx_http_zmq_auth_table_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_http_zmq_auth_entry_t   *e, *et;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            e = (ngx_http_zmq_auth_entry_t *) node;
            et = (ngx_http_zmq_auth_entry_t *) temp;
            p = (ngx_memcmp(e->id, et->id, NGX_HTTP_ZMQ_DIGEST_LEN) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


ngx_http_zmq_auth_entry_t *
ngx_http_zmq_auth_table_find(ngx_http_zmq_auth_table_t *t, u_char *id)
{
    ngx_int_t                   rc;
    ngx_rbtree_key_t            key;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_zmq_auth_entry_t  *e;

    key = ngx_http_zmq_auth_table_key(id);
    node = t->rbtree.root;
    sentinel = t->rbtree.sentinel;

    while (node != sentinel) {

        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        e = (ngx_http_zmq_auth_entry_t *) node;
        rc = ngx_memcmp(id, e->id, NGX_HTTP_ZMQ_DIGEST_LEN);

        if (rc == 0) {
            if ((ngx_msec_int_t) (e->expires - ngx_current_msec) <= 0) {
                ngx_http_zmq_auth_table_remove(t, e);
                return NULL;
            }

            ngx_queue_remove(&e->queue);
            ngx_queue_insert_head(&t->lru, &e->queue);
            return e;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


ngx_http_zmq_auth_entry_t *
ngx_http_zmq_auth_table_add(ngx_http_zmq_auth_table_t *t, u_char *id,
    ngx_log_t *log)
{
    ngx_queue_t                *q;
    ngx_http_zmq_auth_entry_t  *e;

    e = ngx_http_zmq_auth_table_find(t, id);
    if (e != NULL) {
        ngx_http_zmq_auth_table_remove(t, e);
    }

    if (t->n >= t->max && !ngx_queue_empty(&t->lru)) {
        q = ngx_queue_last(&t->lru);
        ngx_http_zmq_auth_table_remove(t,
            ngx_queue_data(q, ngx_http_zmq_auth_entry_t, queue));
    }

    e = ngx_calloc(sizeof(ngx_http_zmq_auth_entry_t), log);
    if (e == NULL) {
        return NULL;
    }

    ngx_memcpy(e->id, id, NGX_HTTP_ZMQ_DIGEST_LEN);
    e->node.key = ngx_http_zmq_auth_table_key(id);

    ngx_rbtree_insert(&t->rbtree, &e->node);
    ngx_queue_insert_head(&t->lru, &e->queue);
    t->n++;

    return e;
}


void
ngx_http_zmq_auth_table_remove(ngx_http_zmq_auth_table_t *t,
    ngx_http_zmq_auth_entry_t *e)
{
    ngx_rbtree_delete(&t->rbtree, &e->node);
    ngx_queue_remove(&e->queue);
    t->n--;

    if (e->principal.data != NULL) {
        ngx_free(e->principal.data);
    }

    if (e->claims != NULL) {
        json_decref(e->claims);
    }

    ngx_explicit_memzero(e, sizeof(ngx_http_zmq_auth_entry_t));
    ngx_free(e);
}


void
ngx_http_zmq_auth_table_clear(ngx_http_zmq_auth_table_t *t)
{
    ngx_queue_t  *q;

    while (!ngx_queue_empty(&t->lru)) {
        q = ngx_queue_head(&t->lru);
        ngx_http_zmq_auth_table_remove(t,
            ngx_queue_data(q, ngx_http_zmq_auth_entry_t, queue));
    }
}
