/* Tokenizers: SentencePiece-style BPE with byte fallback (Llama 2) and
 * byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM).
 *
 * struct nb_tok_spec is the data a tokenizer is made of: importers fill it
 * from tokenizer.model / tokenizer.bin / tokenizer.json / GGUF metadata, the
 * image stores it as a blob (nb_tok_spec_write / nb_tok_spec_parse, format in
 * docs/image-format.md), and nb_tok_open() builds the lookup tables from it.
 * Both encoders must match the reference implementations id for id. */
#ifndef NB_TOKENIZER_H
#define NB_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum nb_tok_kind {
	NB_TOK_SPM = 1, /* merges by piece score, ▁ for space, <0xXX> byte fallback */
	NB_TOK_BPE = 2, /* byte-level: bytes mapped to printable chars, ranked merges */
};

/* Pre-tokenizer of byte-level BPE (how text is split before merging). */
enum nb_tok_pretok {
	NB_PRETOK_NONE = 0,
	NB_PRETOK_GPT2 = 1,   /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
	NB_PRETOK_LLAMA3 = 2, /* Llama-3 regex, digits in runs of 1-3, ignore_merges */
	NB_PRETOK_QWEN2 = 3,  /* Qwen2 regex (digits one by one), NFC normalizer */
	NB_PRETOK_SMOLLM = 4, /* individual digits, then GPT-2 ByteLevel */
};

/* Piece types: sentencepiece's numbering (also GGUF's token_type). */
enum nb_piece_type {
	NB_PIECE_NORMAL = 1,
	NB_PIECE_UNKNOWN = 2,
	NB_PIECE_CONTROL = 3,
	NB_PIECE_USER = 4, /* user-defined / added token: matched whole before splitting */
	NB_PIECE_UNUSED = 5,
	NB_PIECE_BYTE = 6,
};

#define NB_TOK_FLAG_ADD_BOS 1u         /* prepend BOS when encoding a prompt */
#define NB_TOK_FLAG_ADD_SPACE_PREFIX 2u /* SPM: prepend ▁ to the text */
#define NB_TOK_FLAG_BYTE_FALLBACK 4u   /* SPM: unknown bytes become <0xXX> */
#define NB_TOK_FLAG_IGNORE_MERGES 8u   /* BPE: a whole word in the vocab is one token */

struct nb_tok_spec {
	uint32_t kind;   /* enum nb_tok_kind */
	uint32_t pretok; /* enum nb_tok_pretok (BPE) */
	uint32_t flags;  /* NB_TOK_FLAG_* */
	uint32_t n_vocab;
	int32_t bos_id, eos_id, unk_id, pad_id; /* -1 if none */
	/* Piece i is text + offsets[i], offsets[i+1] - offsets[i] bytes (not
	 * NUL-terminated; BPE pieces are in the byte-to-unicode alphabet). */
	char *text;
	uint32_t *offsets; /* n_vocab + 1 */
	float *scores;     /* n_vocab; SPM merge priority (higher first) */
	uint8_t *types;    /* n_vocab; enum nb_piece_type */
	/* BPE merges in rank order: merges[2r], merges[2r+1] are the ids of
	 * the left and right piece of rank r. */
	uint32_t n_merges;
	uint32_t *merges;
};

void nb_tok_spec_init(struct nb_tok_spec *s);
void nb_tok_spec_free(struct nb_tok_spec *s);
/* Serialized form stored in the image. Parse checks every length and id. */
int nb_tok_spec_write(const struct nb_tok_spec *s, uint8_t **blob, size_t *len);
int nb_tok_spec_parse(struct nb_tok_spec *s, const void *blob, size_t len);

struct nb_tok; /* opaque: lookup tables built by nb_tok_open */

int nb_tok_open(struct nb_tok **t, const struct nb_tok_spec *spec);
void nb_tok_close(struct nb_tok *t);

/* Encodes len bytes of UTF-8 text. Invalid UTF-8 -> -NB_EFORMAT with the
 * byte offset logged. Writes at most max ids; *n gets the count needed
 * (-NB_ERANGE if more than max). add_bos prepends BOS if the model has one. */
int nb_tok_encode(const struct nb_tok *t, const char *text, size_t len, bool add_bos,
		  int32_t *ids, size_t max, size_t *n);
/* The same into a new array (free()) of *n ids plus room for extra more:
 * no guess at the count, which byte fallback can make 3x the bytes. */
int nb_tok_encode_alloc(const struct nb_tok *t, const char *text, size_t len, bool add_bos,
			size_t extra, int32_t **ids, size_t *n);

/* Bytes of one token as it continues the text after token prev (SPM drops
 * the leading space of the first piece after BOS; <0xXX> gives one raw
 * byte; BPE maps its alphabet back to bytes). Control tokens give "". */
int nb_tok_piece(const struct nb_tok *t, int32_t prev, int32_t id, char *buf, size_t cap,
		 size_t *len);

/* Decodes a whole id sequence into buf (NUL-terminated if room). */
int nb_tok_decode(const struct nb_tok *t, const int32_t *ids, size_t n, char *buf, size_t cap,
		  size_t *len);

uint32_t nb_tok_vocab_size(const struct nb_tok *t);
int32_t nb_tok_bos(const struct nb_tok *t);
int32_t nb_tok_eos(const struct nb_tok *t);

#endif
