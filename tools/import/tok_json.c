/* HF tokenizers' tokenizer.json (byte-level BPE) into a tokenizer spec.
 *
 * Only what runtime/text/tok_bpe.c reproduces exactly is accepted: a BPE model
 * whose pre-tokenizer is recognised as a whole (GPT-2's ByteLevel regex, the
 * Llama-3 or Qwen2 Split regex before ByteLevel, SmolLM's Digits before
 * ByteLevel, or ByteLevel without a regex), no normalizer or NFC (Qwen2).
 * Anything else is refused naming what was found, rather than loaded to
 * tokenize differently from the reference. The file is untrusted: every
 * count, id and length is checked before use. */
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "tools/import/ckpt.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The largest real tokenizer.json files are ~35 MB with ~260K pieces. */
#define JSON_MAX_FILE (512u << 20)
#define JSON_MAX_VOCAB (1u << 22)
#define JSON_MAX_PIECE (1u << 16)
#define JSON_MAX_MERGES (1u << 24)

/* The Split regexes as tokenizer.json spells them (after JSON unescaping). */
static const char re_gpt2[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char re_llama3[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
	"?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char re_qwen2[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
	"?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Pieces that end a document, for eos when nothing better is known (the
 * HF importer overrides it from config.json / generation_config.json). */
static const char *const eos_names[] = { "<|endoftext|>", "<|end_of_text|>", "</s>" };

struct pidx {
	const char *p;
	uint32_t len, id;
};

struct jimp {
	const char *path;
	cJSON *root;
	const cJSON *model;
	uint32_t n_vocab;
	const char **txt; /* n_vocab; piece text owned by root, NULL if no piece */
	uint32_t *len;
	uint8_t *type;
	struct pidx *idx; /* model.vocab sorted by text */
	uint32_t n_idx;
	uint32_t n_merges;
	uint32_t *merges;
	bool bytes_complete; /* every byte's alphabet character is a piece */
};

/* ---- reading -------------------------------------------------------------- */

static int read_file(const char *path, char **buf, size_t *len)
{
	struct stat st;
	FILE *f;
	int err = 0;

	*buf = NULL;
	f = fopen(path, "rb");
	if (!f) {
		nb_err("%s: cannot open: %s", path, strerror(errno));
		return -NB_ENOENT;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		nb_err("%s: not a regular file", path);
		err = -NB_EIO;
		goto out_close;
	}
	if (st.st_size <= 0 || (unsigned long long)st.st_size > JSON_MAX_FILE) {
		nb_err("%s: size %lld outside 1..%u bytes", path, (long long)st.st_size, JSON_MAX_FILE);
		err = -NB_ERANGE;
		goto out_close;
	}
	*len = (size_t)st.st_size;
	*buf = malloc(*len + 1);
	if (!*buf) {
		nb_err("%s: no memory for %zu bytes", path, *len);
		err = -NB_ENOMEM;
		goto out_close;
	}
	if (fread(*buf, 1, *len, f) != *len) {
		nb_err("%s: short read", path);
		free(*buf);
		*buf = NULL;
		err = -NB_EIO;
		goto out_close;
	}
	(*buf)[*len] = '\0';
out_close:
	fclose(f);
	return err;
}

static const cJSON *field(const cJSON *o, const char *name)
{
	return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, name) : NULL;
}

static bool is_nullish(const cJSON *j)
{
	return !j || cJSON_IsNull(j);
}

/* String field or NULL (absent, null or another type). */
static const char *str_field(const cJSON *o, const char *name)
{
	const cJSON *j = field(o, name);

	return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* Boolean field: def when absent; -1 when of another type. */
static int bool_field(const cJSON *o, const char *name, int def)
{
	const cJSON *j = field(o, name);

	if (!j)
		return def;
	if (!cJSON_IsBool(j))
		return -1;
	return cJSON_IsTrue(j);
}

/* A JSON number that is an integer in 0..max-1. */
static bool get_id(const cJSON *j, uint32_t max, uint32_t *id)
{
	double v;

	if (!cJSON_IsNumber(j))
		return false;
	v = j->valuedouble;
	if (!(v >= 0 && v < (double)max) || v != floor(v))
		return false;
	*id = (uint32_t)v;
	return true;
}

/* ---- vocab ---------------------------------------------------------------- */

static int cmp_pidx(const void *pa, const void *pb)
{
	const struct pidx *a = pa, *b = pb;
	int c = memcmp(a->p, b->p, a->len < b->len ? a->len : b->len);

	if (c)
		return c;
	return a->len < b->len ? -1 : a->len > b->len;
}

/* Model piece with exactly these bytes, or -1. */
static int32_t model_id(const struct jimp *j, const char *p, size_t len)
{
	struct pidx key = { p, (uint32_t)len, 0 };
	const struct pidx *hit;

	if (len > JSON_MAX_PIECE)
		return -1;
	hit = bsearch(&key, j->idx, j->n_idx, sizeof(key), cmp_pidx);
	return hit ? (int32_t)hit->id : -1;
}

/* Largest id in model.vocab and added_tokens, validating as it goes. */
static int scan_ids(struct jimp *j, const cJSON *vocab, const cJSON *added, uint32_t *n_vocab)
{
	const cJSON *e;
	uint32_t id, n = 0, max = 0, count;

	cJSON_ArrayForEach(e, vocab) {
		if (++n > JSON_MAX_VOCAB) {
			nb_err("%s: model.vocab has more than %u pieces", j->path, JSON_MAX_VOCAB);
			return -NB_ERANGE;
		}
		if (!get_id(e, JSON_MAX_VOCAB, &id)) {
			nb_err("%s: model.vocab[\"%.40s\"] is not an id in 0..%u", j->path,
			       e->string ? e->string : "", JSON_MAX_VOCAB - 1);
			return -NB_EFORMAT;
		}
		if (strlen(e->string) > JSON_MAX_PIECE) {
			nb_err("%s: model.vocab piece %u is longer than %u bytes", j->path, id,
			       JSON_MAX_PIECE);
			return -NB_ERANGE;
		}
		max = id > max ? id : max;
	}
	if (n == 0) {
		nb_err("%s: model.vocab is empty", j->path);
		return -NB_EFORMAT;
	}
	count = n;
	n = 0;
	cJSON_ArrayForEach(e, added) {
		const char *content = str_field(e, "content");

		if (++n > JSON_MAX_VOCAB || !get_id(field(e, "id"), JSON_MAX_VOCAB, &id) ||
		    !content || strlen(content) > JSON_MAX_PIECE) {
			nb_err("%s: added_tokens[%u] needs an id in 0..%u and a content string of at most %u bytes",
			       j->path, n - 1, JSON_MAX_VOCAB - 1, JSON_MAX_PIECE);
			return -NB_EFORMAT;
		}
		max = id > max ? id : max;
	}
	/* Ids must be 0..n-1 without gaps: more than one per entry cannot be. */
	if (max >= n + count) {
		nb_err("%s: id %u but only %u pieces: ids are not contiguous", j->path, max,
		       n + count);
		return -NB_ENOTSUP;
	}
	*n_vocab = max + 1;
	return 0;
}

static int fill_vocab(struct jimp *j, const cJSON *vocab)
{
	const cJSON *e;
	uint32_t id = 0, i;

	cJSON_ArrayForEach(e, vocab) {
		get_id(e, JSON_MAX_VOCAB, &id); /* checked by scan_ids */
		if (j->txt[id]) {
			nb_err("%s: model.vocab gives id %u to \"%.40s\" and \"%.40s\"", j->path, id,
			       j->txt[id], e->string);
			return -NB_EFORMAT;
		}
		j->txt[id] = e->string;
		j->len[id] = (uint32_t)strlen(e->string);
		j->type[id] = NB_PIECE_NORMAL;
		j->idx[j->n_idx++] = (struct pidx){ e->string, j->len[id], id };
	}
	qsort(j->idx, j->n_idx, sizeof(*j->idx), cmp_pidx);
	for (i = 1; i < j->n_idx; i++) {
		if (cmp_pidx(&j->idx[i - 1], &j->idx[i]) == 0) {
			nb_err("%s: model.vocab lists \"%.40s\" twice (ids %u and %u)", j->path,
			       j->idx[i].p, j->idx[i - 1].id, j->idx[i].id);
			return -NB_EFORMAT;
		}
	}
	return 0;
}

/* lstrip/rstrip/single_word change how the token is matched; the runtime
 * matches added tokens exactly, so those are refused. */
static int add_token(struct jimp *j, const cJSON *e, uint32_t k)
{
	const char *content = str_field(e, "content");
	static const char *const opts[] = { "single_word", "lstrip", "rstrip" };
	uint32_t id = 0, len = (uint32_t)strlen(content);
	int special = bool_field(e, "special", 0);
	int32_t other;

	get_id(field(e, "id"), JSON_MAX_VOCAB, &id); /* checked by scan_ids */
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		int v = bool_field(e, opts[i], 0);

		if (v != 0) {
			nb_err("%s: added_tokens[%u] \"%.40s\": %s %s is not supported", j->path, k,
			       content, opts[i], v < 0 ? "of a wrong type" : "true");
			return v < 0 ? -NB_EFORMAT : -NB_ENOTSUP;
		}
	}
	if (special < 0) {
		nb_err("%s: added_tokens[%u].special is not a boolean", j->path, k);
		return -NB_EFORMAT;
	}
	other = model_id(j, content, len);
	if (j->txt[id] && (j->len[id] != len || memcmp(j->txt[id], content, len) != 0)) {
		nb_err("%s: added_tokens[%u] \"%.40s\" has id %u of piece \"%.40s\"", j->path, k,
		       content, id, j->txt[id]);
		return -NB_ENOTSUP;
	}
	if (other >= 0 && (uint32_t)other != id) {
		nb_err("%s: added_tokens[%u] \"%.40s\" (id %u) is also piece %d", j->path, k, content,
		       id, other);
		return -NB_ENOTSUP;
	}
	if (j->type[id] == NB_PIECE_USER || j->type[id] == NB_PIECE_CONTROL) {
		nb_err("%s: added_tokens[%u] repeats id %u", j->path, k, id);
		return -NB_EFORMAT;
	}
	j->txt[id] = content;
	j->len[id] = len;
	j->type[id] = special ? NB_PIECE_CONTROL : NB_PIECE_USER;
	return 0;
}

/* The alphabet character GPT-2's byte-to-unicode table gives byte b (the
 * same table as runtime/text/tok_bpe.c). */
static size_t byte_char(unsigned b, char out[2])
{
	unsigned cp = b;

	if (b <= 32)
		cp = 256 + b;
	else if (b >= 127 && b <= 160)
		cp = 256 + 33 + (b - 127);
	else if (b == 173)
		cp = 256 + 67;
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	out[0] = (char)(0xc0 | cp >> 6);
	out[1] = (char)(0x80 | (cp & 0x3f));
	return 2;
}

static int load_vocab(struct jimp *j)
{
	const cJSON *vocab = field(j->model, "vocab"), *added = field(j->root, "added_tokens"), *e;
	uint32_t k = 0, i;
	int err;

	if (!cJSON_IsObject(vocab)) {
		nb_err("%s: model.vocab is missing or not an object", j->path);
		return -NB_EFORMAT;
	}
	if (!is_nullish(added) && !cJSON_IsArray(added)) {
		nb_err("%s: added_tokens is not an array", j->path);
		return -NB_EFORMAT;
	}
	err = scan_ids(j, vocab, added, &j->n_vocab);
	if (err)
		return err;
	j->txt = calloc(j->n_vocab, sizeof(*j->txt));
	j->len = calloc(j->n_vocab, sizeof(*j->len));
	j->type = calloc(j->n_vocab, 1);
	j->idx = malloc(j->n_vocab * sizeof(*j->idx));
	if (!j->txt || !j->len || !j->type || !j->idx) {
		nb_err("%s: no memory for %u pieces", j->path, j->n_vocab);
		return -NB_ENOMEM;
	}
	err = fill_vocab(j, vocab);
	if (err)
		return err;
	cJSON_ArrayForEach(e, added) {
		err = add_token(j, e, k++);
		if (err)
			return err;
	}
	for (i = 0; i < j->n_vocab; i++) {
		if (!j->txt[i]) {
			nb_err("%s: no piece has id %u (ids up to %u are used)", j->path, i,
			       j->n_vocab - 1);
			return -NB_ENOTSUP;
		}
	}
	j->bytes_complete = true;
	for (i = 0; i < 256; i++) {
		char c[2];

		if (model_id(j, c, byte_char(i, c)) < 0)
			j->bytes_complete = false;
	}
	return 0;
}

/* ---- merges --------------------------------------------------------------- */

/* The two halves of merge r: "a b" or ["a", "b"]. */
static int merge_halves(const struct jimp *j, const cJSON *e, uint32_t r, const char **a,
			size_t *alen, const char **b, size_t *blen)
{
	if (cJSON_IsString(e)) {
		const char *sp = strchr(e->valuestring, ' ');

		if (sp && sp != e->valuestring && sp[1]) {
			*a = e->valuestring;
			*alen = (size_t)(sp - e->valuestring);
			*b = sp + 1;
			*blen = strlen(sp + 1);
			return 0;
		}
	} else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
		   cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
		*a = e->child->valuestring;
		*alen = strlen(*a);
		*b = e->child->next->valuestring;
		*blen = strlen(*b);
		return 0;
	}
	nb_err("%s: model.merges[%u] is neither \"a b\" nor [\"a\", \"b\"]", j->path, r);
	return -NB_EFORMAT;
}

/* HF refuses a merge whose halves or result are not model pieces. */
static int add_merge(struct jimp *j, const cJSON *e, uint32_t r, char *cat)
{
	const char *a, *b;
	size_t alen, blen;
	int32_t ia, ib, ic;
	int err;

	err = merge_halves(j, e, r, &a, &alen, &b, &blen);
	if (err)
		return err;
	ia = model_id(j, a, alen);
	ib = model_id(j, b, blen);
	if (ia < 0 || ib < 0) {
		nb_err("%s: model.merges[%u]: \"%.*s\" is not in model.vocab", j->path, r,
		       (int)(ia < 0 ? alen : blen), ia < 0 ? a : b);
		return -NB_EFORMAT;
	}
	/* Both halves are pieces, so each is at most JSON_MAX_PIECE long. */
	memcpy(cat, a, alen);
	memcpy(cat + alen, b, blen);
	ic = model_id(j, cat, alen + blen);
	if (ic < 0) {
		nb_err("%s: model.merges[%u]: \"%.*s%.*s\" is not in model.vocab", j->path, r,
		       (int)alen, a, (int)blen, b);
		return -NB_EFORMAT;
	}
	j->merges[2 * r] = (uint32_t)ia;
	j->merges[2 * r + 1] = (uint32_t)ib;
	return 0;
}

static int load_merges(struct jimp *j)
{
	const cJSON *merges = field(j->model, "merges"), *e;
	uint32_t r = 0;
	char *cat;
	int err = 0;

	if (is_nullish(merges))
		return 0;
	if (!cJSON_IsArray(merges)) {
		nb_err("%s: model.merges is not an array", j->path);
		return -NB_EFORMAT;
	}
	cJSON_ArrayForEach(e, merges) {
		if (++j->n_merges > JSON_MAX_MERGES) {
			nb_err("%s: more than %u merges", j->path, JSON_MAX_MERGES);
			return -NB_ERANGE;
		}
	}
	j->merges = malloc(2 * (size_t)(j->n_merges ? j->n_merges : 1) * sizeof(*j->merges));
	cat = malloc(2 * JSON_MAX_PIECE);
	if (!j->merges || !cat) {
		free(cat);
		nb_err("%s: no memory for %u merges", j->path, j->n_merges);
		return -NB_ENOMEM;
	}
	cJSON_ArrayForEach(e, merges) {
		err = add_merge(j, e, r++, cat);
		if (err)
			break;
	}
	free(cat);
	return err;
}

/* ---- model options -------------------------------------------------------- */

static bool empty_str_or_null(const cJSON *v)
{
	return is_nullish(v) || (cJSON_IsString(v) && v->valuestring[0] == '\0');
}

static int check_model(struct jimp *j, struct nb_tok_spec *s)
{
	const cJSON *m = j->model, *unk = field(m, "unk_token"), *drop = field(m, "dropout");
	const char *type = str_field(m, "type");
	int fallback = bool_field(m, "byte_fallback", 0), ignore = bool_field(m, "ignore_merges", 0);
	int fuse = bool_field(m, "fuse_unk", 0);

	if (type ? strcmp(type, "BPE") != 0 : !field(m, "merges")) {
		nb_err("%s: model.type \"%s\": only BPE is supported here", j->path,
		       type ? type : "(none)");
		return -NB_ENOTSUP;
	}
	if (!empty_str_or_null(field(m, "continuing_subword_prefix")) ||
	    !empty_str_or_null(field(m, "end_of_word_suffix"))) {
		nb_err("%s: model.continuing_subword_prefix/end_of_word_suffix are not supported",
		       j->path);
		return -NB_ENOTSUP;
	}
	if (!is_nullish(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0)) {
		nb_err("%s: model.dropout (BPE dropout) is not supported", j->path);
		return -NB_ENOTSUP;
	}
	if (fallback < 0 || ignore < 0 || fuse < 0 || (!is_nullish(unk) && !cJSON_IsString(unk))) {
		nb_err("%s: model.byte_fallback/ignore_merges/fuse_unk/unk_token of a wrong type",
		       j->path);
		return -NB_EFORMAT;
	}
	if (ignore)
		s->flags |= NB_TOK_FLAG_IGNORE_MERGES;
	if (cJSON_IsString(unk))
		s->unk_id = model_id(j, unk->valuestring, strlen(unk->valuestring));
	/* These only act on a character that is not a piece; with all 256
	 * byte characters in the vocab that never happens. */
	if (!j->bytes_complete && fallback) {
		nb_err("%s: model.byte_fallback with byte characters missing from the vocab is not supported",
		       j->path);
		return -NB_ENOTSUP;
	}
	if (!j->bytes_complete && s->unk_id >= 0 && fuse) {
		nb_err("%s: model.fuse_unk with byte characters missing from the vocab is not supported",
		       j->path);
		return -NB_ENOTSUP;
	}
	return 0;
}

/* ---- normalizer and pre-tokenizer ------------------------------------------ */

/* 1: NFC, 0: none, <0: error. */
static int normalizer_nfc(const struct jimp *j)
{
	const cJSON *n = field(j->root, "normalizer"), *list;
	const char *type = str_field(n, "type");

	if (is_nullish(n))
		return 0;
	if (type && strcmp(type, "NFC") == 0)
		return 1;
	list = field(n, "normalizers");
	if (type && strcmp(type, "Sequence") == 0 && cJSON_IsArray(list)) {
		if (cJSON_GetArraySize(list) == 0)
			return 0;
		if (cJSON_GetArraySize(list) == 1 && (type = str_field(list->child, "type")) &&
		    strcmp(type, "NFC") == 0)
			return 1;
		type = "Sequence of normalizers other than one NFC";
	}
	nb_err("%s: normalizer %s is not supported (only none or NFC)", j->path,
	       type ? type : "without a type");
	return type ? -NB_ENOTSUP : -NB_EFORMAT;
}

static const char *type_of(const cJSON *o)
{
	const char *t = str_field(o, "type");

	return t ? t : "(no type)";
}

/* ByteLevel: 1 with its regex, 0 without, <0 if not a usable ByteLevel. */
static int byte_level(const struct jimp *j, const cJSON *p)
{
	int prefix = bool_field(p, "add_prefix_space", -1), regex = bool_field(p, "use_regex", 1);

	if (strcmp(type_of(p), "ByteLevel") != 0)
		return -NB_ENOTSUP;
	if (prefix != 0 || regex < 0) {
		nb_err("%s: pre_tokenizer ByteLevel needs add_prefix_space false and a boolean use_regex",
		       j->path);
		return -NB_ENOTSUP;
	}
	return regex;
}

/* Split(Regex) of one of the known patterns, isolated: its NB_PRETOK_*. */
static int split_regex(const struct jimp *j, const cJSON *p)
{
	const char *re = str_field(field(p, "pattern"), "Regex"), *beh = str_field(p, "behavior");

	if (strcmp(type_of(p), "Split") != 0 || !re || !beh || strcmp(beh, "Isolated") != 0 ||
	    bool_field(p, "invert", 0) != 0) {
		nb_err("%s: pre_tokenizer Split must be an isolated, non-inverted Regex", j->path);
		return -NB_ENOTSUP;
	}
	if (strcmp(re, re_gpt2) == 0)
		return NB_PRETOK_GPT2;
	if (strcmp(re, re_llama3) == 0)
		return NB_PRETOK_LLAMA3;
	if (strcmp(re, re_qwen2) == 0)
		return NB_PRETOK_QWEN2;
	nb_err("%s: pre_tokenizer Split regex \"%.200s\" is not one of GPT-2, Llama 3, Qwen2",
	       j->path, re);
	return -NB_ENOTSUP;
}

static int sequence_pretok(const struct jimp *j, const cJSON *list)
{
	const cJSON *a, *b;
	int r;

	if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != 2) {
		nb_err("%s: pre_tokenizer Sequence of %d: only [Split, ByteLevel] or [Digits, ByteLevel] are supported",
		       j->path, cJSON_IsArray(list) ? cJSON_GetArraySize(list) : -1);
		return -NB_ENOTSUP;
	}
	a = list->child;
	b = a->next;
	if (strcmp(type_of(a), "Digits") == 0) {
		if (bool_field(a, "individual_digits", 0) != 1 || byte_level(j, b) != 1) {
			nb_err("%s: pre_tokenizer [Digits, %s]: only Digits(individual_digits) then ByteLevel(use_regex) is supported",
			       j->path, type_of(b));
			return -NB_ENOTSUP;
		}
		return NB_PRETOK_SMOLLM;
	}
	if (strcmp(type_of(a), "Split") == 0) {
		r = split_regex(j, a);
		if (r < 0)
			return r;
		if (byte_level(j, b) != 0) {
			nb_err("%s: pre_tokenizer [Split, %s]: only ByteLevel(use_regex false) may follow",
			       j->path, type_of(b));
			return -NB_ENOTSUP;
		}
		return r;
	}
	nb_err("%s: pre_tokenizer Sequence [%s, %s] is not supported", j->path, type_of(a),
	       type_of(b));
	return -NB_ENOTSUP;
}

static int load_pretok(struct jimp *j, struct nb_tok_spec *s)
{
	const cJSON *p = field(j->root, "pre_tokenizer");
	int r, nfc;

	if (is_nullish(p)) {
		nb_err("%s: no pre_tokenizer: byte-level BPE needs ByteLevel", j->path);
		return -NB_ENOTSUP;
	}
	if (!cJSON_IsObject(p)) {
		nb_err("%s: pre_tokenizer is not an object", j->path);
		return -NB_EFORMAT;
	}
	if (strcmp(type_of(p), "Sequence") == 0) {
		r = sequence_pretok(j, field(p, "pretokenizers"));
	} else if (strcmp(type_of(p), "ByteLevel") == 0) {
		r = byte_level(j, p);
		if (r >= 0)
			r = r ? NB_PRETOK_GPT2 : NB_PRETOK_NONE;
	} else {
		nb_err("%s: pre_tokenizer %s is not supported", j->path, type_of(p));
		r = -NB_ENOTSUP;
	}
	if (r < 0)
		return r;
	nfc = normalizer_nfc(j);
	if (nfc < 0)
		return nfc;
	/* The runtime ties NFC to the Qwen2 split. */
	if (nfc != (r == NB_PRETOK_QWEN2)) {
		nb_err("%s: %s normalizer with this pre_tokenizer is not supported", j->path,
		       nfc ? "an NFC" : "no");
		return -NB_ENOTSUP;
	}
	s->pretok = (uint32_t)r;
	return 0;
}

/* ---- special ids ---------------------------------------------------------- */

/* TemplateProcessing that puts one special token before $A: that is BOS. */
static void template_bos(const struct jimp *j, const cJSON *pp, struct nb_tok_spec *s)
{
	const cJSON *single = field(pp, "single"), *first, *ids;
	const char *name;
	uint32_t id;

	if (!cJSON_IsArray(single) || !(first = single->child))
		return;
	name = str_field(field(first, "SpecialToken"), "id");
	if (!name || !first->next || !field(first->next, "Sequence"))
		return;
	ids = field(field(field(pp, "special_tokens"), name), "ids");
	if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) != 1 ||
	    !get_id(ids->child, j->n_vocab, &id)) {
		nb_warn("%s: post_processor special token \"%.40s\" has no single valid id", j->path,
			name);
		return;
	}
	s->bos_id = (int32_t)id;
	s->flags |= NB_TOK_FLAG_ADD_BOS;
}

static void load_specials(const struct jimp *j, struct nb_tok_spec *s)
{
	const cJSON *pp = field(j->root, "post_processor"), *e;

	if (strcmp(type_of(pp), "TemplateProcessing") == 0)
		template_bos(j, pp, s);
	if (strcmp(type_of(pp), "Sequence") == 0)
		cJSON_ArrayForEach(e, field(pp, "processors"))
			if (strcmp(type_of(e), "TemplateProcessing") == 0)
				template_bos(j, e, s);
	for (size_t i = 0; i < sizeof(eos_names) / sizeof(eos_names[0]) && s->eos_id < 0; i++) {
		size_t len = strlen(eos_names[i]);

		for (uint32_t id = 0; id < j->n_vocab; id++) {
			if (j->type[id] == NB_PIECE_CONTROL && j->len[id] == len &&
			    memcmp(j->txt[id], eos_names[i], len) == 0) {
				s->eos_id = (int32_t)id;
				break;
			}
		}
	}
}

/* ---- spec ----------------------------------------------------------------- */

static int build_spec(struct jimp *j, struct nb_tok_spec *s)
{
	uint64_t total = 0;
	uint32_t i;

	for (i = 0; i < j->n_vocab; i++)
		total += j->len[i];
	if (total > 0x7fffffffu) {
		nb_err("%s: %llu bytes of piece text", j->path, (unsigned long long)total);
		return -NB_ERANGE;
	}
	s->kind = NB_TOK_BPE;
	s->n_vocab = j->n_vocab;
	s->text = malloc(total ? (size_t)total : 1);
	s->offsets = malloc(((size_t)j->n_vocab + 1) * sizeof(*s->offsets));
	s->scores = calloc(j->n_vocab, sizeof(*s->scores));
	s->types = malloc(j->n_vocab);
	if (!s->text || !s->offsets || !s->scores || !s->types) {
		nb_err("%s: no memory for %u pieces", j->path, j->n_vocab);
		return -NB_ENOMEM;
	}
	s->offsets[0] = 0;
	for (i = 0; i < j->n_vocab; i++) {
		memcpy(s->text + s->offsets[i], j->txt[i], j->len[i]);
		s->offsets[i + 1] = s->offsets[i] + j->len[i];
	}
	memcpy(s->types, j->type, j->n_vocab);
	s->n_merges = j->n_merges;
	s->merges = j->merges;
	j->merges = NULL;
	return 0;
}

static int parse(struct jimp *j, const char *buf, size_t len)
{
	j->root = cJSON_ParseWithLength(buf, len);
	if (!j->root) {
		const char *at = cJSON_GetErrorPtr();

		nb_err("%s: not valid JSON (near byte %lld)", j->path,
		       at && at >= buf && at <= buf + len ? (long long)(at - buf) : -1LL);
		return -NB_EFORMAT;
	}
	j->model = field(j->root, "model");
	if (!cJSON_IsObject(j->model)) {
		nb_err("%s: no \"model\" object", j->path);
		return -NB_EFORMAT;
	}
	return 0;
}

int nb_tok_import_json(struct nb_tok_spec *s, const char *path)
{
	struct jimp j = { .path = path };
	char *buf = NULL;
	size_t len;
	int err;

	nb_tok_spec_init(s);
	if (!path)
		return -NB_EINVAL;
	err = read_file(path, &buf, &len);
	if (!err)
		err = parse(&j, buf, len);
	free(buf);
	if (!err)
		err = load_vocab(&j);
	if (!err)
		err = check_model(&j, s);
	if (!err)
		err = load_merges(&j);
	if (!err)
		err = load_pretok(&j, s);
	if (!err) {
		load_specials(&j, s);
		err = build_spec(&j, s);
	}
	if (err)
		nb_tok_spec_free(s);
	free(j.txt);
	free(j.len);
	free(j.type);
	free(j.idx);
	free(j.merges);
	cJSON_Delete(j.root);
	return err;
}
