# Host tools: quantizers (RTN, AWQ, GPTQ) and perplexity.
obj-$(CONFIG_APPLET_PERPLEXITY) += tools/quant/perplexity.o
obj-$(CONFIG_APPLET_QUANTIZE) += tools/quant/perplexity.o tools/quant/quantize.o tools/quant/qmat.o \
	tools/quant/awq.o tools/quant/gptq.o
