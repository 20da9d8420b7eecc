/* Shared between tokenizer.c (common tables, SPM) and tok_bpe.c (byte-level
 * BPE). Not part of the public API. */
#ifndef NB_TOK_INTERNAL_H
#define NB_TOK_INTERNAL_H

#include "runtime/text/tokenizer.h"

struct nb_tok_bpe; /* owned by tok_bpe.c */

struct nb_tok {
	struct nb_tok_spec spec; /* private copy: the tables below point into it */
	uint32_t *piece_hash;    /* open addressing, piece bytes -> id + 1 (0 = empty) */
	uint32_t piece_hash_mask;
	int32_t byte_ids[256];   /* SPM: id of <0xXX>, or -1 */
	struct nb_tok_bpe *bpe;  /* NULL unless kind == NB_TOK_BPE */
	uint32_t spm_user_max_len; /* longest USER piece (matched whole), 0 if none */
	bool spm_has_unused;       /* UNUSED pieces exist: merges through them are undone */
};

/* id of the piece with exactly these bytes, or -1. */
int32_t nb_tok_lookup(const struct nb_tok *t, const char *s, size_t len);
/* Length of the longest prefix of s (at most max_len bytes) that is a piece
 * of this type, its id in *id; 0 if none. O(max_len). */
size_t nb_tok_longest_prefix(const struct nb_tok *t, const char *s, size_t max_len, uint8_t type,
			     int32_t *id);

int nb_tok_spm_encode(const struct nb_tok *t, const char *text, size_t len, int32_t *ids,
		      size_t max, size_t *n);

int nb_tok_bpe_open(struct nb_tok *t);
void nb_tok_bpe_close(struct nb_tok *t);
int nb_tok_bpe_encode(const struct nb_tok *t, const char *text, size_t len, int32_t *ids,
		      size_t max, size_t *n);
/* Raw bytes of a BPE piece (byte-to-unicode alphabet undone). */
int nb_tok_bpe_piece_bytes(const struct nb_tok *t, int32_t id, char *buf, size_t cap,
			   size_t *len);
/* Pre-token boundaries of text under pre-tokenizer pretok (no normalizer,
 * no added tokens): the end offset of each pre-token into ends. At most max
 * are written, *n gets the count (-NB_ERANGE if more than max). */
int nb_tok_bpe_split(uint32_t pretok, const char *text, size_t len, size_t *ends, size_t max,
		     size_t *n);

#endif
