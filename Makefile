# nibble — one static multi-call binary, configured with Kconfig.
#
#   make                      build ./nibble for .config (x86_64 defconfig if none)
#   make <board>_defconfig    start from board/<board>/defconfig
#   make menuconfig | nconfig | olddefconfig | savedefconfig
#   make O=dir ...            keep .config, objects and the binary in dir
#   make run                  build, convert the bundled model, generate (PROMPT=...)
#   make test                 install what is missing, build everything, run all tests
#   make bench                benchmarks
#
# Objects of the default tree go to build/default/, third-party libraries
# (mbedTLS, libgpiod, cJSON built with musl) to build/thirdparty/, shared by all trees.

VERSION := 0.1.0
srctree := $(CURDIR)

ifeq ($(O),)
  cfgdir  := $(srctree)
  objtree := $(srctree)/build/default
else
  cfgdir  := $(abspath $(O))
  objtree := $(cfgdir)
endif
KCONFIG_CONFIG := $(cfgdir)/.config
BINARY         := $(cfgdir)/nibble
AUTOCONF       := $(objtree)/include/config/auto.conf
AUTOHEADER     := $(objtree)/include/generated/autoconf.h
DEPS_STAMP     := $(srctree)/build/.deps-ok
export srctree

V ?= 0
ifeq ($(V),0)
  Q := @
  quiet_cc = @printf '  %-8s %s\n' "$(1)" "$(2)";
else
  Q :=
  quiet_cc =
endif

KCONF_ENV = KCONFIG_CONFIG=$(KCONFIG_CONFIG) \
	KCONFIG_AUTOCONFIG=$(AUTOCONF) KCONFIG_AUTOHEADER=$(AUTOHEADER)

# Goals that only touch the configuration must not need a configuration.
config-goals := %_defconfig menuconfig nconfig olddefconfig savedefconfig \
	clean distclean help deps
ifneq ($(MAKECMDGOALS),)
ifeq ($(filter-out $(config-goals),$(MAKECMDGOALS)),)
  no-autoconf := 1
endif
endif

.PHONY: all
all: $(BINARY)

# ---------------------------------------------------------------------------
# Host packages. Installed once; the stamp is refreshed when the list changes.
$(DEPS_STAMP): tools/build/deps.sh
	$(Q)sh tools/build/deps.sh
	$(Q)mkdir -p $(dir $@) && touch $@

.PHONY: deps
deps: $(DEPS_STAMP)

# ---------------------------------------------------------------------------
# Configuration
#
# kconfig-conf writes include/config/ relative to its working directory, so
# it runs inside the object tree; srctree lets Kconfig find its sources.
define kconf
	$(Q)mkdir -p $(objtree)/include/config $(objtree)/include/generated $(cfgdir)
	$(Q)cd $(objtree) && $(KCONF_ENV) kconfig-conf $(1) $(srctree)/Kconfig
endef

%_defconfig: $(DEPS_STAMP)
	$(Q)test -f board/$*/defconfig || \
		{ echo "nibble: no board '$*' (see board/)" >&2; exit 1; }
	$(call kconf,-s --defconfig=$(srctree)/board/$*/defconfig)
	@echo "  CONFIG   $(KCONFIG_CONFIG) for $*"

menuconfig: $(DEPS_STAMP)
	$(call kconf,--olddefconfig) >/dev/null
	$(Q)cd $(objtree) && $(KCONF_ENV) kconfig-mconf $(srctree)/Kconfig

nconfig: $(DEPS_STAMP)
	$(call kconf,--olddefconfig) >/dev/null
	$(Q)cd $(objtree) && $(KCONF_ENV) kconfig-nconf $(srctree)/Kconfig

olddefconfig: $(DEPS_STAMP)
	$(call kconf,-s --olddefconfig)

savedefconfig: $(DEPS_STAMP)
	$(call kconf,--savedefconfig=$(cfgdir)/defconfig)
	@echo "  SAVE     $(cfgdir)/defconfig"

$(KCONFIG_CONFIG): | $(DEPS_STAMP)
	@echo "  CONFIG   no $(KCONFIG_CONFIG): using board/x86_64/defconfig"
	$(call kconf,-s --defconfig=$(srctree)/board/x86_64/defconfig)

# --olddefconfig first: --silentoldconfig stops at unanswered symbols when
# there is no terminal (CI), and only it writes auto.conf and autoconf.h.
$(AUTOCONF): $(KCONFIG_CONFIG) Kconfig | $(DEPS_STAMP)
	$(call kconf,-s --olddefconfig)
	$(call kconf,-s --silentoldconfig)
	$(Q)touch $(AUTOCONF) $(AUTOHEADER)

ifeq ($(no-autoconf),)
-include $(AUTOCONF)
endif

# ---------------------------------------------------------------------------
# Toolchain, from the configuration
ifeq ($(CONFIG_ARCH_AARCH64),y)
  TRIPLE := aarch64-linux-musl
  ifeq ($(CONFIG_STATIC),y)
    CC := aarch64-linux-musl-gcc
  else
    CC := aarch64-linux-gnu-gcc
  endif
  AR := aarch64-linux-gnu-ar
  STRIP := aarch64-linux-gnu-strip
  ARCH_CFLAGS := -march=armv8-a
  ARCH_CFLAGS += $(if $(CONFIG_CPU_CORTEX_A72),-mtune=cortex-a72)
  ARCH_CFLAGS += $(if $(CONFIG_CPU_CORTEX_A76),-mtune=cortex-a76)
  ARCH_CFLAGS += $(if $(CONFIG_CPU_CORTEX_A78AE),-mtune=cortex-a78ae)
else
  TRIPLE := x86_64-linux-musl
  ifeq ($(CONFIG_STATIC),y)
    CC := musl-gcc
  else
    CC := gcc
  endif
  AR := ar
  STRIP := strip
  ARCH_CFLAGS := -march=x86-64
endif

# SANITIZE=1: the glibc + ASan/UBSan build the unit tests use.
# FUZZ=1: the same with clang and libFuzzer coverage, for tests/fuzz/.
ifeq ($(FUZZ),1)
  SANITIZE := 1
  CC := clang
  OPT := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all
else ifeq ($(SANITIZE),1)
  CC := gcc
  OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=all
else
  OPT := -O2 -g
endif

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wvla -Wformat=2
# -ffp-contract=off: no fused multiply-add behind our back, so every
# backend rounds the float epilogue of a kernel identically.
CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) $(ARCH_CFLAGS) $(WARN) \
	-ffp-contract=off -fno-strict-aliasing -ffunction-sections -fdata-sections \
	-I$(srctree) -I$(objtree)/include -include $(AUTOHEADER)
LDFLAGS := -Wl,--gc-sections
LDLIBS := -lpthread -lm

ifeq ($(CONFIG_STATIC)$(SANITIZE),y)
  LDFLAGS += -static
  include tools/build/thirdparty.mk
  CFLAGS += -isystem $(TP_PREFIX)/include
  LDFLAGS += -L$(TP_PREFIX)/lib
  TP_LIBS := $(TP_MBEDTLS) $(TP_GPIOD) $(TP_CJSON)
else
  TP_LIBS :=
endif
LDLIBS := -lcjson -lgpiod -lmbedtls -lmbedx509 -lmbedcrypto $(LDLIBS)

# ---------------------------------------------------------------------------
# Sources: each folder lists its objects in build.mk, obj-$(CONFIG_X) += x.o
obj-y :=
# Layers, bottom up (docs/ARCHITECTURE.md; tests/layering.sh checks the includes).
include runtime/base/build.mk kernels/build.mk firmware/build.mk runtime/text/build.mk \
	runtime/model/build.mk runtime/server/build.mk board/build.mk tools/import/build.mk \
	tools/quant/build.mk runtime/applets/build.mk

# Each build mode keeps its own objects: a tree built with SANITIZE=1 and
# without must never link objects of the other compiler or flags.
OBJDIR := $(objtree)/obj$(if $(filter 1,$(FUZZ)),-fuzz,$(if $(filter 1,$(SANITIZE)),-san))
OBJS := $(addprefix $(OBJDIR)/,$(sort $(obj-y)))
MAIN_OBJ := $(OBJDIR)/runtime/applets/main.o
LIB_OBJS := $(filter-out $(MAIN_OBJ),$(OBJS))
GEN_FEATURES := $(objtree)/include/generated/features.h

$(OBJDIR)/%.o: %.c $(AUTOCONF) $(TP_LIBS) Makefile
	$(call quiet_cc,CC,$<)mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(CFLAGS_$(notdir $*)) -MMD -MP -c -o $@ $<

-include $(OBJS:.o=.d)

# The revision changes with every commit: only version.o sees it.
GIT_REV := $(shell git -C $(srctree) describe --always --dirty 2>/dev/null || echo unknown)
CFLAGS_version := -DNB_VERSION='"$(VERSION)"' -DNB_GIT_REV='"$(GIT_REV)"'
$(OBJDIR)/runtime/applets/version.o: $(GEN_FEATURES) FORCE

# Feature list for `nibble --version`: every enabled symbol of .config.
$(GEN_FEATURES): $(AUTOCONF)
	$(Q)mkdir -p $(dir $@)
	$(Q)printf '#define NB_FEATURES "%s"\n' \
		"$$(sed -n 's/^CONFIG_\([A-Z0-9_]*\)=y$$/\1/p' $(AUTOCONF) | sort | tr '\n' ' ' | sed 's/ $$//')" > $@.tmp
	$(Q)cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(BINARY): $(OBJS) $(TP_LIBS)
	$(call quiet_cc,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

.PHONY: FORCE strip
FORCE:

strip: $(BINARY)
	$(Q)$(STRIP) -o $(BINARY).stripped $(BINARY)
	@ls -l $(BINARY).stripped

# ---------------------------------------------------------------------------
# Unit tests (cmocka) link every object but main.o into each test program.
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(objtree)/tests/%,$(UNIT_SRCS))

$(objtree)/tests/%: tests/unit/%.c $(LIB_OBJS) $(AUTOCONF)
	$(call quiet_cc,CCLD,$@)mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -Wno-missing-prototypes $(LDFLAGS) $(LDFLAGS_$*) -o $@ $< $(LIB_OBJS) \
		-lcmocka $(LDLIBS)

# test_server fails the server's allocations one by one.
LDFLAGS_test_server := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup

.PHONY: unit-tests
unit-tests: $(UNIT_BINS)

# Fuzz targets (libFuzzer): `make O=build/fuzz FUZZ=1 fuzz-targets`.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(objtree)/fuzz/%,$(FUZZ_SRCS))

$(objtree)/fuzz/%: tests/fuzz/%.c $(LIB_OBJS) $(AUTOCONF)
	$(call quiet_cc,CCLD,$@)mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -Wno-missing-prototypes -fsanitize=fuzzer,address,undefined \
		-o $@ $< $(LIB_OBJS) $(LDLIBS)

.PHONY: fuzz-targets
fuzz-targets: $(FUZZ_BINS)

# ---------------------------------------------------------------------------
# `make run`: the bundled model, converted to an image, generating a story.
MODEL_DIR := models/stories260K
MODEL_NIB := $(objtree)/models/stories260K.nib
PROMPT ?= Once upon a time
RUN_ARGS ?= -n 256 --seed 42
# An aarch64 board build runs here under qemu.
RUNNER := $(if $(and $(CONFIG_ARCH_AARCH64),$(filter x86_64,$(shell uname -m))),qemu-aarch64-static)

$(MODEL_NIB): $(MODEL_DIR)/stories260K.bin $(MODEL_DIR)/tok512.bin $(BINARY)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(RUNNER) $(BINARY) convert $(MODEL_DIR)/stories260K.bin -t $(MODEL_DIR)/tok512.bin \
		--license $(MODEL_DIR)/LICENSE -o $@

.PHONY: run
run: $(MODEL_NIB)
	$(Q)$(RUNNER) $(BINARY) run -m $(MODEL_NIB) -p "$(PROMPT)" $(RUN_ARGS)

# ---------------------------------------------------------------------------
.PHONY: test bench check-static
test: $(DEPS_STAMP)
	$(Q)sh tests/run.sh

bench: $(DEPS_STAMP)
	$(Q)sh tests/bench.sh

clean:
	rm -rf $(objtree)/obj $(objtree)/obj-san $(objtree)/obj-fuzz $(objtree)/tests \
		$(objtree)/fuzz $(BINARY) $(BINARY).stripped

distclean:
	rm -rf build .config .config.old defconfig nibble nibble.stripped

help:
	@sed -n '2,12s/^# \{0,1\}//p' Makefile
	@echo "boards: $$(ls board/*/defconfig | cut -d/ -f2 | tr '\n' ' ')"

# `make O=dir SANITIZE=1 unit-foo` builds and runs tests/unit/test_foo.c alone.
unit-%: $(objtree)/tests/test_%
	$(Q)cd $(srctree) && $<
