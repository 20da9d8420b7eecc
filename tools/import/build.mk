# Host tools: importers (llama2.c, HF safetensors, GGUF), tokenizer import, image writer.
obj-y += tools/import/tok_import.o tools/import/tok_json.o
obj-y += tools/import/ckpt.o tools/import/family.o tools/import/safetensors.o tools/import/gguf.o \
	tools/import/import_llama2c.o tools/import/import_hf.o tools/import/import_gguf.o
obj-$(CONFIG_APPLET_CONVERT) += tools/import/convert.o
obj-y += tools/import/image_write.o
