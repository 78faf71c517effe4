# ngx_zmq: build, run, test.
#
#   make deps    install the Debian packages the project needs (if missing)
#   make         build build/ngx_http_zmq_module.so and build/zmqctl
#   make run     deps + build, start Redis, RabbitMQ and NGINX with the demo
#   make stop    stop what 'make run' started
#   make test    test packages (deps-test), unit tests (cmocka), integration
#                tests (pytest), the same under ASan, each fuzz target 20 s
#   make asan    unit, zmqctl and zmqd tests under AddressSanitizer
#   make fuzz    every libFuzzer target (t/fuzz) for FUZZ_SECONDS (300)
#   make install    the module, zmqd, zmqctl, zmqd.service, the examples
#                   and the web-admin (DESTDIR, PREFIX=/usr/local)
#   make uninstall  removes what make install installed (its manifest)
#   make clean

SHELL       := /bin/bash
PROJECT     := $(abspath .)
BUILD       := $(PROJECT)/build
NGX_SRC     ?= /usr/share/nginx/src
PYTHON      ?= /usr/bin/python3
PYTEST_ARGS ?=

CC          ?= cc
OPT         ?= -O2 -g
WARN        := -Wall -Wextra -Werror -Wpointer-arith
CFLAGS_ALL  := $(OPT) $(WARN) -std=gnu11 -Isrc/core $(EXTRA_CFLAGS)
LIBS        := -ljansson -lhiredis -lssl -lcrypto

CORE_SRCS   := $(wildcard src/core/*.c)
CORE_HDRS   := $(wildcard src/core/*.h)
CORE_OBJS   := $(patsubst src/core/%.c,$(BUILD)/core/%.o,$(CORE_SRCS))
MODULE_SRCS := config $(wildcard ngx_zmq_module/*.c ngx_zmq_module/*.h) \
               ngx_zmq_module/ngx_http_zmq_openapi_json.h

UNIT_TESTS  := $(patsubst t/unit/%.c,$(BUILD)/t/%,$(wildcard t/unit/test_*.c))

.PHONY: all module tools deps deps-test run stop test unit integration browser \
        test-cluster \
        bench-stomp bench-latency bench-batch bench-tls probe \
        asan clean asan-nginx fuzz fuzz-build fuzz-test bench \
        openapi-validator install uninstall

all: module tools

tools: $(BUILD)/zmqctl $(BUILD)/zmqd

module: $(BUILD)/ngx_http_zmq_module.so

deps:
	@scripts/deps.sh

# what only the tests need (clang and its libFuzzer/sanitizer runtimes,
# the OpenAPI validator)
deps-test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory openapi-validator

# an OpenAPI 3.1 validator from npm, pinned, in build/npm (not global), for
# t/test_admin_openapi.py
OPENAPI_VALIDATOR := @seriousme/openapi-schema-validator@2.11.0
OPENAPI_STAMP     := $(BUILD)/npm/.installed-$(subst /,_,$(OPENAPI_VALIDATOR))

openapi-validator: $(OPENAPI_STAMP)

$(OPENAPI_STAMP):
	rm -rf $(BUILD)/npm && mkdir -p $(BUILD)/npm
	echo '{"private": true}' > $(BUILD)/npm/package.json
	cd $(BUILD)/npm && npm install --no-audit --no-fund --save-exact \
	    --no-package-lock $(OPENAPI_VALIDATOR)
	touch $@

# NGINX's configure writes into its source tree, so configure a private
# copy of Debian's nginx-dev tree, with Debian's exact flags (--with-compat
# makes the module loadable into /usr/sbin/nginx).
$(BUILD)/nginx/Makefile: config
	@test -f $(NGX_SRC)/conf_flags || { echo "$(NGX_SRC)/conf_flags is \
	missing: install nginx-dev (make deps)"; exit 1; }
	rm -rf $(BUILD)/nginx-src $(BUILD)/nginx
	mkdir -p $(BUILD)
	cp -r $(NGX_SRC) $(BUILD)/nginx-src
	cd $(BUILD)/nginx-src && . ./conf_flags && ./configure \
	    "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt="-fPIC $(OPT) -Wextra -Wno-unused-parameter \
	        -Wno-missing-field-initializers $(EXTRA_CFLAGS)" \
	    --with-ld-opt="-fPIC" \
	    --add-dynamic-module=$(PROJECT) --builddir=$(BUILD)/nginx \
	    > $(BUILD)/nginx-configure.log || { \
	    cat $(BUILD)/nginx-configure.log; exit 1; }

# the admin API's OpenAPI document, compiled into the module as a C string
ngx_zmq_module/ngx_http_zmq_openapi_json.h: ngx_zmq_module/openapi.json \
                                            scripts/openapi_h.sh
	scripts/openapi_h.sh $< $@

$(BUILD)/ngx_http_zmq_module.so: $(BUILD)/nginx/Makefile $(MODULE_SRCS) \
                                 $(CORE_SRCS) $(CORE_HDRS)
	$(MAKE) -f $(BUILD)/nginx/Makefile -C $(BUILD)/nginx-src modules
	cp $(BUILD)/nginx/ngx_http_zmq_module.so $@.tmp && mv -f $@.tmp $@

$(BUILD)/core/%.o: src/core/%.c $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

ZMQCTL_SRCS := $(wildcard src/zmqctl/*.c)
# zmqctl invoke runs services with zmqd's own code
ZMQCTL_ZMQD := $(addprefix src/zmqd/,zmqd_service.c zmqd_publisher.c \
               zmqd_amqp.c zmqd_invoke.c zmqd_log.c zmqd_stomp.c \
               zmqd_stomp_frame.c zmqd_stomp_publish.c)

$(BUILD)/zmqctl: $(ZMQCTL_SRCS) src/zmqctl/zmqctl.h $(ZMQCTL_ZMQD) \
                 $(wildcard src/zmqd/*.h) $(CORE_OBJS) $(CORE_HDRS)
	$(CC) $(CFLAGS_ALL) -pthread -Isrc/zmqd -I/usr/include/libxml2 \
	    $(ZMQCTL_SRCS) $(ZMQCTL_ZMQD) $(CORE_OBJS) -o $@ $(LIBS) \
	    -lrabbitmq -lssl -lcurl -lxml2 -lm

ZMQD_SRCS   := $(wildcard src/zmqd/*.c)

$(BUILD)/zmqd: $(ZMQD_SRCS) $(wildcard src/zmqd/*.h) $(CORE_OBJS) $(CORE_HDRS)
	$(CC) $(CFLAGS_ALL) -pthread -I/usr/include/libxml2 $(ZMQD_SRCS) \
	    $(CORE_OBJS) -o $@ $(LIBS) -lrabbitmq -lcurl -lxml2 -lm -lmicrohttpd

$(BUILD)/t/%: t/unit/%.c t/unit/zgw_test_util.h $(CORE_OBJS) $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -It/unit $< $(CORE_OBJS) -o $@ $(LIBS) -lcmocka

unit: $(UNIT_TESTS)
	@for t in $(UNIT_TESTS); do echo "== $$t"; $$t || exit 1; done

integration: all
	ZMQ_BUILD=$(BUILD) $(PYTHON) -m pytest -q -p no:cacheprovider \
	    $(PYTEST_ARGS) t/

# the cluster tests alone (issue 19; make integration runs them too): a
# three-node RabbitMQ cluster, Redis Sentinel, the fleet
test-cluster: all
	ZMQ_BUILD=$(BUILD) $(PYTHON) -m pytest -q -p no:cacheprovider \
	    $(PYTEST_ARGS) t/test_cluster.py t/test_sentinel.py t/test_fleet.py

# the web-admin's browser tests alone (make integration runs them too:
# pytest collects t/browser); screenshots go to $(BUILD)/screenshots
browser: all
	ZMQ_BUILD=$(BUILD) $(PYTHON) -m pytest -q -p no:cacheprovider \
	    $(PYTEST_ARGS) t/browser/

test: deps-test all unit integration asan asan-nginx fuzz-test

asan:
	$(MAKE) BUILD=$(BUILD)/asan OPT="-O1 -g -fsanitize=address,undefined \
	    -fno-omit-frame-pointer" tools unit
	ZMQ_BUILD=$(BUILD)/asan ZMQ_SKIP_NGINX=1 $(PYTHON) -m pytest -q \
	    -p no:cacheprovider t/test_zmqctl.py t/test_zmqctl_ops.py \
	    t/test_zmqctl_invoke.py \
	    t/test_zmqd.py \
	    t/test_zmqd_*.py t/test_corrupt_objects.py t/test_use_jms.py

$(BUILD)/bench/publish_raw: bench/publish_raw.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(WARN) $< -o $@ -lrabbitmq

$(BUILD)/bench/consume_raw: bench/consume_raw.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(WARN) $< -o $@ -lrabbitmq

$(BUILD)/bench/rpc_raw: bench/rpc_raw.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(WARN) $< -o $@ -lrabbitmq

$(BUILD)/bench/rpc_responder: bench/rpc_responder.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(WARN) $< -o $@ -lrabbitmq

$(BUILD)/bench/stomp_raw: bench/stomp_raw.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(WARN) $< -o $@

# speed goals: each prints ratios against baselines measured in the same run
bench: all $(BUILD)/bench/publish_raw $(BUILD)/bench/consume_raw \
       $(BUILD)/bench/rpc_raw $(BUILD)/bench/rpc_responder \
       $(BUILD)/bench/stomp_raw
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/publish.py
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/reconfig.py
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/consume.py
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/security.py
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/rpc.py
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/stomp.py
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/latency.py
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/batch.py
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/tls.py

# TLS alone (issue 17)
bench-tls: all $(BUILD)/bench/publish_raw
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/tls.py

# the latency one alone (issue 18)
bench-latency: all $(BUILD)/bench/publish_raw
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/latency.py

# where a publish's time goes (issue 18): the module with the latency probe
# (ngx_zmq_module/ngx_http_zmq_probe.h) and bench/latency_probe.py
PROBE_MODULE := $(BUILD)/probe/ngx_http_zmq_module.so
probe: all $(BUILD)/bench/publish_raw
	$(MAKE) BUILD=$(BUILD)/probe EXTRA_CFLAGS="-DNGX_ZMQ_PROBE=1" module
	ZMQ_BUILD=$(BUILD) ZMQ_MODULE=$(PROBE_MODULE) \
	    $(PYTHON) bench/latency_probe.py --split

# the STOMP one alone (ActiveMQ: make deps-test)
bench-stomp: all $(BUILD)/bench/stomp_raw
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/stomp.py

# batch publishing and idempotency keys alone (issue 20)
bench-batch: all $(BUILD)/bench/publish_raw
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/batch.py

# the module built with AddressSanitizer, loaded into Debian's nginx with
# the ASan runtime preloaded, under the NGINX integration tests
ASAN_MODULE := $(BUILD)/asan-module/ngx_http_zmq_module.so
asan-nginx: all
	$(MAKE) BUILD=$(BUILD)/asan-module OPT="-O1 -g \
	    -fsanitize=address,undefined -fno-omit-frame-pointer" module
	ZMQ_BUILD=$(BUILD) ZMQ_MODULE=$(ASAN_MODULE) \
	ZMQ_ASAN_PRELOAD="$$(gcc -print-file-name=libasan.so) \
	    $$(gcc -print-file-name=libubsan.so)" \
	    $(PYTHON) -m pytest -q -p no:cacheprovider t/test_module.py \
	    t/test_publish.py t/test_publish_faults.py t/test_live_config.py \
	    t/test_amqp_hardening.py t/test_body_shapes.py t/test_error_json.py \
	    t/test_max_body.py t/test_router_lifetime.py \
	    t/test_router_segments.py t/test_header_validation.py \
	    t/test_status_hardening.py t/test_store_regression.py \
	    t/test_redis_auth.py t/test_use_jms.py \
	    $(wildcard t/test_security*.py) \
	    $(wildcard t/test_admin*.py) $(wildcard t/test_rpc*.py) \
	    t/test_page.py t/test_stomp_gateway.py t/test_stomp_activemq.py \
	    t/test_metrics.py t/test_batch.py t/test_trace.py \
	    $(wildcard t/test_idempotency*.py) t/test_redis_hardening.py \
	    t/test_redis_bounds.py t/test_stomp_reserved.py

# ------------------------------------------------------------------ fuzzing
# libFuzzer targets (t/fuzz/fuzz_*.c) with ASan and UBSan. Those on
# src/core alone are programs; those that need NGINX are dynamic modules
# of Debian's nginx in which libFuzzer runs (t/fuzz/ngx_fuzz.h says why
# and how). t/fuzz/run.sh runs one; seeds in t/fuzz/corpus/<target>.
FUZZ_CC      := clang
FUZZ_SECONDS ?= 300
FUZZ         := $(BUILD)/fuzz
FUZZ_CORE    := model snapshot redis_url hostport jwt stomp_frame trace \
                sentinel show fleet resp
FUZZ_NGX     := amqp redis props router body stomp
FUZZ_TARGETS := $(FUZZ_CORE) $(FUZZ_NGX)
FUZZ_BINS    := $(FUZZ_CORE:%=$(FUZZ)/fuzz_%) $(FUZZ_NGX:%=$(FUZZ)/ngx_fuzz_%.so)
FUZZ_CFLAGS  := -g -O1 -fno-omit-frame-pointer -std=gnu11 -Isrc/core \
                -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -Wall -Wextra -Wno-unused-parameter \
                -Wno-missing-field-initializers
FUZZ_NGX_INC := $(addprefix -I$(BUILD)/nginx-src/src/,core event \
                event/modules os/unix http http/modules http/v2) \
                -I$(BUILD)/nginx -Ingx_zmq_module -It/fuzz
FUZZ_OBJS    := $(patsubst %.c,$(FUZZ)/obj/%.o,$(CORE_SRCS) \
                $(wildcard ngx_zmq_module/*.c))
MODULE_HDRS  := $(wildcard ngx_zmq_module/*.h)

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@rc=0; for t in $(FUZZ_TARGETS); do \
	    t/fuzz/run.sh $(BUILD) $$t $(FUZZ_SECONDS) || rc=1; \
	done; exit $$rc

fuzz-test:
	$(MAKE) fuzz FUZZ_SECONDS=20

$(FUZZ)/fuzz_%: t/fuzz/fuzz_%.c $(CORE_SRCS) $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(CORE_SRCS) -o $@ \
	    $(LIBS)

# the module and src/core, instrumented, for the NGINX-hosted targets; a
# target includes the file it tests, so the archive's copy is not linked
$(FUZZ)/obj/%.o: %.c $(CORE_HDRS) $(MODULE_HDRS) $(BUILD)/nginx/Makefile
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fPIC -fsanitize=fuzzer-no-link \
	    $(FUZZ_NGX_INC) -c $< -o $@

$(FUZZ)/libzmq.a: $(FUZZ_OBJS)
	rm -f $@ && ar rcs $@ $^

# -Bsymbolic: coverage and comparison hooks bind to this module's
# libFuzzer, not to the no-op defaults of the preloaded ASan runtime
$(FUZZ)/ngx_fuzz_%.so: t/fuzz/fuzz_%.c t/fuzz/ngx_fuzz.c t/fuzz/ngx_fuzz.h \
                       $(FUZZ)/libzmq.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fPIC -fsanitize=fuzzer-no-link \
	    -shared-libsan $(FUZZ_NGX_INC) -shared -Wl,-Bsymbolic \
	    $< t/fuzz/ngx_fuzz.c $(FUZZ)/libzmq.a -Wl,--whole-archive \
	    $$($(FUZZ_CC) -print-runtime-dir)/libclang_rt.fuzzer_no_main-x86_64.a \
	    -Wl,--no-whole-archive -lstdc++ $(LIBS) -lrabbitmq -o $@

# ------------------------------------------------------------ installing
# Debian's layout: the module in nginx's module directory (not under
# PREFIX), its load_module snippet in modules-available (enabled with a
# symlink in /etc/nginx/modules-enabled, which install does not make),
# the rest under PREFIX; scripts/install.sh keeps a manifest of every file
# and directory it made for uninstall.
DESTDIR     ?=
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MODULEDIR   ?= /usr/lib/nginx/modules
MODAVAILDIR ?= /usr/share/nginx/modules-available
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR  ?= /etc
DATADIR     ?= $(PREFIX)/share/ngx-zmq
DOCDIR      ?= $(PREFIX)/share/doc/ngx-zmq
INSTALL_VARS = DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" BINDIR="$(BINDIR)" \
               MODULEDIR="$(MODULEDIR)" MODAVAILDIR="$(MODAVAILDIR)" \
               UNITDIR="$(UNITDIR)" SYSCONFDIR="$(SYSCONFDIR)" \
               DATADIR="$(DATADIR)" DOCDIR="$(DOCDIR)" BUILD="$(BUILD)"

install: all
	@$(INSTALL_VARS) scripts/install.sh install

uninstall:
	@$(INSTALL_VARS) scripts/install.sh uninstall

run: deps all
	@scripts/run.sh

stop:
	@scripts/stop.sh

clean:
	rm -rf $(BUILD)
