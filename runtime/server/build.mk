# The server: event loop, HTTP, OpenAI mapping, scheduler.
obj-$(CONFIG_APPLET_SERVE) += runtime/server/http.o runtime/server/openai.o runtime/server/sched.o \
	runtime/server/server.o
obj-$(CONFIG_GOVERNOR) += runtime/server/governor.o
