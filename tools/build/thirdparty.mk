# mbedTLS, libgpiod and cJSON, built from Debian's source packages with the musl
# toolchain of the target: Debian's own .a files are compiled against glibc
# with _FORTIFY_SOURCE and do not link with musl. Built once per triple into
# build/thirdparty/<triple>/ and shared by every object tree.

TP_DIR    := $(srctree)/build/thirdparty
TP_SRC    := $(TP_DIR)/src
TP_PREFIX := $(TP_DIR)/$(TRIPLE)
TP_WORK   := $(TP_DIR)/work-$(TRIPLE)
TP_MBEDTLS := $(TP_PREFIX)/lib/libmbedcrypto.a
TP_GPIOD   := $(TP_PREFIX)/lib/libgpiod.a
TP_CJSON   := $(TP_PREFIX)/lib/libcjson.a
TP_PKGS    := mbedtls libgpiod cjson

ifeq ($(TRIPLE),aarch64-linux-musl)
  TP_CC := aarch64-linux-musl-gcc
  TP_HOST := --host=aarch64-linux-musl ac_cv_func_malloc_0_nonnull=yes \
	ac_cv_func_realloc_0_nonnull=yes
  TP_KHDR_FROM := /usr/aarch64-linux-gnu/include
  TP_KHDR_ASM := /usr/aarch64-linux-gnu/include/asm
else
  TP_CC := musl-gcc
  TP_HOST :=
  TP_KHDR_FROM := /usr/include
  TP_KHDR_ASM := /usr/include/x86_64-linux-gnu/asm
endif
TP_AR := $(AR)

# apt-get source needs deb-src entries; tools/build/deps.sh adds them.
$(TP_SRC)/.fetched: | $(DEPS_BUILD)
	$(Q)mkdir -p $(TP_SRC)
	@echo "  FETCH    $(TP_PKGS) (Debian source packages)"
	$(Q)cd $(TP_SRC) && apt-get source -qq --download-only $(TP_PKGS) 2>/dev/null \
		|| { apt-get update -qq && apt-get source -qq --download-only $(TP_PKGS); }
	$(Q)touch $@

$(TP_MBEDTLS): $(TP_SRC)/.fetched
	@echo "  BUILD    mbedtls for $(TRIPLE)"
	$(Q)rm -rf $(TP_WORK)/mbedtls && mkdir -p $(TP_WORK)/mbedtls $(TP_PREFIX)/lib $(TP_PREFIX)/include
	$(Q)rm -rf $(TP_WORK)/mbedtls && dpkg-source -q --no-check -x $(TP_SRC)/mbedtls_*.dsc $(TP_WORK)/mbedtls >/dev/null 2>&1
	$(Q)$(MAKE) -s -C $(TP_WORK)/mbedtls/library CC=$(TP_CC) AR=$(TP_AR) \
		CFLAGS="-O2 -ffunction-sections -fdata-sections" static >/dev/null
	$(Q)cp -r $(TP_WORK)/mbedtls/include/mbedtls $(TP_WORK)/mbedtls/include/psa $(TP_PREFIX)/include/
	$(Q)cp $(TP_WORK)/mbedtls/library/libmbed*.a $(TP_PREFIX)/lib/

$(TP_GPIOD): $(TP_SRC)/.fetched
	@echo "  BUILD    libgpiod for $(TRIPLE)"
	$(Q)rm -rf $(TP_WORK)/libgpiod && mkdir -p $(TP_WORK)/libgpiod/khdr
	$(Q)tar -xJf $(TP_SRC)/libgpiod_*.orig.tar.xz -C $(TP_WORK)/libgpiod --strip-components=1
	$(Q)cp -r $(TP_KHDR_FROM)/linux $(TP_KHDR_FROM)/asm-generic $(TP_WORK)/libgpiod/khdr/
	$(Q)cp -r $(TP_KHDR_ASM) $(TP_WORK)/libgpiod/khdr/asm
	$(Q)cd $(TP_WORK)/libgpiod && ./configure -q CC=$(TP_CC) AR=$(TP_AR) $(TP_HOST) \
		CFLAGS="-O2 -ffunction-sections -fdata-sections" CPPFLAGS="-isystem $(TP_WORK)/libgpiod/khdr" \
		--prefix=$(TP_PREFIX) --enable-static --disable-shared --disable-tools \
		--disable-tests --disable-bindings-cxx --disable-bindings-python \
		> $(TP_WORK)/libgpiod.log 2>&1 || { cat $(TP_WORK)/libgpiod.log; exit 1; }
	$(Q)$(MAKE) -s -C $(TP_WORK)/libgpiod install >> $(TP_WORK)/libgpiod.log 2>&1 \
		|| { cat $(TP_WORK)/libgpiod.log; exit 1; }

# cJSON is one file; dpkg-source applies Debian's security fixes to it.
$(TP_CJSON): $(TP_SRC)/.fetched
	@echo "  BUILD    cjson for $(TRIPLE)"
	$(Q)rm -rf $(TP_WORK)/cjson && mkdir -p $(TP_WORK) $(TP_PREFIX)/lib $(TP_PREFIX)/include/cjson
	$(Q)dpkg-source -q --no-check -x $(TP_SRC)/cjson_*.dsc $(TP_WORK)/cjson >/dev/null 2>&1
	$(Q)$(TP_CC) -O2 -ffunction-sections -fdata-sections -c -o $(TP_WORK)/cjson/cJSON.o $(TP_WORK)/cjson/cJSON.c
	$(Q)$(TP_AR) rcs $@ $(TP_WORK)/cjson/cJSON.o
	$(Q)cp $(TP_WORK)/cjson/cJSON.h $(TP_PREFIX)/include/cjson/
