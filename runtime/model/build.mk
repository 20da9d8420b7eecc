# The model: binding, forward pass, thread pool, sampling, stop strings.
obj-y += runtime/model/model.o runtime/model/forward.o runtime/model/matmul.o runtime/model/kv.o runtime/model/llm.o runtime/model/pool.o \
	runtime/model/sampler.o runtime/model/stop.o
