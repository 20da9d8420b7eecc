/* SentencePiece tokenizers into a struct nb_tok_spec: llama2.c's
 * tokenizer.bin and sentencepiece's tokenizer.model (protobuf, read by a
 * small bounds-checked wire-format reader; no protobuf library). */
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "tools/import/ckpt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Real tokenizer files are a few MB; anything this big is not one. */
#define TOK_FILE_MAX (256u << 20)
/* Pieces of sentencepiece are below 8000 bytes (kMaxPieceSize). */
#define TOK_PIECE_MAX 8000u

static const char spm_space[3] = { '\xe2', '\x96', '\x81' };

static int read_file(const char *path, uint8_t **data, size_t *len)
{
	uint8_t *buf = NULL;
	long size;
	int err = -NB_EIO;
	FILE *f;

	*data = NULL;
	*len = 0;
	f = fopen(path, "rb");
	if (!f) {
		nb_err("%s: %s", path, strerror(errno));
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	}
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
		nb_err("%s: cannot determine the size", path);
		goto out_close;
	}
	if ((unsigned long)size > TOK_FILE_MAX) {
		nb_err("%s: %ld bytes, more than a tokenizer file can be (%u)", path, size,
		       TOK_FILE_MAX);
		err = -NB_ERANGE;
		goto out_close;
	}
	buf = malloc(size ? (size_t)size : 1);
	if (!buf) {
		err = -NB_ENOMEM;
		goto out_close;
	}
	if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
		nb_err("%s: read failed", path);
		free(buf);
		goto out_close;
	}
	*data = buf;
	*len = (size_t)size;
	err = 0;
out_close:
	fclose(f);
	return err;
}

static int alloc_spec(struct nb_tok_spec *s, uint32_t n, uint64_t text_len)
{
	s->n_vocab = n;
	s->text = malloc(text_len ? (size_t)text_len : 1);
	s->offsets = calloc((size_t)n + 1, sizeof(*s->offsets));
	s->scores = calloc(n, sizeof(*s->scores));
	s->types = calloc(n, 1);
	if (!s->text || !s->offsets || !s->scores || !s->types) {
		nb_err("tokenizer: no memory for %u pieces", n);
		return -NB_ENOMEM;
	}
	return 0;
}

static int byte_piece_value(const char *p, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *hi, *lo;

	if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>' || !p[3] || !p[4])
		return -1;
	hi = strchr(hex, p[3]);
	lo = strchr(hex, p[4]);
	return hi && lo ? (int)((hi - hex) * 16 + (lo - hex)) : -1;
}

/* ---- llama2.c tokenizer.bin ------------------------------------------------ */

static uint32_t rd_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float rd_f32(const uint8_t *p)
{
	uint32_t u = rd_u32(p);
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Walks the entries once: their number and the text size once ' ' is ▁. */
static int l2c_scan(const char *path, const uint8_t *b, size_t len, uint32_t *n, uint64_t *text)
{
	size_t pos = 4, i;
	uint32_t plen;

	*n = 0;
	*text = 0;
	if (len < 4 || (int32_t)rd_u32(b) <= 0) {
		nb_err("%s: no max_token_length header", path);
		return -NB_EFORMAT;
	}
	while (pos < len) {
		if (len - pos < 8) {
			nb_err("%s: token %u truncated at offset %zu", path, *n, pos);
			return -NB_EFORMAT;
		}
		plen = rd_u32(b + pos + 4);
		if (plen == 0 || plen > TOK_PIECE_MAX || plen > len - pos - 8) {
			nb_err("%s: token %u at offset %zu has bad length %d", path, *n, pos,
			       (int32_t)plen);
			return -NB_EFORMAT;
		}
		for (i = 0; i < plen; i++)
			*text += b[pos + 8 + i] == ' ' ? 3 : 1;
		pos += 8 + (size_t)plen;
		(*n)++;
	}
	if (*n < 3) {
		nb_err("%s: %u tokens; <unk>, <s>, </s> at least are expected", path, *n);
		return -NB_EFORMAT;
	}
	return 0;
}

/* llama2.c's exporter writes <s> and </s> as "\n<s>\n" and "\n</s>\n" (for
 * printing); the spec keeps sentencepiece's names. */
static void l2c_piece(struct nb_tok_spec *s, uint32_t id, const uint8_t *p, uint32_t plen)
{
	uint32_t o = s->offsets[id], i;

	if (id == 1 && plen == 5 && memcmp(p, "\n<s>\n", 5) == 0) {
		p += 1;
		plen = 3;
	} else if (id == 2 && plen == 6 && memcmp(p, "\n</s>\n", 6) == 0) {
		p += 1;
		plen = 4;
	}
	for (i = 0; i < plen; i++) {
		if (p[i] == ' ') {
			memcpy(s->text + o, spm_space, 3);
			o += 3;
		} else {
			s->text[o++] = (char)p[i];
		}
	}
	s->offsets[id + 1] = o;
}

static void l2c_types(struct nb_tok_spec *s)
{
	uint32_t i, n_bytes = 0;
	int b;

	for (i = 0; i < s->n_vocab; i++) {
		s->types[i] = i == 0 ? NB_PIECE_UNKNOWN : i <= 2 ? NB_PIECE_CONTROL : NB_PIECE_NORMAL;
		b = byte_piece_value(s->text + s->offsets[i], s->offsets[i + 1] - s->offsets[i]);
		if (i > 2 && b >= 0)
			n_bytes++;
	}
	/* The file has no types: <0xXX> pieces are bytes when all 256 are there
	 * (sentencepiece's own rule for byte_fallback). */
	if (n_bytes != 256)
		return;
	for (i = 3; i < s->n_vocab; i++)
		if (byte_piece_value(s->text + s->offsets[i], s->offsets[i + 1] - s->offsets[i]) >= 0)
			s->types[i] = NB_PIECE_BYTE;
	s->flags |= NB_TOK_FLAG_BYTE_FALLBACK;
}

int nb_tok_import_llama2c(struct nb_tok_spec *s, const char *path)
{
	uint64_t text_len;
	uint8_t *b = NULL;
	size_t len, pos = 4;
	uint32_t n, i, plen;
	int err;

	nb_tok_spec_init(s);
	err = read_file(path, &b, &len);
	if (err)
		return err;
	err = l2c_scan(path, b, len, &n, &text_len);
	if (err)
		goto out;
	err = alloc_spec(s, n, text_len);
	if (err)
		goto out;
	for (i = 0; i < n; i++) {
		s->scores[i] = rd_f32(b + pos);
		plen = rd_u32(b + pos + 4);
		l2c_piece(s, i, b + pos + 8, plen);
		pos += 8 + (size_t)plen;
	}
	s->kind = NB_TOK_SPM;
	s->unk_id = 0;
	s->bos_id = 1;
	s->eos_id = 2;
	s->flags = NB_TOK_FLAG_ADD_BOS | NB_TOK_FLAG_ADD_SPACE_PREFIX;
	l2c_types(s);
out:
	free(b);
	if (err)
		nb_tok_spec_free(s);
	return err;
}

/* ---- protobuf wire format ---------------------------------------------------- */

struct pb {
	const uint8_t *p, *end;
	const char *path;
	const uint8_t *base; /* for offsets in messages */
};

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

static int pb_fail(const struct pb *r, const char *what)
{
	nb_err("%s: protobuf: %s at offset %td", r->path, what, r->p - r->base);
	return -NB_EFORMAT;
}

static int pb_varint(struct pb *r, uint64_t *v)
{
	unsigned shift = 0;
	uint8_t c;

	*v = 0;
	do {
		if (r->p >= r->end || shift > 63)
			return pb_fail(r, "truncated or overlong varint");
		c = *r->p++;
		*v |= (uint64_t)(c & 0x7f) << shift;
		shift += 7;
	} while (c & 0x80);
	return 0;
}

/* Reads one field key; *wire is the wire type. */
static int pb_key(struct pb *r, uint32_t *field, uint32_t *wire)
{
	uint64_t k;
	int err = pb_varint(r, &k);

	if (err)
		return err;
	*field = (uint32_t)(k >> 3);
	*wire = (uint32_t)(k & 7);
	if (k >> 32 || *field == 0)
		return pb_fail(r, "bad field key");
	return 0;
}

/* A length-delimited field: a sub-reader over its bytes. */
static int pb_bytes(struct pb *r, struct pb *sub)
{
	uint64_t n;
	int err = pb_varint(r, &n);

	if (err)
		return err;
	if (n > (uint64_t)(r->end - r->p))
		return pb_fail(r, "length past the end of its message");
	*sub = *r;
	sub->end = r->p + n;
	r->p += n;
	return 0;
}

static int pb_skip(struct pb *r, uint32_t wire)
{
	struct pb sub;
	uint64_t v;

	switch (wire) {
	case PB_VARINT:
		return pb_varint(r, &v);
	case PB_LEN:
		return pb_bytes(r, &sub);
	case PB_I64:
	case PB_I32:
		if ((size_t)(r->end - r->p) < (wire == PB_I64 ? 8u : 4u))
			return pb_fail(r, "truncated fixed-size field");
		r->p += wire == PB_I64 ? 8 : 4;
		return 0;
	default:
		return pb_fail(r, "unsupported wire type (group)");
	}
}

static int pb_expect(const struct pb *r, uint32_t wire, uint32_t want)
{
	return wire == want ? 0 : pb_fail(r, "field has the wrong wire type");
}

static int pb_f32(struct pb *r, uint32_t wire, float *f)
{
	int err = pb_expect(r, wire, PB_I32);

	if (err)
		return err;
	if (r->end - r->p < 4)
		return pb_fail(r, "truncated float");
	*f = rd_f32(r->p);
	r->p += 4;
	return 0;
}

/* int32, bool and enum fields are varints; negative int32 are sign-extended
 * to 64 bits on the wire. */
static int pb_i32(struct pb *r, uint32_t wire, int32_t *v)
{
	uint64_t u;
	int err = pb_expect(r, wire, PB_VARINT);

	if (!err)
		err = pb_varint(r, &u);
	if (!err)
		*v = (int32_t)(uint32_t)u;
	return err;
}

/* ---- sentencepiece ModelProto -------------------------------------------------- */

struct spm_piece {
	const uint8_t *text;
	size_t len;
	float score;
	int32_t type;
};

/* ModelProto.SentencePiece: 1 piece, 2 score, 3 type (default NORMAL). */
static int spm_read_piece(struct pb *r, struct spm_piece *pc)
{
	uint32_t field, wire;
	struct pb sub;
	int err = 0;

	pc->text = NULL;
	pc->len = 0;
	pc->score = 0.0f;
	pc->type = NB_PIECE_NORMAL;
	while (!err && r->p < r->end) {
		err = pb_key(r, &field, &wire);
		if (err)
			break;
		if (field == 1) {
			err = pb_expect(r, wire, PB_LEN);
			if (!err)
				err = pb_bytes(r, &sub);
			if (!err) {
				pc->text = sub.p;
				pc->len = (size_t)(sub.end - sub.p);
			}
		} else if (field == 2) {
			err = pb_f32(r, wire, &pc->score);
		} else if (field == 3) {
			err = pb_i32(r, wire, &pc->type);
		} else {
			err = pb_skip(r, wire);
		}
	}
	if (err)
		return err;
	if (pc->len == 0 || pc->len > TOK_PIECE_MAX || memchr(pc->text, 0, pc->len))
		return pb_fail(r, "piece empty, too long or with a NUL byte");
	if (pc->type < NB_PIECE_NORMAL || pc->type > NB_PIECE_BYTE)
		return pb_fail(r, "piece of unknown type");
	return 0;
}

/* Top level: counts the pieces and the bytes of their text. */
static int spm_count(struct pb r, uint32_t *n, uint64_t *text_len)
{
	uint32_t field, wire;
	struct spm_piece pc;
	struct pb sub;
	int err;

	*n = 0;
	*text_len = 0;
	while (r.p < r.end) {
		err = pb_key(&r, &field, &wire);
		if (!err && field == 1)
			err = pb_expect(&r, wire, PB_LEN);
		if (err)
			return err;
		if (field != 1) {
			err = pb_skip(&r, wire);
			if (err)
				return err;
			continue;
		}
		err = pb_bytes(&r, &sub);
		if (!err)
			err = spm_read_piece(&sub, &pc);
		if (err)
			return err;
		if (++*n > (1u << 24))
			return pb_fail(&r, "too many pieces");
		*text_len += pc.len;
	}
	if (*n == 0)
		return pb_fail(&r, "no pieces");
	return 0;
}

/* Protobuf merges every occurrence of a singular message field into one:
 * each top-level field `which` is read into out, in file order. */
static int spm_each(struct pb r, uint32_t which, int (*read)(struct pb, void *), void *out)
{
	uint32_t field, wire;
	struct pb sub;
	int err;

	while (r.p < r.end) {
		err = pb_key(&r, &field, &wire);
		if (!err && field == which)
			err = pb_expect(&r, wire, PB_LEN);
		if (!err)
			err = field == which ? pb_bytes(&r, &sub) : pb_skip(&r, wire);
		if (!err && field == which)
			err = read(sub, out);
		if (err)
			return err;
	}
	return 0;
}

struct spm_trainer {
	int32_t model_type, bos_id, eos_id, pad_id, byte_fallback, ws_suffix;
};

/* TrainerSpec fields that change encoding; the rest are training options. */
static int spm_read_trainer(struct pb r, void *out)
{
	struct spm_trainer *t = out;
	uint32_t field, wire;
	int32_t *slot;
	int err = 0;

	while (!err && r.p < r.end) {
		err = pb_key(&r, &field, &wire);
		if (err)
			break;
		slot = field == 3 ? &t->model_type : field == 24 ? &t->ws_suffix :
		       field == 35 ? &t->byte_fallback : field == 41 ? &t->bos_id :
		       field == 42 ? &t->eos_id : field == 43 ? &t->pad_id : NULL;
		err = slot ? pb_i32(&r, wire, slot) : pb_skip(&r, wire);
	}
	return err;
}

struct spm_normalizer {
	size_t charsmap_len;
	int32_t add_dummy_prefix, remove_extra_ws, escape_ws;
};

static int spm_read_normalizer(struct pb r, void *out)
{
	struct spm_normalizer *n = out;
	uint32_t field, wire;
	struct pb sub;
	int32_t *slot;
	int err = 0;

	while (!err && r.p < r.end) {
		err = pb_key(&r, &field, &wire);
		if (err)
			break;
		if (field == 2) {
			err = pb_expect(&r, wire, PB_LEN);
			if (!err)
				err = pb_bytes(&r, &sub);
			if (!err)
				n->charsmap_len = (size_t)(sub.end - sub.p);
			continue;
		}
		slot = field == 3 ? &n->add_dummy_prefix : field == 4 ? &n->remove_extra_ws :
		       field == 5 ? &n->escape_ws : NULL;
		err = slot ? pb_i32(&r, wire, slot) : pb_skip(&r, wire);
	}
	return err;
}

/* The specs, from sentencepiece_model.proto's defaults. */
static int spm_read_specs(struct pb r, struct spm_trainer *t, struct spm_normalizer *n,
			  struct spm_normalizer *dn)
{
	int err;

	*t = (struct spm_trainer){ .model_type = 1, .bos_id = 1, .eos_id = 2, .pad_id = -1 };
	*n = (struct spm_normalizer){ .add_dummy_prefix = 1, .remove_extra_ws = 1, .escape_ws = 1 };
	*dn = *n;
	if ((err = spm_each(r, 2, spm_read_trainer, t)) ||
	    (err = spm_each(r, 3, spm_read_normalizer, n)) ||
	    (err = spm_each(r, 5, spm_read_normalizer, dn)))
		return err;
	return 0;
}

/* What the SPM encoder implements exactly: BPE, identity normalization,
 * ' ' -> ▁, optional dummy prefix. */
static int spm_supported(const char *path, const struct spm_trainer *t,
			 const struct spm_normalizer *n, const struct spm_normalizer *dn)
{
	if (t->model_type != 2) {
		nb_err("%s: sentencepiece model type %d (%s) not supported; only BPE (2)", path,
		       t->model_type, t->model_type == 1 ? "unigram" : "word/char");
		return -NB_ENOTSUP;
	}
	if (t->ws_suffix) {
		nb_err("%s: treat_whitespace_as_suffix not supported", path);
		return -NB_ENOTSUP;
	}
	if (n->charsmap_len || dn->charsmap_len) {
		nb_err("%s: normalization rules (precompiled_charsmap) not supported; only identity",
		       path);
		return -NB_ENOTSUP;
	}
	if (n->remove_extra_ws || !n->escape_ws) {
		nb_err("%s: normalizer with remove_extra_whitespaces=%d escape_whitespaces=%d not "
		       "supported (need 0 and 1)", path, n->remove_extra_ws, n->escape_ws);
		return -NB_ENOTSUP;
	}
	return 0;
}

static int spm_fill(struct nb_tok_spec *s, struct pb r)
{
	uint32_t field, wire, i = 0, o = 0;
	struct spm_piece pc;
	struct pb sub;
	int err;

	while (r.p < r.end) {
		err = pb_key(&r, &field, &wire);
		if (!err)
			err = field == 1 ? pb_bytes(&r, &sub) : pb_skip(&r, wire);
		if (err)
			return err;
		if (field != 1)
			continue;
		err = spm_read_piece(&sub, &pc);
		if (err)
			return err;
		memcpy(s->text + o, pc.text, pc.len);
		o += (uint32_t)pc.len;
		s->offsets[i + 1] = o;
		s->scores[i] = pc.score;
		s->types[i] = (uint8_t)pc.type;
		if (pc.type == NB_PIECE_UNKNOWN)
			s->unk_id = (int32_t)i;
		i++;
	}
	return 0;
}

static int spm_ids(const char *path, struct nb_tok_spec *s, const struct spm_trainer *t)
{
	uint32_t i, n_bytes = 0;

	const int32_t *special[3] = { &t->bos_id, &t->eos_id, &t->pad_id };

	for (i = 0; i < 3; i++) {
		if (*special[i] < -1 || (*special[i] >= 0 && (uint32_t)*special[i] >= s->n_vocab)) {
			nb_err("%s: trainer %s_id %d outside -1..%u", path,
			       i == 0 ? "bos" : i == 1 ? "eos" : "pad", *special[i], s->n_vocab - 1);
			return -NB_EFORMAT;
		}
	}
	s->bos_id = t->bos_id;
	s->eos_id = t->eos_id;
	s->pad_id = t->pad_id;
	/* sentencepiece takes <unk> from the piece type, not from unk_id. */
	if (s->unk_id < 0) {
		nb_err("%s: no piece of type UNKNOWN", path);
		return -NB_EFORMAT;
	}
	for (i = 0; i < s->n_vocab; i++)
		n_bytes += s->types[i] == NB_PIECE_BYTE;
	if (n_bytes && !t->byte_fallback) {
		nb_err("%s: byte pieces without byte_fallback", path);
		return -NB_EFORMAT;
	}
	s->flags |= t->byte_fallback ? NB_TOK_FLAG_BYTE_FALLBACK : 0;
	s->flags |= s->bos_id >= 0 ? NB_TOK_FLAG_ADD_BOS : 0;
	return 0;
}

int nb_tok_import_spm_model(struct nb_tok_spec *s, const char *path)
{
	struct spm_normalizer norm, denorm;
	struct spm_trainer trainer;
	uint64_t text_len;
	uint8_t *b = NULL;
	uint32_t n;
	struct pb r;
	size_t len;
	int err;

	nb_tok_spec_init(s);
	err = read_file(path, &b, &len);
	if (err)
		return err;
	r = (struct pb){ .p = b, .end = b + len, .path = path, .base = b };
	err = spm_count(r, &n, &text_len);
	if (!err)
		err = spm_read_specs(r, &trainer, &norm, &denorm);
	if (!err)
		err = spm_supported(path, &trainer, &norm, &denorm);
	if (!err)
		err = alloc_spec(s, n, text_len);
	if (!err)
		err = spm_fill(s, r);
	if (!err) {
		s->kind = NB_TOK_SPM;
		s->flags = norm.add_dummy_prefix ? NB_TOK_FLAG_ADD_SPACE_PREFIX : 0;
		err = spm_ids(path, s, &trainer);
	}
	free(b);
	if (err)
		nb_tok_spec_free(s);
	return err;
}
