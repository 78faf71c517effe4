/*
 * libFuzzer target: the configuration model on arbitrary bytes.
 *
 * What an operator can hand zmqctl import, a zmq_config file or the admin
 * API: any bytes as a configuration document. The model must never crash,
 * must explain every refusal, and what it accepts must survive its own
 * export: export -> load -> export gives the same document.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zgw_model.h"


static void
fuzz_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_model: %s%s%s\n", what, detail ? ": " : "",
            detail ? detail : "");
    abort();
}


static void
fuzz_check_refused(int rc, const zgw_errors_t *errs, const char *what)
{
    size_t  i;

    if (rc != ZGW_OK && errs->n == 0) {
        fuzz_fail(what, "refused without saying why");
    }

    for (i = 0; i < errs->n; i++) {
        if (errs->msgs[i] == NULL || errs->msgs[i][0] == '\0') {
            fuzz_fail(what, "an empty error message");
        }
    }
}


static void
fuzz_exercise(zgw_config_t *cfg)
{
    int            k;
    char          *text;
    json_t        *obj, *exp;
    const char    *name;
    zgw_errors_t   errs;

    zgw_errors_init(&errs);

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        json_object_foreach(cfg->objs[k], name, obj) {
            if (zgw_config_get(cfg, k, name) != obj) {
                fuzz_fail("zgw_config_get", name);
            }

            text = zgw_object_dump(k, obj);
            if (text == NULL) {
                fuzz_fail("zgw_object_dump", name);
            }
            free(text);

            exp = zgw_object_export(k, obj, 0);
            json_decref(exp);

            (void) zgw_config_referrers(cfg, k, name, &errs);
            zgw_errors_clear(&errs);
        }
    }

    zgw_errors_free(&errs);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            rc, flags;
    char          *a, *b;
    json_t        *doc, *again;
    zgw_config_t  *cfg, *cfg2, *copy;
    zgw_errors_t   errs;

    /* the first byte picks the load flags, the rest is the document */
    if (size < 1) {
        return 0;
    }

    flags = (data[0] & 1) ? ZGW_LOAD_NO_REFS : 0;
    data++;
    size--;

    zgw_errors_init(&errs);
    cfg = zgw_config_new();

    rc = zgw_config_load_text(cfg, (const char *) data, size, "fuzz.json",
                              flags, &errs);
    fuzz_check_refused(rc, &errs, "zgw_config_load_text");

    if (rc == ZGW_OK) {
        fuzz_exercise(cfg);

        copy = zgw_config_copy(cfg);
        if (copy == NULL) {
            fuzz_fail("zgw_config_copy", NULL);
        }

        if (!(flags & ZGW_LOAD_NO_REFS)) {
            zgw_errors_clear(&errs);
            if (zgw_config_check_refs(copy, &errs) != ZGW_OK) {
                fuzz_fail("a loaded configuration fails check_refs",
                          zgw_errors_first(&errs));
            }
        }

        zgw_config_free(copy);

        /* what was accepted survives its own export */

        doc = zgw_config_export(cfg, ZGW_EXPORT_SEALED);
        if (doc == NULL) {
            fuzz_fail("zgw_config_export", NULL);
        }

        a = json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT);

        cfg2 = zgw_config_new();
        zgw_errors_clear(&errs);
        if (zgw_config_load_doc(cfg2, doc, flags, &errs) != ZGW_OK) {
            fprintf(stderr, "export: %s\n", a);
            fuzz_fail("an exported configuration does not load",
                      zgw_errors_first(&errs));
        }

        again = zgw_config_export(cfg2, ZGW_EXPORT_SEALED);
        b = json_dumps(again, JSON_SORT_KEYS | JSON_COMPACT);

        if (a == NULL || b == NULL || strcmp(a, b) != 0) {
            fprintf(stderr, "first export:  %s\nsecond export: %s\n",
                    a ? a : "(null)", b ? b : "(null)");
            fuzz_fail("export -> load -> export changed the document",
                      NULL);
        }

        free(a);
        free(b);
        json_decref(again);
        json_decref(doc);
        zgw_config_free(cfg2);
    }

    zgw_config_free(cfg);
    zgw_errors_free(&errs);

    return 0;
}
