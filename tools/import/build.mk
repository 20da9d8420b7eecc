# Host tools: importers (llama2.c, HF safetensors, GGUF), tokenizer import,
# the convert pipeline (runtime/applets/Kconfig: HOST_IMPORT), image writer.
obj-$(CONFIG_HOST_IMPORT) += tools/import/tok_import.o tools/import/tok_json.o \
	tools/import/ckpt.o tools/import/family.o tools/import/safetensors.o tools/import/gguf.o \
	tools/import/import_llama2c.o tools/import/import_hf.o tools/import/import_gguf.o \
	tools/import/convert.o
obj-$(CONFIG_IMAGE_WRITER) += tools/import/image_write.o
