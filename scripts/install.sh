#!/bin/bash
# make install / make uninstall (scripts/install.sh install|uninstall).
#
# Installs the module where Debian's nginx keeps its modules, with the
# modules-available snippet that loads it; zmqd and zmqctl; zmqd's systemd
# unit and /etc/default/zmqd (only when there is none: it is the
# operator's file); the web-admin; the examples. Every file and every
# directory it had to create is listed in a manifest,
# $PREFIX/share/ngx-zmq/install-manifest, so that uninstall removes exactly
# that: the files, then the directories it created, if they are empty.
# /etc/default/zmqd is removed only if unchanged (like a conffile).
#
# Variables (from the Makefile): DESTDIR PREFIX BINDIR MODULEDIR MODAVAILDIR
# UNITDIR SYSCONFDIR DOCDIR DATADIR BUILD
set -euo pipefail

PROJECT=$(cd "$(dirname "$0")/.." && pwd)
: "${DESTDIR:=}" "${PREFIX:=/usr/local}"
: "${BINDIR:=$PREFIX/bin}" "${MODULEDIR:=/usr/lib/nginx/modules}"
: "${MODAVAILDIR:=/usr/share/nginx/modules-available}"
: "${UNITDIR:=$PREFIX/lib/systemd/system}" "${SYSCONFDIR:=/etc}"
: "${DATADIR:=$PREFIX/share/ngx-zmq}" "${DOCDIR:=$PREFIX/share/doc/ngx-zmq}"
: "${BUILD:=$PROJECT/build}"

MANIFEST=$DATADIR/install-manifest
WEBDIR=$DATADIR/web
DEFAULT=$SYSCONFDIR/default/zmqd

subst() {
    sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@DOCDIR@|$DOCDIR|g" \
        -e "s|@WEBDIR@|$WEBDIR|g" -e "s|@MODAVAIL@|$MODAVAILDIR|g" "$1"
}

# the files: mode, target path (without DESTDIR), source
files() {
    echo "0644 $MODULEDIR/ngx_http_zmq_module.so $BUILD/ngx_http_zmq_module.so"
    echo "0644 $MODAVAILDIR/mod-http-zmq.conf $PROJECT/packaging/mod-http-zmq.conf"
    echo "0755 $BINDIR/zmqd $BUILD/zmqd"
    echo "0755 $BINDIR/zmqctl $BUILD/zmqctl"
    echo "0644 $UNITDIR/zmqd.service subst:$PROJECT/packaging/zmqd.service.in"
    echo "0644 $DOCDIR/examples/zmq.conf subst:$PROJECT/packaging/nginx-zmq.conf.in"
    echo "0644 $DOCDIR/examples/demo.json $PROJECT/conf/demo.json"
    echo "0644 $DOCDIR/examples/zmqd.default $PROJECT/packaging/zmqd.default"
    for f in index.html app.css app.js forms.js; do
        echo "0644 $WEBDIR/$f $PROJECT/web/$f"
    done
}

# creates the missing directories of $1 (under DESTDIR), recording each
mkdirs() {
    local d=$1 missing=()
    while [ ! -d "$DESTDIR$d" ]; do
        missing=("$d" "${missing[@]}")
        d=$(dirname "$d")
    done
    for d in "${missing[@]}"; do
        install -d -m 0755 "$DESTDIR$d"
        echo "d $d" >> "$NEW"
    done
}

do_install() {
    local mode path src tmp
    while read -r mode path src; do
        src=${src#subst:}
        [ -f "$src" ] || { echo "install: $src is missing (run make)" >&2
                           exit 1; }
    done < <(files)

    NEW=$(mktemp)
    trap 'rm -f "$NEW"' EXIT
    # directories an earlier install created stay recorded
    if [ -f "$DESTDIR$MANIFEST" ]; then
        grep '^d ' "$DESTDIR$MANIFEST" >> "$NEW" || true
    fi

    while read -r mode path src; do
        mkdirs "$(dirname "$path")"
        if [ "${src#subst:}" != "$src" ]; then
            tmp=$(mktemp)
            subst "${src#subst:}" > "$tmp"
            install -m "$mode" "$tmp" "$DESTDIR$path"
            rm -f "$tmp"
        else
            install -m "$mode" "$src" "$DESTDIR$path"
        fi
        echo "f $path" >> "$NEW"
        echo "install: $path"
    done < <(files)

    # the operator's file: written only when there is none (one an earlier
    # install wrote stays recorded, changed or not)
    local old
    old=$(grep "^c $DEFAULT " "$DESTDIR$MANIFEST" 2>/dev/null || true)
    if [ ! -e "$DESTDIR$DEFAULT" ]; then
        mkdirs "$(dirname "$DEFAULT")"
        install -m 0644 "$PROJECT/packaging/zmqd.default" "$DESTDIR$DEFAULT"
        echo "install: $DEFAULT"
        echo "c $DEFAULT $(sha256sum < "$DESTDIR$DEFAULT" | cut -d' ' -f1)" \
            >> "$NEW"
    elif [ -n "$old" ]; then
        echo "$old" >> "$NEW"
    else
        echo "install: $DEFAULT exists: left as it is"
    fi

    mkdirs "$(dirname "$MANIFEST")"
    echo "f $MANIFEST" >> "$NEW"
    # unique lines, directories last (uninstall removes them in reverse)
    { grep -v '^d ' "$NEW" | sort -u; grep '^d ' "$NEW" | awk '!seen[$0]++'; } \
        > "$NEW.sorted"
    install -m 0644 "$NEW.sorted" "$DESTDIR$MANIFEST"
    rm -f "$NEW.sorted"
    echo "install: $MANIFEST"
    cat <<MSG

Installed. Enable the module the Debian way and reload NGINX:
    ln -s $MODAVAILDIR/mod-http-zmq.conf /etc/nginx/modules-enabled/50-mod-http-zmq.conf
    nginx -t && systemctl reload nginx
zmqd runs as the system user zmqd:
    adduser --system --group --no-create-home --home /nonexistent zmqd
    systemctl daemon-reload && systemctl enable --now zmqd
Examples: $DOCDIR/examples
MSG
}

do_uninstall() {
    local kind path sum dirs=()
    # paths hold no spaces (PREFIX and the directories may not)
    if [ ! -f "$DESTDIR$MANIFEST" ]; then
        echo "uninstall: $DESTDIR$MANIFEST is missing: nothing was" \
             "installed with this DESTDIR and PREFIX" >&2
        exit 1
    fi
    while read -r kind path; do
        if [ "$kind" = c ]; then
            sum=${path##* }
            path=${path% *}
        fi
        case $kind in
        f)
            [ "$path" = "$MANIFEST" ] && continue
            rm -f "$DESTDIR$path" && echo "uninstall: $path"
            ;;
        c)
            if [ -f "$DESTDIR$path" ] && [ "$(sha256sum < "$DESTDIR$path" \
                    | cut -d' ' -f1)" = "$sum" ]; then
                rm -f "$DESTDIR$path" && echo "uninstall: $path"
            elif [ -e "$DESTDIR$path" ]; then
                echo "uninstall: $path was changed: kept"
            fi
            ;;
        d)
            dirs=("$path" "${dirs[@]}")
            ;;
        esac
    done < "$DESTDIR$MANIFEST"
    rm -f "$DESTDIR$MANIFEST"
    echo "uninstall: $MANIFEST"
    # the directories install created, deepest first, when empty
    [ ${#dirs[@]} -eq 0 ] && return 0
    printf '%s\n' "${dirs[@]}" | awk '{ print length($0) "\t" $0 }' \
        | sort -rn | cut -f2- | while IFS= read -r path; do
        rmdir "$DESTDIR$path" 2>/dev/null && echo "uninstall: $path/" || true
    done
}

case ${1:-} in
install) do_install ;;
uninstall) do_uninstall ;;
*) echo "usage: $0 install|uninstall" >&2; exit 2 ;;
esac
