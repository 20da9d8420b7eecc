# Host tools: importers, quantizers, signing, benchmarks.
obj-y += tools/tok_import.o tools/tok_json.o
obj-y += tools/ckpt.o tools/safetensors.o tools/gguf.o tools/import_llama2c.o tools/import_hf.o tools/import_gguf.o
obj-$(CONFIG_APPLET_CONVERT) += tools/convert.o
obj-y += tools/image_write.o
obj-$(CONFIG_APPLET_BENCH) += tools/bench.o
obj-$(CONFIG_APPLET_PERPLEXITY) += tools/perplexity.o
obj-$(CONFIG_APPLET_QUANTIZE) += tools/perplexity.o tools/quantize.o tools/qmat.o tools/awq.o tools/gptq.o
