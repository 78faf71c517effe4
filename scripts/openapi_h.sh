#!/bin/sh
# Writes ngx_zmq_module/ngx_http_zmq_openapi_json.h from
# ngx_zmq_module/openapi.json (make does it when the JSON changes): the
# document as one C string literal, a line of the file per line, so that
# the module serves the file byte for byte.
#   scripts/openapi_h.sh JSON HEADER
set -eu

json=$1
out=$2

{
    echo '/* generated from openapi.json by scripts/openapi_h.sh: do not edit */'
    echo
    echo 'static const char  ngx_http_zmq_openapi_json[] ='
    sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' \
        -e 's/^/    "/' -e 's/$/\\n"/' "$json"
    echo '    ;'
} > "$out.tmp"

mv -f "$out.tmp" "$out"
