# ngx_zmq: build, run, test.
#
#   make deps    install the Debian packages the project needs (if missing)
#   make         build build/ngx_http_zmq_module.so and build/zmqctl
#   make run     deps + build, start Redis, RabbitMQ and NGINX with the demo
#   make stop    stop what 'make run' started
#   make test    unit tests (cmocka) and integration tests (pytest)
#   make asan    unit, zmqctl and zmqd tests under AddressSanitizer
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
LIBS        := -ljansson -lhiredis -lcrypto

CORE_SRCS   := $(wildcard src/core/*.c)
CORE_HDRS   := $(wildcard src/core/*.h)
CORE_OBJS   := $(patsubst src/core/%.c,$(BUILD)/core/%.o,$(CORE_SRCS))
MODULE_SRCS := config $(wildcard ngx_zmq_module/*.c ngx_zmq_module/*.h)

UNIT_TESTS  := $(patsubst t/unit/%.c,$(BUILD)/t/%,$(wildcard t/unit/test_*.c))

.PHONY: all module tools deps run stop test unit integration asan clean \
        asan-nginx \
        format bench

all: module tools

tools: $(BUILD)/zmqctl $(BUILD)/zmqd

module: $(BUILD)/ngx_http_zmq_module.so

deps:
	@scripts/deps.sh

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

$(BUILD)/ngx_http_zmq_module.so: $(BUILD)/nginx/Makefile $(MODULE_SRCS) \
                                 $(CORE_SRCS) $(CORE_HDRS)
	$(MAKE) -f $(BUILD)/nginx/Makefile -C $(BUILD)/nginx-src modules
	cp $(BUILD)/nginx/ngx_http_zmq_module.so $@.tmp && mv -f $@.tmp $@

$(BUILD)/core/%.o: src/core/%.c $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/zmqctl: src/zmqctl/zmqctl.c $(CORE_OBJS) $(CORE_HDRS)
	$(CC) $(CFLAGS_ALL) src/zmqctl/zmqctl.c $(CORE_OBJS) -o $@ $(LIBS)

ZMQD_SRCS   := $(wildcard src/zmqd/*.c)

$(BUILD)/zmqd: $(ZMQD_SRCS) $(wildcard src/zmqd/*.h) $(CORE_OBJS) $(CORE_HDRS)
	$(CC) $(CFLAGS_ALL) -pthread -I/usr/include/libxml2 $(ZMQD_SRCS) \
	    $(CORE_OBJS) -o $@ $(LIBS) -lrabbitmq -lcurl -lxml2 -lm

$(BUILD)/t/%: t/unit/%.c t/unit/zgw_test_util.h $(CORE_OBJS) $(CORE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -It/unit $< $(CORE_OBJS) -o $@ $(LIBS) -lcmocka

unit: $(UNIT_TESTS)
	@for t in $(UNIT_TESTS); do echo "== $$t"; $$t || exit 1; done

integration: all
	ZMQ_BUILD=$(BUILD) $(PYTHON) -m pytest -q -p no:cacheprovider \
	    $(PYTEST_ARGS) t/

test: all unit integration asan asan-nginx

asan:
	$(MAKE) BUILD=$(BUILD)/asan OPT="-O1 -g -fsanitize=address,undefined \
	    -fno-omit-frame-pointer" tools unit
	ZMQ_BUILD=$(BUILD)/asan ZMQ_SKIP_NGINX=1 $(PYTHON) -m pytest -q \
	    -p no:cacheprovider t/test_zmqctl.py t/test_zmqd.py

$(BUILD)/bench/publish_raw: bench/publish_raw.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(WARN) $< -o $@ -lrabbitmq

$(BUILD)/bench/consume_raw: bench/consume_raw.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) $(WARN) $< -o $@ -lrabbitmq

# speed goals: each prints ratios against baselines measured in the same run
bench: all $(BUILD)/bench/publish_raw $(BUILD)/bench/consume_raw
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/publish.py
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/reconfig.py
	ZMQ_BUILD=$(BUILD) $(PYTHON) bench/consume.py

# the module built with AddressSanitizer, loaded into Debian's nginx with
# the ASan runtime preloaded, under the NGINX integration tests
ASAN_MODULE := $(BUILD)/asan-module/ngx_http_zmq_module.so
asan-nginx: all
	$(MAKE) BUILD=$(BUILD)/asan-module OPT="-O1 -g -fsanitize=address \
	    -fno-omit-frame-pointer" module
	ZMQ_BUILD=$(BUILD) ZMQ_MODULE=$(ASAN_MODULE) \
	ZMQ_ASAN_PRELOAD=$$(gcc -print-file-name=libasan.so) \
	    $(PYTHON) -m pytest -q -p no:cacheprovider t/test_module.py \
	    t/test_publish.py t/test_publish_faults.py t/test_live_config.py

run: deps all
	@scripts/run.sh

stop:
	@scripts/stop.sh

format:
	clang-format -i src/core/*.c src/core/*.h src/zmqctl/*.c t/unit/*.c

clean:
	rm -rf $(BUILD)
