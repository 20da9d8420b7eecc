# The server: event loop, HTTP, OpenAI mapping, scheduler; A/B slot trials;
# the governor's loop.
obj-$(CONFIG_APPLET_SERVE) += runtime/server/http.o runtime/server/openai.o runtime/server/sched.o \
	runtime/server/server.o runtime/server/trial.o \
	runtime/server/upresp.o runtime/server/uplink.o
obj-$(CONFIG_GOVERNOR) += runtime/server/governor.o
