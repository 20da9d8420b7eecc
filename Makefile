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
# autoconf.h without the symbols of runtime/applets/Kconfig, which choose
# what is linked: every object but the applet table is compiled with this
# one, where they are poisoned, so switching an applet rebuilds no object.
CORE_HEADER    := $(objtree)/include/generated/autoconf-core.h
KCONFIG_FILES  := Kconfig runtime/applets/Kconfig
# What `make` needs for the host, what board builds add, what the tests add
# (tools/build/deps.sh host|cross|test; each set includes the ones before).
DEPS_HOST      := $(srctree)/build/.deps-host
DEPS_CROSS     := $(srctree)/build/.deps-cross
DEPS_TEST      := $(srctree)/build/.deps-test
export srctree

empty :=
space := $(empty) $(empty)

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
# Host packages. Installed once; a stamp is refreshed when the lists change.
$(DEPS_HOST) $(DEPS_CROSS) $(DEPS_TEST): $(srctree)/build/.deps-%: tools/build/deps.sh
	$(Q)sh tools/build/deps.sh $*
	$(Q)mkdir -p $(dir $@) && touch $@

.PHONY: deps
deps: $(DEPS_HOST)

# ---------------------------------------------------------------------------
# Configuration
#
# kconfig-conf writes include/config/ relative to its working directory, so
# it runs inside the object tree; srctree lets Kconfig find its sources.
define kconf
	$(Q)mkdir -p $(objtree)/include/config $(objtree)/include/generated $(cfgdir)
	$(Q)cd $(objtree) && $(KCONF_ENV) kconfig-conf $(1) $(srctree)/Kconfig
endef

%_defconfig: $(DEPS_HOST)
	$(Q)test -f board/$*/defconfig || \
		{ echo "nibble: no board '$*' (see board/)" >&2; exit 1; }
	$(call kconf,-s --defconfig=$(srctree)/board/$*/defconfig)
	@echo "  CONFIG   $(KCONFIG_CONFIG) for $*"

menuconfig: $(DEPS_HOST)
	$(call kconf,--olddefconfig) >/dev/null
	$(Q)cd $(objtree) && $(KCONF_ENV) kconfig-mconf $(srctree)/Kconfig

nconfig: $(DEPS_HOST)
	$(call kconf,--olddefconfig) >/dev/null
	$(Q)cd $(objtree) && $(KCONF_ENV) kconfig-nconf $(srctree)/Kconfig

olddefconfig: $(DEPS_HOST)
	$(call kconf,-s --olddefconfig)

savedefconfig: $(DEPS_HOST)
	$(call kconf,--savedefconfig=$(cfgdir)/defconfig)
	@echo "  SAVE     $(cfgdir)/defconfig"

$(KCONFIG_CONFIG): | $(DEPS_HOST)
	@echo "  CONFIG   no $(KCONFIG_CONFIG): using board/x86_64/defconfig"
	$(call kconf,-s --defconfig=$(srctree)/board/x86_64/defconfig)

# --olddefconfig first: --silentoldconfig stops at unanswered symbols when
# there is no terminal (CI), and only it writes auto.conf and autoconf.h.
$(AUTOCONF): $(KCONFIG_CONFIG) $(KCONFIG_FILES) | $(DEPS_HOST)
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
# A board build needs the cross compilers before its first object, a
# sanitizer or fuzz build clang and cmocka.
DEPS_BUILD := $(if $(filter 1,$(SANITIZE) $(FUZZ))$(CONFIG_BACKEND_OPENCL),$(DEPS_TEST), \
	$(if $(CONFIG_ARCH_AARCH64),$(DEPS_CROSS),$(DEPS_HOST)))

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
	-I$(srctree) -I$(objtree)/include
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
ifeq ($(CONFIG_BACKEND_OPENCL),y)
  LDLIBS += -lOpenCL
endif

# ---------------------------------------------------------------------------
# Sources: each folder lists its objects in build.mk, obj-$(CONFIG_X) += x.o
obj-y :=
# Layers, bottom up (docs/ARCHITECTURE.md; tests/tools/layers.sh checks the includes).
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
GEN_VERSION := $(objtree)/include/generated/version.h
GEN_STAMP := $(objtree)/include/generated/.stamp
TABLE_OBJ := $(OBJDIR)/runtime/applets/applet.o

# Every object sees the configuration but the applet symbols; the applet
# table sees them all.
CONFIG_INCLUDE = -include $(CORE_HEADER)
$(TABLE_OBJ): CONFIG_INCLUDE = -include $(AUTOHEADER)
$(TABLE_OBJ): $(AUTOCONF)

$(OBJDIR)/%.o: %.c $(CORE_HEADER) $(TP_LIBS) Makefile | $(DEPS_BUILD)
	$(call quiet_cc,CC,$<)mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(CONFIG_INCLUDE) $(CFLAGS_$(notdir $*)) -MMD -MP -c -o $@ $<

-include $(OBJS:.o=.d)

# $(call write-if-changed,FILE,COMMAND): FILE gets COMMAND's output, and a
# new time stamp only if that differs from what it holds, so that what
# depends on FILE is rebuilt only when it really changed.
write-if-changed = new=$$($(2)) && { [ -f $(1) ] && [ "$$new" = "$$(cat $(1))" ] || \
	printf '%s\n' "$$new" > $(1); }

# The headers made from the configuration. They keep their time stamp when
# a new .config leaves them as they were: the stamp says they are current.
SELECT_SYMS := $(shell sed -n 's/^config \([A-Z0-9_]*\)$$/CONFIG_\1/p' runtime/applets/Kconfig)
$(GEN_STAMP): $(AUTOCONF) runtime/applets/Kconfig
	$(Q)mkdir -p $(dir $@)
	$(Q)$(call write-if-changed,$(CORE_HEADER),grep -v -w -E \
		'$(subst $(space),|,$(SELECT_SYMS))' $(AUTOHEADER); \
		echo '#pragma GCC poison $(SELECT_SYMS)')
	$(Q)$(call write-if-changed,$(GEN_FEATURES),printf '#define NB_FEATURES "%s"' \
		"$$(sed -n 's/^CONFIG_\([A-Z0-9_]*\)=y$$/\1/p' $(AUTOCONF) | sort | tr '\n' ' ' | sed 's/ $$//')")
	$(Q)touch $@
$(CORE_HEADER) $(GEN_FEATURES): $(GEN_STAMP) ;
$(OBJDIR)/runtime/applets/version.o: $(GEN_FEATURES)

# The release and the git revision for runtime/base/version.c: looked at on
# every make, written only when they change.
$(GEN_VERSION): FORCE
	$(Q)mkdir -p $(dir $@)
	$(Q)$(call write-if-changed,$@,printf '#define NB_VERSION "%s"\n#define NB_GIT_REV "%s"' \
		'$(VERSION)' "$$(git -C $(srctree) describe --always --dirty 2>/dev/null || echo unknown)")
$(OBJDIR)/runtime/base/version.o: $(GEN_VERSION)

# The configuration decides the objects: a new one relinks.
$(BINARY): $(OBJS) $(TP_LIBS) $(AUTOCONF)
	$(call quiet_cc,LD,$@)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

.PHONY: FORCE strip
FORCE:

strip: $(BINARY).stripped
$(BINARY).stripped: $(BINARY)
	$(Q)$(STRIP) -o $@ $<
	@ls -l $@

# ---------------------------------------------------------------------------
# Unit tests (cmocka) link every object but main.o into each test program.
# test_opencl needs the OpenCL variant (x86_64_opencl_defconfig), which runs it.
UNIT_SRCS := $(filter-out $(if $(CONFIG_BACKEND_OPENCL),,tests/unit/test_opencl.c), \
	$(wildcard tests/unit/test_*.c))
UNIT_BINS := $(patsubst tests/unit/%.c,$(objtree)/tests/%,$(UNIT_SRCS))

$(objtree)/tests/%: tests/unit/%.c $(LIB_OBJS) $(CORE_HEADER) $(AUTOCONF)
	$(call quiet_cc,CCLD,$@)mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -include $(CORE_HEADER) -Wno-missing-prototypes $(LDFLAGS) $(LDFLAGS_$*) -o $@ $< $(LIB_OBJS) \
		-lcmocka $(LDLIBS)

# test_server fails the server's allocations one by one.
LDFLAGS_test_server := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup

.PHONY: unit-tests
unit-tests: $(UNIT_BINS)

# Fuzz targets (libFuzzer): `make O=build/fuzz FUZZ=1 fuzz-targets`.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(objtree)/fuzz/%,$(FUZZ_SRCS))

$(objtree)/fuzz/%: tests/fuzz/%.c $(LIB_OBJS) $(CORE_HEADER) $(AUTOCONF)
	$(call quiet_cc,CCLD,$@)mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -include $(CORE_HEADER) -Wno-missing-prototypes -fsanitize=fuzzer,address,undefined \
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
test: $(DEPS_TEST)
	$(Q)sh tests/run.sh

bench: $(DEPS_TEST)
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
