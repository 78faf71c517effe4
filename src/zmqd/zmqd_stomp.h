/*
 * zmqd: STOMP 1.2 consumption (issue 16).
 *
 *   zmqd_stomp_frame.c    the frame reader and writer: no I/O, no other
 *                         zmqd part (the unit test and the fuzz target
 *                         include it alone)
 *   zmqd_stomp.c          a small blocking STOMP 1.2 client: every wait
 *                         bounded, heart-beats sent by a thread of its own
 *   zmqd_stomp_channel.c  stomp_channel objects consumed into services
 */

#ifndef ZMQD_STOMP_H
#define ZMQD_STOMP_H

#include <stddef.h>


/* what one frame may hold: more is a protocol error (and a reconnect) */
#define ZMQD_STOMP_HEADERS_MAX  128
#define ZMQD_STOMP_HEAD_MAX     65536           /* command and headers */
#define ZMQD_STOMP_BODY_MAX     16777216
#define ZMQD_STOMP_COMMAND_MAX  32


typedef struct {
    char   *name;                   /* unescaped, NUL-terminated */
    char   *value;
} zmqd_stomp_header_t;


typedef struct {
    char                 *command;
    zmqd_stomp_header_t   headers[ZMQD_STOMP_HEADERS_MAX];
    int                   nheaders;
    char                 *body;      /* malloc'd, NUL after len */
    size_t                len;
    int                   has_length;   /* content-length was given */
    char                 *mem;       /* the head's copy */
} zmqd_stomp_frame_t;


#define ZMQD_STOMP_MORE    0
#define ZMQD_STOMP_FRAME   1
#define ZMQD_STOMP_BAD    -1
#define ZMQD_STOMP_NOMEM  -2

/*
 * One frame from buf (len bytes). Heart-beat EOLs before it are skipped.
 * unescape: undo the 1.2 escapes in header names and values (every frame
 * but CONNECTED). Returns ZMQD_STOMP_FRAME (f filled, *used bytes taken),
 * ZMQD_STOMP_MORE (*used: the EOLs that may be dropped), or ZMQD_STOMP_BAD
 * / ZMQD_STOMP_NOMEM with err filled (the connection must be dropped).
 */
int zmqd_stomp_parse(const char *buf, size_t len, int unescape,
    zmqd_stomp_frame_t *f, size_t *used, char *err, size_t errlen);
void zmqd_stomp_frame_free(zmqd_stomp_frame_t *f);
/* the first header of that name (1.2: repeated ones do not count) */
const char *zmqd_stomp_get(const zmqd_stomp_frame_t *f, const char *name);

/* a frame's bytes being built: malloc'd, grows */
typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    int      failed;                /* out of memory */
} zmqd_stomp_out_t;

void zmqd_stomp_out_command(zmqd_stomp_out_t *o, const char *command);
/* "name:value\n", escaped unless raw (CONNECT) */
void zmqd_stomp_out_header(zmqd_stomp_out_t *o, const char *name,
    const char *value, int raw);
/* the same with names and values of given lengths (NUL-free) */
void zmqd_stomp_out_headern(zmqd_stomp_out_t *o, const char *name,
    size_t nlen, const char *value, size_t vlen, int raw);
/* content-length (with_length), the blank line, the body and the NUL */
void zmqd_stomp_out_body(zmqd_stomp_out_t *o, const void *body, size_t len,
    int with_length);
/*
 * The body as ActiveMQ's TextMessage (use_jms, a textual content type):
 * valid UTF-8 goes without content-length, in Java's modified UTF-8 (NUL
 * as C0 80, characters beyond U+FFFF as two 3-byte surrogates), and 1 is
 * returned; anything else goes as zmqd_stomp_out_body with content-length
 * (a BytesMessage), and 0 is returned.
 */
int zmqd_stomp_out_text(zmqd_stomp_out_t *o, const void *body, size_t len);
/*
 * A TextMessage's body as ActiveMQ sends it (Java's modified UTF-8: NUL
 * as C0 80, a character beyond U+FFFF as two 3-byte surrogates) made
 * UTF-8, in place; returns the new length (never more)
 */
size_t zmqd_stomp_from_modified(char *body, size_t len);
/* text/..., application/json, application/xml, ...+json, ...+xml */
int zmqd_stomp_is_text(const char *content_type);
void zmqd_stomp_out_free(zmqd_stomp_out_t *o);

#endif /* ZMQD_STOMP_H */
