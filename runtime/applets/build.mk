# Applets: main (multi-call dispatch) and one file per applet.
obj-y += runtime/applets/main.o runtime/applets/applet.o runtime/applets/version.o
obj-$(CONFIG_APPLET_BENCH) += runtime/applets/bench.o
obj-$(CONFIG_APPLET_CHAT) += runtime/applets/chat.o
obj-$(CONFIG_APPLET_INSPECT) += runtime/applets/inspect.o
obj-$(CONFIG_APPLET_RUN) += runtime/applets/run.o
obj-$(CONFIG_APPLET_SELFTEST) += runtime/applets/selftest.o
obj-$(CONFIG_APPLET_SERVE) += runtime/applets/serve.o
obj-$(CONFIG_APPLET_SHA256) += runtime/applets/sha256.o
obj-$(CONFIG_APPLET_KEYGEN) += runtime/applets/keygen.o
obj-$(CONFIG_APPLET_SIGN) += runtime/applets/sign.o
obj-$(CONFIG_APPLET_VERIFY) += runtime/applets/verify.o
obj-$(CONFIG_APPLET_UPDATE) += runtime/applets/update.o
