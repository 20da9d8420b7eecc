# Text: tokenizers (SentencePiece BPE, byte-level BPE), Unicode, chat templates.
obj-y += runtime/text/tokenizer.o runtime/text/tok_spm.o runtime/text/tok_bpe.o runtime/text/unicode.o
obj-$(CONFIG_APPLET_SERVE) += runtime/text/chat_template.o
