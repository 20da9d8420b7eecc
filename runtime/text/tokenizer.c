/* Tokenizer core: the spec (validation, the image blob), the lookup tables
 * of an open tokenizer, encode dispatch, decoding. The SPM merge loop is in
 * tok_spm.c, byte-level BPE in tok_bpe.c. Blob layout: docs/tokenizer-blob.md. */
#include "runtime/text/tokenizer.h"

#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/text/tok_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Far above any real tokenizer (the largest have ~256K pieces of a few dozen
 * bytes), low enough that no product of them overflows 32-bit offsets. */
#define NB_TOK_MAX_VOCAB (1u << 24)
#define NB_TOK_MAX_PIECE (1u << 16)
#define NB_TOK_MAX_TEXT 0x7fffffffu
#define NB_TOK_MAX_MERGES (1u << 26)

#define NB_TOK_FLAGS_ALL                                                          \
	(NB_TOK_FLAG_ADD_BOS | NB_TOK_FLAG_ADD_SPACE_PREFIX | NB_TOK_FLAG_BYTE_FALLBACK | \
	 NB_TOK_FLAG_IGNORE_MERGES)

#define BLOB_MAGIC "NBTK"
#define BLOB_VERSION 1u
#define BLOB_HEADER 48u

/* U+2581 LOWER ONE EIGHTH BLOCK: sentencepiece's visible space. */
static const char spm_space[3] = { '\xe2', '\x96', '\x81' };
/* sentencepiece's default surface of <unk> (" \u2047 "). */
static const char spm_unk_surface[5] = { ' ', '\xe2', '\x81', '\x87', ' ' };

void nb_tok_spec_init(struct nb_tok_spec *s)
{
	memset(s, 0, sizeof(*s));
	s->bos_id = s->eos_id = s->unk_id = s->pad_id = -1;
}

void nb_tok_spec_free(struct nb_tok_spec *s)
{
	if (!s)
		return;
	free(s->text);
	free(s->offsets);
	free(s->scores);
	free(s->types);
	free(s->merges);
	nb_tok_spec_init(s);
}

/* ---- validation ---------------------------------------------------------- */

static int check_special(const char *what, int32_t id, uint32_t n_vocab)
{
	if (id < -1 || (id >= 0 && (uint32_t)id >= n_vocab)) {
		nb_err("tokenizer: %s id %d outside -1..%u", what, id, n_vocab - 1);
		return -NB_EFORMAT;
	}
	return 0;
}

static int check_header(const struct nb_tok_spec *s)
{
	int err;

	if (s->kind != NB_TOK_SPM && s->kind != NB_TOK_BPE) {
		nb_err("tokenizer: unknown kind %u", s->kind);
		return -NB_EFORMAT;
	}
	if (s->pretok > NB_PRETOK_SMOLLM || (s->kind == NB_TOK_SPM && s->pretok != NB_PRETOK_NONE)) {
		nb_err("tokenizer: pre-tokenizer %u invalid for kind %u", s->pretok, s->kind);
		return -NB_EFORMAT;
	}
	if (s->flags & ~NB_TOK_FLAGS_ALL) {
		nb_err("tokenizer: unknown flags 0x%x", s->flags & ~NB_TOK_FLAGS_ALL);
		return -NB_EFORMAT;
	}
	if (s->n_vocab == 0 || s->n_vocab > NB_TOK_MAX_VOCAB) {
		nb_err("tokenizer: n_vocab %u outside 1..%u", s->n_vocab, NB_TOK_MAX_VOCAB);
		return -NB_EFORMAT;
	}
	if ((err = check_special("bos", s->bos_id, s->n_vocab)) ||
	    (err = check_special("eos", s->eos_id, s->n_vocab)) ||
	    (err = check_special("unk", s->unk_id, s->n_vocab)) ||
	    (err = check_special("pad", s->pad_id, s->n_vocab)))
		return err;
	if (s->n_merges > NB_TOK_MAX_MERGES || (s->kind == NB_TOK_SPM && s->n_merges)) {
		nb_err("tokenizer: %u merges invalid for kind %u", s->n_merges, s->kind);
		return -NB_EFORMAT;
	}
	if (!s->offsets || !s->scores || !s->types || (s->n_merges && !s->merges)) {
		nb_err("tokenizer: spec has missing tables");
		return -NB_EINVAL;
	}
	return 0;
}

static int check_pieces(const struct nb_tok_spec *s)
{
	uint32_t i;

	if (s->offsets[0] != 0) {
		nb_err("tokenizer: piece offsets start at %u, not 0", s->offsets[0]);
		return -NB_EFORMAT;
	}
	for (i = 0; i < s->n_vocab; i++) {
		if (s->offsets[i + 1] < s->offsets[i] ||
		    s->offsets[i + 1] - s->offsets[i] > NB_TOK_MAX_PIECE) {
			nb_err("tokenizer: piece %u has a bad length", i);
			return -NB_EFORMAT;
		}
		/* NaN would make the merge order depend on comparison order. */
		if (isnan(s->scores[i])) {
			nb_err("tokenizer: piece %u has a NaN score", i);
			return -NB_EFORMAT;
		}
		if (s->types[i] < NB_PIECE_NORMAL || s->types[i] > NB_PIECE_BYTE) {
			nb_err("tokenizer: piece %u has unknown type %u", i, s->types[i]);
			return -NB_EFORMAT;
		}
	}
	if (s->offsets[s->n_vocab] > NB_TOK_MAX_TEXT || (s->offsets[s->n_vocab] && !s->text)) {
		nb_err("tokenizer: piece text of %u bytes invalid", s->offsets[s->n_vocab]);
		return -NB_EFORMAT;
	}
	return 0;
}

static int check_merges(const struct nb_tok_spec *s)
{
	uint64_t i;

	for (i = 0; i < 2ull * s->n_merges; i++) {
		if (s->merges[i] >= s->n_vocab) {
			nb_err("tokenizer: merge %llu names piece %u of %u",
			       (unsigned long long)(i / 2), s->merges[i], s->n_vocab);
			return -NB_EFORMAT;
		}
	}
	return 0;
}

/* Everything nb_tok_open relies on; shared by parse and open so a spec from
 * an importer is held to the same rules as one from an image. */
static int spec_check(const struct nb_tok_spec *s)
{
	int err;

	if ((err = check_header(s)) || (err = check_pieces(s)) || (err = check_merges(s)))
		return err;
	return 0;
}

/* ---- blob ---------------------------------------------------------------- */

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t float_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float bits_float(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Byte size of a blob for these counts; 64-bit so no count can wrap it. */
static uint64_t blob_size(uint64_t n_vocab, uint64_t n_merges, uint64_t text_len)
{
	uint64_t tables = BLOB_HEADER + 9 * n_vocab;

	tables = (tables + 3) & ~3ull;
	return tables + 8 * n_merges + text_len;
}

int nb_tok_spec_write(const struct nb_tok_spec *s, uint8_t **blob, size_t *len)
{
	uint32_t i, text_len;
	uint64_t size, m;
	uint8_t *b, *p;
	int err;

	*blob = NULL;
	*len = 0;
	err = spec_check(s);
	if (err)
		return err;
	text_len = s->offsets[s->n_vocab];
	size = blob_size(s->n_vocab, s->n_merges, text_len);
	if (size > SIZE_MAX) {
		nb_err("tokenizer: blob of %llu bytes too large", (unsigned long long)size);
		return -NB_ERANGE;
	}
	b = calloc(1, (size_t)size);
	if (!b) {
		nb_err("tokenizer: no memory for a %llu-byte blob", (unsigned long long)size);
		return -NB_ENOMEM;
	}
	memcpy(b, BLOB_MAGIC, 4);
	put_u32(b + 4, BLOB_VERSION);
	put_u32(b + 8, s->kind);
	put_u32(b + 12, s->pretok);
	put_u32(b + 16, s->flags);
	put_u32(b + 20, s->n_vocab);
	put_u32(b + 24, (uint32_t)s->bos_id);
	put_u32(b + 28, (uint32_t)s->eos_id);
	put_u32(b + 32, (uint32_t)s->unk_id);
	put_u32(b + 36, (uint32_t)s->pad_id);
	put_u32(b + 40, s->n_merges);
	put_u32(b + 44, text_len);
	p = b + BLOB_HEADER;
	for (i = 0; i < s->n_vocab; i++, p += 4)
		put_u32(p, s->offsets[i + 1] - s->offsets[i]);
	for (i = 0; i < s->n_vocab; i++, p += 4)
		put_u32(p, float_bits(s->scores[i]));
	memcpy(p, s->types, s->n_vocab);
	p = b + ((BLOB_HEADER + 9ull * s->n_vocab + 3) & ~3ull);
	for (m = 0; m < 2ull * s->n_merges; m++, p += 4)
		put_u32(p, s->merges[m]);
	if (text_len)
		memcpy(p, s->text, text_len);
	*blob = b;
	*len = (size_t)size;
	return 0;
}

static int parse_header(struct nb_tok_spec *s, const uint8_t *b, size_t len, uint32_t *text_len)
{
	uint64_t need;

	if (len < BLOB_HEADER) {
		nb_err("tokenizer blob: %zu bytes, shorter than the %u-byte header", len, BLOB_HEADER);
		return -NB_EFORMAT;
	}
	if (memcmp(b, BLOB_MAGIC, 4) != 0) {
		nb_err("tokenizer blob: bad magic at offset 0");
		return -NB_EFORMAT;
	}
	if (get_u32(b + 4) != BLOB_VERSION) {
		nb_err("tokenizer blob: version %u, expected %u", get_u32(b + 4), BLOB_VERSION);
		return -NB_EFORMAT;
	}
	s->kind = get_u32(b + 8);
	s->pretok = get_u32(b + 12);
	s->flags = get_u32(b + 16);
	s->n_vocab = get_u32(b + 20);
	s->bos_id = (int32_t)get_u32(b + 24);
	s->eos_id = (int32_t)get_u32(b + 28);
	s->unk_id = (int32_t)get_u32(b + 32);
	s->pad_id = (int32_t)get_u32(b + 36);
	s->n_merges = get_u32(b + 40);
	*text_len = get_u32(b + 44);
	/* Sizes must add up exactly before anything is allocated from them. */
	need = blob_size(s->n_vocab, s->n_merges, *text_len);
	if (need != len) {
		nb_err("tokenizer blob: counts at offset 20..47 imply %llu bytes, blob has %zu",
		       (unsigned long long)need, len);
		return -NB_EFORMAT;
	}
	if (s->n_vocab == 0 || s->n_vocab > NB_TOK_MAX_VOCAB) {
		nb_err("tokenizer blob: n_vocab %u outside 1..%u", s->n_vocab, NB_TOK_MAX_VOCAB);
		return -NB_EFORMAT;
	}
	return 0;
}

static int alloc_tables(struct nb_tok_spec *s, uint32_t text_len)
{
	s->text = malloc(text_len ? text_len : 1);
	s->offsets = malloc(((size_t)s->n_vocab + 1) * sizeof(*s->offsets));
	s->scores = malloc((size_t)s->n_vocab * sizeof(*s->scores));
	s->types = malloc(s->n_vocab);
	s->merges = s->n_merges ? malloc(2 * (size_t)s->n_merges * sizeof(*s->merges)) : NULL;
	if (!s->text || !s->offsets || !s->scores || !s->types || (s->n_merges && !s->merges)) {
		nb_err("tokenizer blob: no memory for %u pieces", s->n_vocab);
		return -NB_ENOMEM;
	}
	return 0;
}

static int parse_tables(struct nb_tok_spec *s, const uint8_t *b, uint32_t text_len)
{
	const uint8_t *p = b + BLOB_HEADER;
	uint64_t off = 0, m;
	uint32_t i;

	s->offsets[0] = 0;
	for (i = 0; i < s->n_vocab; i++, p += 4) {
		off += get_u32(p);
		if (off > text_len) {
			nb_err("tokenizer blob: piece %u (length at offset %u) runs past the %u text bytes",
			       i, BLOB_HEADER + 4 * i, text_len);
			return -NB_EFORMAT;
		}
		s->offsets[i + 1] = (uint32_t)off;
	}
	if (off != text_len) {
		nb_err("tokenizer blob: piece lengths sum to %llu, text has %u bytes",
		       (unsigned long long)off, text_len);
		return -NB_EFORMAT;
	}
	for (i = 0; i < s->n_vocab; i++, p += 4)
		s->scores[i] = bits_float(get_u32(p));
	memcpy(s->types, p, s->n_vocab);
	p = b + ((BLOB_HEADER + 9ull * s->n_vocab + 3) & ~3ull);
	for (m = 0; m < 2ull * s->n_merges; m++, p += 4)
		s->merges[m] = get_u32(p);
	if (text_len)
		memcpy(s->text, p, text_len);
	return 0;
}

int nb_tok_spec_parse(struct nb_tok_spec *s, const void *blob, size_t len)
{
	uint32_t text_len;
	int err;

	nb_tok_spec_init(s);
	if (!blob && len) {
		nb_err("tokenizer blob: NULL");
		return -NB_EINVAL;
	}
	err = parse_header(s, blob, len, &text_len);
	if (err)
		goto err_reset;
	err = alloc_tables(s, text_len);
	if (err)
		goto err_free;
	err = parse_tables(s, blob, text_len);
	if (err)
		goto err_free;
	err = spec_check(s);
	if (err)
		goto err_free;
	return 0;

err_free:
	nb_tok_spec_free(s);
	return err;
err_reset:
	nb_tok_spec_init(s);
	return err;
}

/* ---- open / lookup -------------------------------------------------------- */

static int spec_copy(struct nb_tok_spec *d, const struct nb_tok_spec *s)
{
	uint32_t text_len = s->offsets[s->n_vocab];

	*d = *s;
	d->text = NULL;
	d->offsets = NULL;
	d->scores = NULL;
	d->types = NULL;
	d->merges = NULL;
	if (alloc_tables(d, text_len))
		return -NB_ENOMEM;
	if (text_len)
		memcpy(d->text, s->text, text_len);
	memcpy(d->offsets, s->offsets, ((size_t)s->n_vocab + 1) * sizeof(*s->offsets));
	memcpy(d->scores, s->scores, (size_t)s->n_vocab * sizeof(*s->scores));
	memcpy(d->types, s->types, s->n_vocab);
	if (s->n_merges)
		memcpy(d->merges, s->merges, 2 * (size_t)s->n_merges * sizeof(*s->merges));
	return 0;
}

/* FNV-1a: pieces are short, and the table is sized so probes stay short.
 * It extends one byte at a time, which nb_tok_longest_prefix relies on. */
#define FNV_OFFSET 2166136261u
#define FNV_PRIME 16777619u

static uint32_t piece_hash(const char *s, size_t len)
{
	uint32_t h = FNV_OFFSET;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * FNV_PRIME;
	return h;
}

static const char *piece_text(const struct nb_tok_spec *s, uint32_t id, size_t *len)
{
	*len = s->offsets[id + 1] - s->offsets[id];
	return s->text + s->offsets[id];
}

static int32_t lookup_hashed(const struct nb_tok *t, const char *s, size_t len, uint32_t h)
{
	const char *p;
	size_t plen;
	uint32_t e;

	h &= t->piece_hash_mask;
	while ((e = t->piece_hash[h]) != 0) {
		p = piece_text(&t->spec, e - 1, &plen);
		if (plen == len && memcmp(p, s, len) == 0)
			return (int32_t)(e - 1);
		h = (h + 1) & t->piece_hash_mask;
	}
	return -1;
}

int32_t nb_tok_lookup(const struct nb_tok *t, const char *s, size_t len)
{
	if (!t || (!s && len) || len == 0 || len > NB_TOK_MAX_PIECE)
		return -1;
	return lookup_hashed(t, s, len, piece_hash(s, len));
}

size_t nb_tok_longest_prefix(const struct nb_tok *t, const char *s, size_t max_len, uint8_t type,
			     int32_t *id)
{
	uint32_t h = FNV_OFFSET;
	size_t l, best = 0;
	int32_t i;

	if (max_len > NB_TOK_MAX_PIECE)
		max_len = NB_TOK_MAX_PIECE;
	for (l = 1; l <= max_len; l++) {
		h = (h ^ (uint8_t)s[l - 1]) * FNV_PRIME;
		i = lookup_hashed(t, s, l, h);
		if (i >= 0 && t->spec.types[i] == type) {
			best = l;
			*id = i;
		}
	}
	return best;
}

/* Inserts piece id; a second piece with the same bytes is an error for SPM
 * (sentencepiece refuses such a model), for BPE the first id wins. */
static int hash_insert(struct nb_tok *t, uint32_t id)
{
	size_t len;
	const char *p = piece_text(&t->spec, id, &len);
	int32_t dup;
	uint32_t h;

	if (len == 0)
		return 0; /* never matched from text */
	dup = nb_tok_lookup(t, p, len);
	if (dup >= 0) {
		if (t->spec.kind == NB_TOK_SPM) {
			nb_err("tokenizer: piece %u duplicates piece %d", id, dup);
			return -NB_EFORMAT;
		}
		nb_dbg("tokenizer: piece %u duplicates piece %d; lookups give %d", id, dup, dup);
		return 0;
	}
	h = piece_hash(p, len) & t->piece_hash_mask;
	while (t->piece_hash[h] != 0)
		h = (h + 1) & t->piece_hash_mask;
	t->piece_hash[h] = id + 1;
	return 0;
}

static int build_hash(struct nb_tok *t)
{
	uint32_t size = 16, i;
	int err;

	while (size < 2 * t->spec.n_vocab)
		size *= 2;
	t->piece_hash = calloc(size, sizeof(*t->piece_hash));
	if (!t->piece_hash) {
		nb_err("tokenizer: no memory for a %u-entry piece table", size);
		return -NB_ENOMEM;
	}
	t->piece_hash_mask = size - 1;
	for (i = 0; i < t->spec.n_vocab; i++) {
		err = hash_insert(t, i);
		if (err)
			return err;
	}
	return 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The byte of a "<0xXX>" piece (upper-case hex, as sentencepiece writes
 * them), or -1. */
static int byte_of_piece(const char *p, size_t len)
{
	int hi, lo;

	if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>')
		return -1;
	hi = hex_digit(p[3]);
	lo = hex_digit(p[4]);
	return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* byte_ids from the BYTE pieces, and the facts the SPM encoder needs. */
static int scan_pieces(struct nb_tok *t)
{
	const struct nb_tok_spec *s = &t->spec;
	uint32_t i, n_unk = 0;
	const char *p;
	size_t len;
	int b;

	for (i = 0; i < 256; i++)
		t->byte_ids[i] = -1;
	for (i = 0; i < s->n_vocab; i++) {
		p = piece_text(s, i, &len);
		if (s->types[i] == NB_PIECE_UNKNOWN)
			n_unk++;
		if (s->types[i] == NB_PIECE_USER && len > t->spm_user_max_len)
			t->spm_user_max_len = (uint32_t)len;
		if (s->types[i] == NB_PIECE_UNUSED)
			t->spm_has_unused = true;
		if (s->types[i] != NB_PIECE_BYTE)
			continue;
		b = byte_of_piece(p, len);
		if (b >= 0 && t->byte_ids[b] < 0)
			t->byte_ids[b] = (int32_t)i;
		else if (s->kind == NB_TOK_SPM) {
			nb_err("tokenizer: byte piece %u is not a distinct <0xXX>", i);
			return -NB_EFORMAT;
		}
	}
	if (s->kind != NB_TOK_SPM)
		return 0;
	if (s->unk_id < 0 || s->types[s->unk_id] != NB_PIECE_UNKNOWN || n_unk != 1) {
		nb_err("tokenizer: SPM needs exactly one unknown piece, named by unk_id (%d)",
		       s->unk_id);
		return -NB_EFORMAT;
	}
	if (s->flags & NB_TOK_FLAG_BYTE_FALLBACK) {
		for (i = 0; i < 256; i++) {
			if (t->byte_ids[i] < 0) {
				nb_err("tokenizer: byte fallback without a <0x%02X> piece", i);
				return -NB_EFORMAT;
			}
		}
	}
	return 0;
}

int nb_tok_open(struct nb_tok **out, const struct nb_tok_spec *spec)
{
	struct nb_tok *t;
	int err;

	*out = NULL;
	err = spec_check(spec);
	if (err)
		return err;
	t = calloc(1, sizeof(*t));
	if (!t) {
		nb_err("tokenizer: no memory");
		return -NB_ENOMEM;
	}
	nb_tok_spec_init(&t->spec);
	err = spec_copy(&t->spec, spec);
	if (err)
		goto err_close;
	err = build_hash(t);
	if (err)
		goto err_close;
	err = scan_pieces(t);
	if (err)
		goto err_close;
	if (spec->kind == NB_TOK_BPE) {
		err = nb_tok_bpe_open(t);
		if (err)
			goto err_close;
	}
	*out = t;
	return 0;

err_close:
	nb_tok_close(t);
	return err;
}

void nb_tok_close(struct nb_tok *t)
{
	if (!t)
		return;
	if (t->bpe)
		nb_tok_bpe_close(t);
	free(t->piece_hash);
	nb_tok_spec_free(&t->spec);
	free(t);
}

uint32_t nb_tok_vocab_size(const struct nb_tok *t)
{
	return t ? t->spec.n_vocab : 0;
}

int32_t nb_tok_bos(const struct nb_tok *t)
{
	return t ? t->spec.bos_id : -1;
}

int32_t nb_tok_eos(const struct nb_tok *t)
{
	return t ? t->spec.eos_id : -1;
}

/* ---- encode --------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq_len(const uint8_t *s, size_t avail)
{
	uint8_t c = s[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4;
	else
		return 0;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* Offset of the first byte that is not part of well-formed UTF-8, or len. */
static size_t utf8_invalid_at(const char *text, size_t len)
{
	const uint8_t *s = (const uint8_t *)text;
	size_t i = 0, n;

	while (i < len) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		n = utf8_seq_len(s + i, len - i);
		if (n == 0)
			return i;
		i += n;
	}
	return len;
}

int nb_tok_encode(const struct nb_tok *t, const char *text, size_t len, bool add_bos,
		  int32_t *ids, size_t max, size_t *n)
{
	size_t bad, pos = 0, sub = 0, room;
	int err;

	if (n)
		*n = 0;
	if (!t || !n || (!text && len) || (!ids && max))
		return -NB_EINVAL;
	bad = utf8_invalid_at(text, len);
	if (bad != len) {
		nb_err("tokenizer: invalid UTF-8 at byte offset %zu of %zu", bad, len);
		return -NB_EFORMAT;
	}
	if (add_bos && t->spec.bos_id >= 0) {
		if (max > 0)
			ids[0] = t->spec.bos_id;
		pos = 1;
	}
	room = max > pos ? max - pos : 0;
	if (len == 0)
		err = 0;
	else if (t->spec.kind == NB_TOK_SPM)
		err = nb_tok_spm_encode(t, text, len, room ? ids + pos : NULL, room, &sub);
	else
		err = nb_tok_bpe_encode(t, text, len, room ? ids + pos : NULL, room, &sub);
	/* -NB_ERANGE with room to spare is not about the output (text too long). */
	if (err && (err != -NB_ERANGE || sub <= room))
		return err;
	*n = pos + sub;
	return *n > max ? -NB_ERANGE : 0;
}

int nb_tok_encode_alloc(const struct nb_tok *t, const char *text, size_t len, bool add_bos,
			size_t extra, int32_t **ids, size_t *n)
{
	size_t need = 0;
	int err = nb_tok_encode(t, text, len, add_bos, NULL, 0, &need);

	*ids = NULL;
	*n = 0;
	if (err && err != -NB_ERANGE)
		return err;
	if (need + extra < need || need + extra > SIZE_MAX / sizeof(int32_t))
		return -NB_ERANGE;
	*ids = malloc((need + extra ? need + extra : 1) * sizeof(int32_t));
	if (!*ids)
		return -NB_ENOMEM;
	err = nb_tok_encode(t, text, len, add_bos, *ids, need, n);
	if (err) {
		free(*ids);
		*ids = NULL;
		*n = 0;
	}
	return err;
}

/* ---- decode --------------------------------------------------------------- */

/* Copies what fits; *len always gets the full size. */
static int put_bytes(const char *src, size_t n, char *buf, size_t cap, size_t *len)
{
	*len = n;
	if (n > cap)
		return -NB_ERANGE;
	if (n)
		memcpy(buf, src, n);
	return 0;
}

/* An SPM piece with ▁ turned back into spaces. */
static int spm_piece_text(const char *p, size_t plen, bool strip_space, char *buf, size_t cap,
			  size_t *len)
{
	size_t i = 0, n = 0;

	if (strip_space && plen >= 3 && memcmp(p, spm_space, 3) == 0)
		i = 3;
	while (i < plen) {
		char c = p[i];

		if (plen - i >= 3 && memcmp(p + i, spm_space, 3) == 0) {
			c = ' ';
			i += 3;
		} else {
			i++;
		}
		if (n < cap)
			buf[n] = c;
		n++;
	}
	*len = n;
	return n > cap ? -NB_ERANGE : 0;
}

int nb_tok_piece(const struct nb_tok *t, int32_t prev, int32_t id, char *buf, size_t cap,
		 size_t *len)
{
	const struct nb_tok_spec *s;
	const char *p;
	size_t plen;
	bool at_start;
	char byte;
	int b;

	if (len)
		*len = 0;
	if (!t || !len || (!buf && cap))
		return -NB_EINVAL;
	s = &t->spec;
	if (id < 0 || (uint32_t)id >= s->n_vocab) {
		nb_err("tokenizer: token id %d outside 0..%u", id, s->n_vocab - 1);
		return -NB_EINVAL;
	}
	if (s->types[id] == NB_PIECE_CONTROL)
		return 0;
	if (s->kind == NB_TOK_BPE)
		return nb_tok_bpe_piece_bytes(t, id, buf, cap, len);
	p = piece_text(s, (uint32_t)id, &plen);
	if (s->types[id] == NB_PIECE_UNKNOWN)
		return put_bytes(spm_unk_surface, sizeof(spm_unk_surface), buf, cap, len);
	if (s->types[id] == NB_PIECE_BYTE) {
		b = byte_of_piece(p, plen);
		byte = (char)(uint8_t)b;
		if (b >= 0)
			return put_bytes(&byte, 1, buf, cap, len);
	}
	/* The dummy prefix the encoder added is not part of the text. */
	at_start = prev < 0 || prev == s->bos_id;
	return spm_piece_text(p, plen, at_start && (s->flags & NB_TOK_FLAG_ADD_SPACE_PREFIX), buf,
			      cap, len);
}

int nb_tok_decode(const struct nb_tok *t, const int32_t *ids, size_t n, char *buf, size_t cap,
		  size_t *len)
{
	size_t i, pos = 0, plen;
	int32_t prev = -1;
	int err;

	if (len)
		*len = 0;
	if (!t || !len || (!ids && n) || (!buf && cap))
		return -NB_EINVAL;
	for (i = 0; i < n; i++) {
		err = nb_tok_piece(t, prev, ids[i], pos < cap ? buf + pos : NULL,
				   pos < cap ? cap - pos : 0, &plen);
		if (err && err != -NB_ERANGE)
			return err;
		if (plen > SIZE_MAX - pos)
			return -NB_ERANGE;
		pos += plen;
		prev = ids[i];
	}
	*len = pos;
	if (pos < cap)
		buf[pos] = '\0';
	return pos > cap ? -NB_ERANGE : 0;
}
