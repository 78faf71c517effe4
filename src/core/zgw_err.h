/*
 * ngx_zmq core: error lists.
 *
 * Every core call that can fail fills a zgw_errors_t with messages a person
 * can act on; validation keeps going after the first error so that an
 * operator sees every problem of a document at once.
 */

#ifndef ZGW_ERR_H
#define ZGW_ERR_H

#include <stddef.h>


#define ZGW_OK      0
#define ZGW_ERROR  -1

#define ZGW_SHOW_MAX   200                  /* bytes of a peer's text */
#define ZGW_SHOW_SIZE  (ZGW_SHOW_MAX + 4)   /* with "..." and the NUL */


typedef struct {
    size_t   n;
    size_t   cap;
    char   **msgs;
} zgw_errors_t;


void zgw_errors_init(zgw_errors_t *errs);
void zgw_errors_free(zgw_errors_t *errs);
void zgw_errors_clear(zgw_errors_t *errs);
void zgw_errors_add(zgw_errors_t *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* moves every message of src to the end of dst; src is left empty */
void zgw_errors_move(zgw_errors_t *dst, zgw_errors_t *src);
/* the first message, or "" */
const char *zgw_errors_first(const zgw_errors_t *errs);

/*
 * Whether byte c may be shown as it is: printable ASCII, 0x20 (space) to
 * 0x7e. No control character, DEL or byte >= 0x80 (a char is converted,
 * so a negative one is a byte >= 0x80). The one test behind zgw_show()
 * and everything else that shows or keeps a peer's text only printable.
 */
int zgw_printable(unsigned char c);

/*
 * What may be shown (logged, printed, put in a message) of a text a peer
 * chose: a Redis error reply, a sentinel's answer. A hostile store can
 * answer anything, so every byte that is not printable ASCII becomes '?'
 * (no control characters, no escape sequences, no line breaks in a log)
 * and the text is cut to ZGW_SHOW_MAX bytes (and to what fits in size),
 * ending with "..." when cut. s may be NULL (shown as ""). Returns out,
 * NUL-ended; out of ZGW_SHOW_SIZE bytes holds any text.
 */
const char *zgw_show(char *out, size_t size, const char *s, size_t len);

#endif /* ZGW_ERR_H */
