obj-y += runtime/main.o runtime/applet.o runtime/err.o runtime/log.o runtime/version.o
obj-$(CONFIG_APPLET_SELFTEST) += runtime/selftest.o
obj-$(CONFIG_APPLET_SHA256) += runtime/sha256.o
obj-y += runtime/tokenizer.o runtime/tok_bpe.o runtime/model.o
obj-y += runtime/forward.o
obj-y += runtime/tok_spm.o
obj-y += runtime/sampler.o
obj-y += runtime/llm.o runtime/stop.o runtime/sys.o
obj-$(CONFIG_APPLET_RUN) += runtime/run.o
obj-$(CONFIG_APPLET_INSPECT) += runtime/inspect.o
obj-y += runtime/unicode.o
obj-y += runtime/pool.o
obj-$(CONFIG_APPLET_SERVE) += runtime/http.o runtime/openai.o runtime/chat.o runtime/sched.o \
	runtime/server.o runtime/serve.o
obj-$(CONFIG_APPLET_CHAT) += runtime/client.o
