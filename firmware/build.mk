obj-y += firmware/digest.o
obj-y += firmware/image.o firmware/tensor.o firmware/arch.o
obj-y += firmware/atomic.o firmware/drbg.o firmware/fault.o firmware/sig.o firmware/trust.o firmware/verify.o firmware/manifest.o firmware/slots.o firmware/update.o firmware/tls.o firmware/https.o
# The publisher's side (runtime/applets/Kconfig: HOST_SIGN).
obj-$(CONFIG_HOST_SIGN) += firmware/sign.o

# Public keys built into the binary (CONFIG_TRUSTED_KEYS: PEM files, relative
# to the source tree or absolute), as a generated header trust.c includes.
nb-trusted-key-files := $(foreach f,$(subst ",,$(CONFIG_TRUSTED_KEYS)),$(if $(filter /%,$(f)),$(f),$(srctree)/$(f)))
NB_GEN_KEYS := $(objtree)/include/generated/trusted_keys.h
$(NB_GEN_KEYS): $(AUTOCONF) $(nb-trusted-key-files) $(srctree)/tools/build/embed_keys.sh
	$(Q)mkdir -p $(dir $@)
	$(Q)sh $(srctree)/tools/build/embed_keys.sh $(nb-trusted-key-files) > $@.tmp
	$(Q)cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@
$(addprefix $(objtree)/,obj/firmware/trust.o obj-san/firmware/trust.o obj-fuzz/firmware/trust.o): $(NB_GEN_KEYS)
