# Host tools: quantizers (RTN, AWQ, GPTQ) and perplexity (runtime/applets/Kconfig:
# HOST_QUANT, HOST_PERPLEXITY).
obj-$(CONFIG_HOST_PERPLEXITY) += tools/quant/perplexity.o
obj-$(CONFIG_HOST_QUANT) += tools/quant/quantize.o tools/quant/qmat.o tools/quant/awq.o \
	tools/quant/gptq.o
