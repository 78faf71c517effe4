/*
 * zmqctl passwd: sets the secret of one object, read from a terminal
 * (twice, without echo) or from the first line of standard input, never
 * from the command line (where ps and shell histories show it). It is
 * sealed or hashed by zgw_config_seal(), exactly as import does, and
 * written with the store's atomic write.
 */

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "zgw_passwd.h"
#include "zmqctl.h"


#define ZMQCTL_SECRET_MAX  4096


static const char *zmqctl_passwd_field(int kind, const json_t *obj,
    const char *name);
static void zmqctl_tty_signal(int sig);
static int zmqctl_read_line(int fd, char *buf, size_t size);
static int zmqctl_read_secret(const char *field, int kind, const char *name,
    char *buf, size_t size);
static int zmqctl_passwd_write(zmqctl_opts_t *o, int kind, const char *name,
    const char *secret);


static struct termios          zmqctl_tty_saved;
static volatile sig_atomic_t   zmqctl_tty_changed;


/* the field of obj that passwd sets, or NULL after saying why not */
static const char *
zmqctl_passwd_field(int kind, const json_t *obj, const char *name)
{
    char         why[512];
    const char  *field;

    field = zgw_passwd_field(kind, name, obj, why, sizeof(why));
    if (field == NULL) {
        fprintf(stderr, "zmqctl: %s\n", why);
    }

    return field;
}


/* a signal while echo is off: echo back on, then the default action */
static void
zmqctl_tty_signal(int sig)
{
    if (zmqctl_tty_changed) {
        (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &zmqctl_tty_saved);
    }

    (void) signal(sig, SIG_DFL);
    (void) raise(sig);
}


/*
 * One line of fd, without its end ("\n", or "\r\n"), read byte by byte
 * (nothing past the line is consumed), each wait bounded. 0, or -1 with
 * a message.
 */
static int
zmqctl_read_line(int fd, char *buf, size_t size)
{
    int      rc;
    char     c;
    size_t   n;
    ssize_t  got;

    n = 0;

    for ( ;; ) {
        rc = zmqctl_wait_fd(fd, POLLIN, ZMQCTL_INPUT_TIMEOUT_MS);
        if (rc == 0) {
            fprintf(stderr, "\nzmqctl: no input for %d seconds\n",
                    ZMQCTL_INPUT_TIMEOUT_MS / 1000);
            return -1;
        }

        got = rc < 0 ? -1 : read(fd, &c, 1);

        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "zmqctl: reading the secret: %s\n",
                    strerror(errno));
            return -1;
        }

        if (got == 0 || c == '\n') {
            break;
        }

        if (c == '\0') {
            OPENSSL_cleanse(buf, size);
            fprintf(stderr, "zmqctl: the secret holds a NUL byte\n");
            return -1;
        }

        /* room for the '\r' of a "\r\n" and the NUL */
        if (n + 1 >= size) {
            n = size;
            break;
        }

        buf[n++] = c;
    }

    if (n > 0 && n < size && buf[n - 1] == '\r') {
        n--;
    }

    if (n > size - 2) {
        OPENSSL_cleanse(buf, size);
        fprintf(stderr, "zmqctl: the secret is longer than %d bytes\n",
                ZMQCTL_SECRET_MAX);
        return -1;
    }

    buf[n] = '\0';
    return 0;
}


/*
 * From a terminal: twice, echo off (ECHONL still shows the line end), the
 * terminal restored on the way out and on SIGINT, SIGTERM, SIGHUP and
 * SIGQUIT. Otherwise the first line of standard input.
 */
static int
zmqctl_read_secret(const char *field, int kind, const char *name, char *buf,
    size_t size)
{
    int               rc, i;
    char             *again;
    struct termios    t;
    struct sigaction  sa, old[4];

    static const int  sigs[4] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };

    if (!isatty(STDIN_FILENO)) {
        return zmqctl_read_line(STDIN_FILENO, buf, size);
    }

    if (tcgetattr(STDIN_FILENO, &zmqctl_tty_saved) != 0) {
        fprintf(stderr, "zmqctl: the terminal: %s\n", strerror(errno));
        return -1;
    }

    again = malloc(size);
    if (again == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        return -1;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = zmqctl_tty_signal;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < 4; i++) {
        (void) sigaction(sigs[i], &sa, &old[i]);
    }

    t = zmqctl_tty_saved;
    t.c_lflag &= ~(tcflag_t) ECHO;
    t.c_lflag |= ECHONL;

    zmqctl_tty_changed = 1;
    rc = -1;

    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) != 0) {
        fprintf(stderr, "zmqctl: the terminal: %s\n", strerror(errno));
        goto done;
    }

    fprintf(stderr, "New %s of %s '%s': ", field, zgw_kind_name(kind), name);
    fflush(stderr);

    if (zmqctl_read_line(STDIN_FILENO, buf, size) != 0) {
        goto done;
    }

    if (buf[0] == '\0') {
        rc = 0;                         /* refused by the caller */
        goto done;
    }

    fprintf(stderr, "Retype the new %s: ", field);
    fflush(stderr);

    if (zmqctl_read_line(STDIN_FILENO, again, size) != 0) {
        goto done;
    }

    if (strcmp(buf, again) != 0) {
        fprintf(stderr, "zmqctl: the two entries do not match\n");
        goto done;
    }

    rc = 0;

done:

    (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &zmqctl_tty_saved);
    zmqctl_tty_changed = 0;

    for (i = 0; i < 4; i++) {
        (void) sigaction(sigs[i], &old[i], NULL);
    }

    OPENSSL_cleanse(again, size);
    free(again);

    if (rc != 0) {
        OPENSSL_cleanse(buf, size);
    }

    return rc;
}


/* the store's object with its secret replaced, sealed, in one write */
static int
zmqctl_passwd_write(zmqctl_opts_t *o, int kind, const char *name,
    const char *secret)
{
    int            rc;
    json_t        *cur, *obj, *v;
    size_t         changes;
    long long      version;
    const char    *field;
    zgw_store_t   *st;
    zgw_errors_t   errs;
    zgw_config_t  *prev, *next;

    rc = ZMQCTL_EXIT_FAIL;
    prev = NULL;
    next = NULL;
    obj = NULL;
    changes = 0;
    version = 0;
    zgw_errors_init(&errs);

    st = zmqctl_connect(o);
    if (st == NULL) {
        goto done;
    }

    prev = zmqctl_load(st, 1);
    if (prev == NULL) {
        goto done;
    }

    /* as it is now: it may have changed while the secret was typed */
    cur = zmqctl_object(prev, kind, name);
    if (cur == NULL) {
        goto done;
    }

    field = zmqctl_passwd_field(kind, cur, name);
    if (field == NULL) {
        goto done;
    }

    v = json_string(secret);
    if (v == NULL) {
        fprintf(stderr, "zmqctl: the %s is not valid UTF-8 text\n", field);
        goto done;
    }

    next = zgw_config_copy(prev);
    obj = json_deep_copy(cur);
    if (next == NULL || obj == NULL) {
        json_decref(v);
        fprintf(stderr, "zmqctl: out of memory\n");
        goto done;
    }

    next->version = prev->version;
    json_object_set_new(obj, field, v);

    if (zgw_config_put(next, kind, obj, name, &errs) == ZGW_OK
        && zmqctl_seal(o, next, prev, 1, &errs) == ZGW_OK)
    {
        zgw_store_apply(st, prev, next, 0, &version, &changes, &errs);
    }

    if (errs.n) {
        zmqctl_print_errors("passwd", &errs);
        fprintf(stderr, "zmqctl: nothing was written\n");
        goto done;
    }

    if (changes == 0) {
        printf("the new %s of %s '%s' is the one stored: nothing was "
               "written, version %lld\n", field, zgw_kind_name(kind), name,
               version);
    } else {
        printf("set the %s of %s '%s': version %lld\n", field,
               zgw_kind_name(kind), name, version);
    }

    rc = ZMQCTL_EXIT_OK;

done:

    json_decref(obj);
    zgw_errors_free(&errs);
    zgw_config_free(prev);
    zgw_config_free(next);
    zgw_store_close(st);
    return rc;
}


int
zmqctl_passwd(zmqctl_opts_t *o)
{
    int            kind, rc;
    char          *secret;
    json_t        *obj;
    const char    *name, *field;
    zgw_config_t  *cfg;

    kind = zmqctl_kind_arg(o->argv[0]);
    if (kind < 0) {
        return ZMQCTL_EXIT_USAGE;
    }

    name = o->argv[1];

    /* what would be set, before anything is asked */
    cfg = zmqctl_snapshot(o, 1);
    if (cfg == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    obj = zmqctl_object(cfg, kind, name);
    field = obj != NULL ? zmqctl_passwd_field(kind, obj, name) : NULL;
    zgw_config_free(cfg);

    if (field == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    secret = malloc(ZMQCTL_SECRET_MAX + 2);
    if (secret == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        return ZMQCTL_EXIT_FAIL;
    }

    if (zmqctl_read_secret(field, kind, name, secret, ZMQCTL_SECRET_MAX + 2)
        != 0)
    {
        fprintf(stderr, "zmqctl: nothing was written\n");
        rc = ZMQCTL_EXIT_FAIL;

    } else if (secret[0] == '\0') {
        fprintf(stderr, "zmqctl: an empty %s is refused; nothing was "
                "written\n", field);
        rc = ZMQCTL_EXIT_FAIL;

    } else {
        rc = zmqctl_passwd_write(o, kind, name, secret);
    }

    OPENSSL_cleanse(secret, ZMQCTL_SECRET_MAX + 2);
    free(secret);
    return rc;
}


unsigned char *
zmqctl_read_all(int fd, const char *what, size_t max, int timeout_ms,
    size_t *len)
{
    int             rc;
    size_t          n, size;
    ssize_t         got;
    unsigned char  *buf, *p;

    n = 0;
    size = 65536;
    buf = malloc(size);
    if (buf == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        return NULL;
    }

    for ( ;; ) {
        if (n == size) {
            if (size > max) {
                fprintf(stderr, "zmqctl: %s: larger than %zu bytes, the "
                        "largest message body\n", what, max);
                free(buf);
                return NULL;
            }

            size = size * 2 > max ? max + 1 : size * 2;
            p = realloc(buf, size);
            if (p == NULL) {
                fprintf(stderr, "zmqctl: out of memory\n");
                free(buf);
                return NULL;
            }
            buf = p;
        }

        rc = zmqctl_wait_fd(fd, POLLIN, timeout_ms);
        if (rc == 0) {
            fprintf(stderr, "zmqctl: %s: no input for %d seconds\n", what,
                    timeout_ms / 1000);
            free(buf);
            return NULL;
        }

        got = rc < 0 ? -1 : read(fd, buf + n, size - n);

        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "zmqctl: %s: %s\n", what, strerror(errno));
            free(buf);
            return NULL;
        }

        if (got == 0) {
            break;
        }

        n += (size_t) got;
    }

    if (n > max) {
        fprintf(stderr, "zmqctl: %s: larger than %zu bytes, the largest "
                "message body\n", what, max);
        free(buf);
        return NULL;
    }

    *len = n;
    return buf;
}
