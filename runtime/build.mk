obj-y += runtime/main.o runtime/applet.o runtime/err.o runtime/log.o runtime/version.o
obj-$(CONFIG_APPLET_SELFTEST) += runtime/selftest.o
obj-$(CONFIG_APPLET_SHA256) += runtime/sha256.o
