/*
 * ngx_zmq unit tests: shared helpers (cmocka).
 */

#ifndef ZGW_TEST_UTIL_H
#define ZGW_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "zgw_err.h"


/* true when some message of errs contains needle */
static inline int
zgw_test_errors_have(const zgw_errors_t *errs, const char *needle)
{
    size_t  i;

    for (i = 0; i < errs->n; i++) {
        if (strstr(errs->msgs[i], needle) != NULL) {
            return 1;
        }
    }

    return 0;
}


static inline void
zgw_test_print_errors(const zgw_errors_t *errs)
{
    size_t  i;

    for (i = 0; i < errs->n; i++) {
        print_message("    error: %s\n", errs->msgs[i]);
    }
}

#endif /* ZGW_TEST_UTIL_H */
