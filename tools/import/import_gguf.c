/* GGUF (llama.cpp) checkpoints of the families of firmware/arch.h:
 * hyper-parameters from the keys prefixed with general.architecture
 * ("llama.embedding_length"), the tokenizer from the tokenizer.ggml.* keys,
 * tensors dequantized to float32. GGUF's tensors are already in the
 * interleaved RoPE layout and use the canonical names: no permutation, no
 * renaming; only ne[] is reversed into PyTorch order. */
#include "firmware/arch.h"
#include "tools/import/ckpt.h"
#include "tools/import/gguf.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOK_MAX_VOCAB (1u << 24)
#define TOK_MAX_PIECE (1u << 16)
#define TOK_MAX_TEXT 0x7fffffffu
#define TOK_MAX_MERGES (1u << 26)
#define ID_NONE 0xffffffffu /* GGUF's "no such token" */

/* ---- hyper-parameters ---------------------------------------------------- */

static int get_req_u32(const struct nb_gguf *g, const char *key, uint32_t *v)
{
	int ret = nb_gguf_get_u32(g, key, v);

	if (ret == -NB_ENOENT) {
		nb_err("GGUF: %s missing", key);
		return -NB_EFORMAT;
	}
	if (ret == 0 && *v == 0) {
		nb_err("GGUF: %s is 0", key);
		ret = -NB_EFORMAT;
	}
	return ret;
}

static int get_opt_u32(const struct nb_gguf *g, const char *key, uint32_t dflt, uint32_t *v)
{
	int ret = nb_gguf_get_u32(g, key, v);

	if (ret == -NB_ENOENT) {
		*v = dflt;
		return 0;
	}
	return ret;
}

static int str_is(const struct nb_gguf *g, const char *key, const char *want, const char **s,
		  uint64_t *len)
{
	int ret = nb_gguf_get_str(g, key, s, len);

	if (ret != 0)
		return ret;
	return *len == strlen(want) && memcmp(*s, want, *len) == 0;
}

/* The family named by general.architecture, whose name prefixes its keys. */
static int find_arch(const struct nb_gguf *g, const struct nb_arch_desc **d)
{
	const char *s;
	uint64_t len;
	char known[128];

	if (nb_gguf_get_str(g, "general.architecture", &s, &len) != 0) {
		nb_err("GGUF: general.architecture missing or not a string");
		return -NB_EFORMAT;
	}
	*d = nb_arch_find(s, (size_t)len);
	if (*d == NULL) {
		nb_arch_list(known, sizeof(known));
		nb_err("GGUF: architecture %.*s not supported (%s)", (int)(len > 64 ? 64 : len), s,
		       known);
		return -NB_ENOTSUP;
	}
	return 0;
}

/* "<architecture>.<name>" */
struct arch_key {
	const char *arch;
	char buf[96];
};

static const char *prefixed(struct arch_key *k, const char *name)
{
	snprintf(k->buf, sizeof(k->buf), "%s.%s", k->arch, name);
	return k->buf;
}

static int check_rope(const struct nb_gguf *g, struct arch_key *k, const struct nb_hparams *hp)
{
	const char *s;
	uint64_t len;
	uint32_t rot;
	int ret = str_is(g, prefixed(k, "rope.scaling.type"), "none", &s, &len);

	if (ret == 0) {
		nb_err("GGUF: RoPE scaling %.*s not supported", (int)(len > 32 ? 32 : len), s);
		return -NB_ENOTSUP;
	}
	if (ret < 0 && ret != -NB_ENOENT)
		return ret;
	/* Llama 3.1 scaling arrives as precomputed factors, not parameters */
	if (nb_gguf_find_tensor(g, "rope_freqs.weight") != NULL) {
		nb_err("GGUF: rope_freqs.weight (Llama 3.1 RoPE scaling) not supported; import the HF checkpoint");
		return -NB_ENOTSUP;
	}
	ret = get_opt_u32(g, prefixed(k, "rope.dimension_count"), hp->head_dim, &rot);
	if (ret == 0 && rot != hp->head_dim) {
		nb_err("GGUF: RoPE on %u of %u head dimensions not supported", rot, hp->head_dim);
		return -NB_ENOTSUP;
	}
	return ret;
}

static int read_vocab_size(const struct nb_gguf *g, struct arch_key *k, struct nb_hparams *hp)
{
	const struct nb_gguf_kv *tokens = nb_gguf_find(g, "tokenizer.ggml.tokens");
	int ret = nb_gguf_get_u32(g, prefixed(k, "vocab_size"), &hp->vocab_size);

	if (ret != -NB_ENOENT)
		return ret;
	if (tokens == NULL || tokens->type != NB_GGUF_ARRAY || tokens->arr_n > UINT32_MAX) {
		nb_err("GGUF: neither %s nor a token list", k->buf);
		return -NB_EFORMAT;
	}
	hp->vocab_size = (uint32_t)tokens->arr_n;
	return 0;
}

static int read_hparams(const struct nb_gguf *g, const struct nb_arch_desc *d,
			struct nb_hparams *hp)
{
	struct arch_key k = { .arch = d->name };
	uint32_t v_len;
	int ret;

	if ((ret = get_req_u32(g, prefixed(&k, "embedding_length"), &hp->dim)) != 0 ||
	    (ret = get_req_u32(g, prefixed(&k, "feed_forward_length"), &hp->hidden_dim)) != 0 ||
	    (ret = get_req_u32(g, prefixed(&k, "block_count"), &hp->n_layers)) != 0 ||
	    (ret = get_req_u32(g, prefixed(&k, "attention.head_count"), &hp->n_heads)) != 0 ||
	    (ret = get_req_u32(g, prefixed(&k, "context_length"), &hp->seq_len)) != 0 ||
	    (ret = get_opt_u32(g, prefixed(&k, "attention.head_count_kv"), hp->n_heads,
			       &hp->n_kv_heads)) != 0 ||
	    (ret = get_opt_u32(g, prefixed(&k, "attention.key_length"), hp->dim / hp->n_heads,
			       &hp->head_dim)) != 0 ||
	    (ret = get_opt_u32(g, prefixed(&k, "attention.value_length"), hp->head_dim, &v_len)) != 0)
		return ret;
	if (v_len != hp->head_dim) {
		nb_err("GGUF: key_length %u != value_length %u not supported", hp->head_dim, v_len);
		return -NB_ENOTSUP;
	}
	ret = nb_gguf_get_f32(g, prefixed(&k, "attention.layer_norm_rms_epsilon"), &hp->norm_eps);
	if (ret != 0) {
		nb_err("GGUF: %s missing or not a float", k.buf);
		return ret;
	}
	ret = nb_gguf_get_f32(g, prefixed(&k, "rope.freq_base"), &hp->rope_theta);
	if (ret == -NB_ENOENT) {
		hp->rope_theta = 10000.0f;
		ret = 0;
	}
	if (ret == 0)
		ret = read_vocab_size(g, &k, hp);
	if (ret == 0)
		ret = check_rope(g, &k, hp);
	hp->rope_scaling = NB_ROPE_SCALING_NONE;
	hp->tied_embeddings = nb_gguf_find_tensor(g, "output.weight") == NULL;
	nb_arch_apply(d, hp);
	return ret;
}

/* ---- tokenizer ----------------------------------------------------------- */

/* Integer element i of an array of an integer value type. */
static int64_t arr_int(const uint8_t *p, uint32_t type, uint64_t i)
{
	switch (type) {
	case NB_GGUF_U8:
		return p[i];
	case NB_GGUF_I8:
		return (int8_t)p[i];
	case NB_GGUF_I32:
		return (int32_t)((uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
				 (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24);
	default: /* NB_GGUF_U32 */
		return (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
		       (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
	}
}

static int read_pieces(struct nb_tok_spec *s, const struct nb_gguf *g)
{
	const uint8_t *p, *q;
	const char *str;
	uint64_t n, len, total = 0;
	int ret = nb_gguf_get_arr(g, "tokenizer.ggml.tokens", NB_GGUF_STRING, &p, &n);

	if (ret != 0)
		return ret == -NB_ENOENT ? -NB_EFORMAT : ret;
	if (n == 0 || n > TOK_MAX_VOCAB) {
		nb_err("GGUF: %llu tokens (1..%u)", (unsigned long long)n, TOK_MAX_VOCAB);
		return -NB_EFORMAT;
	}
	/* at most 2^24 pieces of 2^16 bytes: total cannot wrap */
	q = p;
	for (uint64_t i = 0; i < n; i++) {
		nb_gguf_next_str(&q, &str, &len);
		if (len > TOK_MAX_PIECE) {
			nb_err("GGUF: token %llu is %llu bytes long", (unsigned long long)i,
			       (unsigned long long)len);
			return -NB_EFORMAT;
		}
		total += len;
	}
	if (total > TOK_MAX_TEXT)
		return -NB_ERANGE;
	s->n_vocab = (uint32_t)n;
	s->text = malloc(total ? total : 1);
	s->offsets = malloc((n + 1) * sizeof(*s->offsets));
	s->scores = calloc(n, sizeof(*s->scores));
	s->types = malloc(n);
	if (!s->text || !s->offsets || !s->scores || !s->types)
		return -NB_ENOMEM;
	s->offsets[0] = 0;
	for (uint64_t i = 0; i < n; i++) {
		nb_gguf_next_str(&p, &str, &len);
		memcpy(s->text + s->offsets[i], str, len);
		s->offsets[i + 1] = s->offsets[i] + (uint32_t)len;
		s->types[i] = NB_PIECE_NORMAL;
	}
	return 0;
}

static int read_scores_types(struct nb_tok_spec *s, const struct nb_gguf *g)
{
	const struct nb_gguf_kv *kv;
	const uint8_t *p;
	uint64_t n;
	int ret = nb_gguf_get_arr(g, "tokenizer.ggml.scores", NB_GGUF_F32, &p, &n);

	if (ret == 0 && n != s->n_vocab)
		ret = -NB_EFORMAT;
	for (uint64_t i = 0; ret == 0 && i < n; i++) {
		uint32_t bits = (uint32_t)arr_int(p, NB_GGUF_U32, i);
		memcpy(&s->scores[i], &bits, sizeof(bits));
		if (isnan(s->scores[i]))
			ret = -NB_EFORMAT;
	}
	if (ret != 0 && ret != -NB_ENOENT) {
		nb_err("GGUF: tokenizer.ggml.scores: not %u finite floats", s->n_vocab);
		return -NB_EFORMAT;
	}
	kv = nb_gguf_find(g, "tokenizer.ggml.token_type");
	if (kv == NULL)
		return 0;
	if (kv->type != NB_GGUF_ARRAY || kv->arr_n != s->n_vocab ||
	    (kv->arr_type != NB_GGUF_I32 && kv->arr_type != NB_GGUF_U32 &&
	     kv->arr_type != NB_GGUF_I8 && kv->arr_type != NB_GGUF_U8)) {
		nb_err("GGUF: tokenizer.ggml.token_type: not %u integers", s->n_vocab);
		return -NB_EFORMAT;
	}
	for (uint64_t i = 0; i < kv->arr_n; i++) {
		int64_t t = arr_int(kv->val, kv->arr_type, i);
		if (t < 0 || t > NB_PIECE_BYTE) {
			nb_err("GGUF: token %llu has type %lld", (unsigned long long)i, (long long)t);
			return -NB_EFORMAT;
		}
		/* 0 is llama.cpp's "undefined" */
		s->types[i] = t == 0 ? NB_PIECE_NORMAL : (uint8_t)t;
	}
	return 0;
}

static int read_id(const struct nb_gguf *g, const char *key, uint32_t n_vocab, int32_t dflt,
		   int32_t *id)
{
	uint32_t v;
	int ret = nb_gguf_get_u32(g, key, &v);

	if (ret == -NB_ENOENT) {
		*id = dflt;
		return 0;
	}
	if (ret != 0)
		return ret;
	if (v == ID_NONE) {
		*id = -1;
		return 0;
	}
	if (v >= n_vocab) {
		nb_err("GGUF: %s = %u outside the %u-token vocabulary", key, v, n_vocab);
		return -NB_EFORMAT;
	}
	*id = (int32_t)v;
	return 0;
}

static int read_flag(const struct nb_gguf *g, const char *key, uint32_t bit, uint32_t *flags)
{
	bool b;
	int ret = nb_gguf_get_bool(g, key, &b);

	if (ret == -NB_ENOENT)
		return 0;
	if (ret == 0)
		*flags = b ? *flags | bit : *flags & ~bit;
	return ret;
}

static int read_specials(struct nb_tok_spec *s, const struct nb_gguf *g)
{
	bool spm = s->kind == NB_TOK_SPM;
	int ret;

	/* llama.cpp's defaults for SPM vocabularies */
	if ((ret = read_id(g, "tokenizer.ggml.bos_token_id", s->n_vocab, spm && s->n_vocab > 1 ? 1 : -1,
			   &s->bos_id)) != 0 ||
	    (ret = read_id(g, "tokenizer.ggml.eos_token_id", s->n_vocab, spm && s->n_vocab > 2 ? 2 : -1,
			   &s->eos_id)) != 0 ||
	    (ret = read_id(g, "tokenizer.ggml.unknown_token_id", s->n_vocab, spm ? 0 : -1,
			   &s->unk_id)) != 0 ||
	    (ret = read_id(g, "tokenizer.ggml.padding_token_id", s->n_vocab, -1, &s->pad_id)) != 0)
		return ret;
	s->flags = spm ? NB_TOK_FLAG_ADD_BOS | NB_TOK_FLAG_ADD_SPACE_PREFIX : 0;
	if (spm) {
		for (uint32_t i = 0; i < s->n_vocab; i++)
			if (s->types[i] == NB_PIECE_BYTE)
				s->flags |= NB_TOK_FLAG_BYTE_FALLBACK;
	}
	if ((ret = read_flag(g, "tokenizer.ggml.add_bos_token", NB_TOK_FLAG_ADD_BOS, &s->flags)) != 0)
		return ret;
	if (spm)
		ret = read_flag(g, "tokenizer.ggml.add_space_prefix", NB_TOK_FLAG_ADD_SPACE_PREFIX,
				&s->flags);
	return ret;
}

static int read_pretok(struct nb_tok_spec *s, const struct nb_gguf *g)
{
	static const struct {
		const char *name;
		uint32_t pretok, flags;
	} pretoks[] = {
		{ "gpt2", NB_PRETOK_GPT2, 0 },
		{ "llama-bpe", NB_PRETOK_LLAMA3, NB_TOK_FLAG_IGNORE_MERGES },
		{ "qwen2", NB_PRETOK_QWEN2, 0 },
		{ "smollm", NB_PRETOK_SMOLLM, 0 },
	};
	const char *str;
	uint64_t len;
	int ret = nb_gguf_get_str(g, "tokenizer.ggml.pre", &str, &len);

	if (ret != 0) {
		nb_err("GGUF: tokenizer.ggml.pre missing or not a string");
		return ret == -NB_ENOENT ? -NB_ENOTSUP : ret;
	}
	for (size_t i = 0; i < sizeof(pretoks) / sizeof(pretoks[0]); i++) {
		if (len == strlen(pretoks[i].name) && memcmp(str, pretoks[i].name, len) == 0) {
			s->pretok = pretoks[i].pretok;
			s->flags |= pretoks[i].flags;
			return 0;
		}
	}
	nb_err("GGUF: pre-tokenizer %.*s not supported (gpt2, llama-bpe, qwen2, smollm)",
	       (int)(len > 32 ? 32 : len), str);
	return -NB_ENOTSUP;
}

/* Piece bytes -> id, open addressing; ids + 1 so 0 means empty. */
struct piece_map {
	const struct nb_tok_spec *s;
	uint32_t *slots;
	uint32_t mask;
};

static uint32_t piece_hash(const char *p, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h;
}

static int64_t map_lookup(const struct piece_map *m, const char *p, size_t n)
{
	for (uint32_t i = piece_hash(p, n) & m->mask;; i = (i + 1) & m->mask) {
		uint32_t id = m->slots[i];
		if (id == 0)
			return -1;
		id--;
		if (m->s->offsets[id + 1] - m->s->offsets[id] == n &&
		    memcmp(m->s->text + m->s->offsets[id], p, n) == 0)
			return id;
	}
}

static int map_build(struct piece_map *m, const struct nb_tok_spec *s)
{
	uint32_t cap = 2;

	while (cap < 2 * s->n_vocab)
		cap *= 2;
	m->s = s;
	m->mask = cap - 1;
	m->slots = calloc(cap, sizeof(*m->slots));
	if (m->slots == NULL)
		return -NB_ENOMEM;
	for (uint32_t id = 0; id < s->n_vocab; id++) {
		const char *p = s->text + s->offsets[id];
		size_t n = s->offsets[id + 1] - s->offsets[id];
		uint32_t i = piece_hash(p, n) & m->mask;
		if (map_lookup(m, p, n) >= 0)
			continue; /* a duplicate piece: the first id wins */
		while (m->slots[i] != 0)
			i = (i + 1) & m->mask;
		m->slots[i] = id + 1;
	}
	return 0;
}

/* "left right": split at the first space after the first byte. */
static int read_merge(const struct piece_map *m, const char *str, uint64_t len, uint32_t *pair)
{
	const char *sp = len > 1 ? memchr(str + 1, ' ', (size_t)len - 1) : NULL;
	int64_t l, r;

	if (sp == NULL)
		return -NB_EFORMAT;
	l = map_lookup(m, str, (size_t)(sp - str));
	r = map_lookup(m, sp + 1, (size_t)(str + len - sp - 1));
	if (l < 0 || r < 0)
		return -NB_EFORMAT;
	pair[0] = (uint32_t)l;
	pair[1] = (uint32_t)r;
	return 0;
}

static int read_merges(struct nb_tok_spec *s, const struct nb_gguf *g)
{
	struct piece_map m = { 0 };
	const uint8_t *p;
	const char *str;
	uint64_t n, len;
	int ret = nb_gguf_get_arr(g, "tokenizer.ggml.merges", NB_GGUF_STRING, &p, &n);

	if (ret != 0)
		return ret == -NB_ENOENT ? -NB_EFORMAT : ret;
	if (n > TOK_MAX_MERGES) {
		nb_err("GGUF: %llu merges (at most %u)", (unsigned long long)n, TOK_MAX_MERGES);
		return -NB_EFORMAT;
	}
	s->merges = malloc(n ? 2 * n * sizeof(*s->merges) : 1);
	ret = s->merges ? map_build(&m, s) : -NB_ENOMEM;
	for (uint64_t i = 0; ret == 0 && i < n; i++) {
		nb_gguf_next_str(&p, &str, &len);
		ret = read_merge(&m, str, len, &s->merges[2 * i]);
		if (ret != 0)
			nb_err("GGUF: merge %llu (%.*s) is not two known pieces",
			       (unsigned long long)i, (int)(len > 64 ? 64 : len), str);
	}
	if (ret == 0)
		s->n_merges = (uint32_t)n;
	free(m.slots);
	return ret;
}

static int read_tokenizer(struct nb_tok_spec *s, const struct nb_gguf *g)
{
	const char *str;
	uint64_t len;
	int ret = nb_gguf_get_str(g, "tokenizer.ggml.model", &str, &len);

	if (ret == -NB_ENOENT) {
		nb_warn("GGUF: no tokenizer in the metadata");
		return 0;
	}
	if (ret != 0)
		return ret;
	if (len == 5 && memcmp(str, "llama", 5) == 0) {
		s->kind = NB_TOK_SPM;
	} else if (len == 4 && memcmp(str, "gpt2", 4) == 0) {
		s->kind = NB_TOK_BPE;
	} else {
		nb_err("GGUF: tokenizer model %.*s not supported (llama, gpt2)",
		       (int)(len > 32 ? 32 : len), str);
		return -NB_ENOTSUP;
	}
	if ((ret = read_pieces(s, g)) != 0 || (ret = read_scores_types(s, g)) != 0 ||
	    (ret = read_specials(s, g)) != 0)
		return ret;
	if (s->kind == NB_TOK_BPE && ((ret = read_pretok(s, g)) != 0 || (ret = read_merges(s, g)) != 0))
		return ret;
	return 0;
}

/* ---- tensors ------------------------------------------------------------- */

static int add_tensor(struct nb_ckpt *c, const struct nb_gguf_tensor *t)
{
	uint64_t shape[4];
	float *data;
	int ret;

	for (uint32_t i = 0; i < t->ndim; i++)
		shape[i] = t->ne[t->ndim - 1 - i];
	ret = nb_gguf_to_f32(t, &data);
	if (ret != 0)
		return ret;
	return nb_ckpt_add(c, t->name, t->ndim, shape, data);
}

static void set_name(struct nb_ckpt *c, const struct nb_gguf *g, const char *what)
{
	const char *s, *base, *dot;
	uint64_t len;

	if (nb_gguf_get_str(g, "general.name", &s, &len) != 0 || len == 0) {
		base = strrchr(what, '/');
		s = base ? base + 1 : what;
		dot = strrchr(s, '.');
		len = dot && dot != s ? (uint64_t)(dot - s) : strlen(s);
	}
	if (len >= sizeof(c->name))
		len = sizeof(c->name) - 1;
	memcpy(c->name, s, (size_t)len);
	c->name[len] = '\0';
	/* keep the name printable: it ends up in logs and the image */
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)c->name[i] < 0x20 || c->name[i] == 0x7f)
			c->name[i] = '_';
}

int nb_gguf_to_ckpt(struct nb_ckpt *c, const struct nb_gguf *g, const char *what)
{
	const struct nb_arch_desc *d = NULL;
	int ret = find_arch(g, &d);

	if (ret == 0)
		ret = read_hparams(g, d, &c->hp);
	for (uint64_t i = 0; ret == 0 && i < g->n_tensors; i++)
		ret = add_tensor(c, &g->tensors[i]);
	if (ret == 0)
		ret = read_tokenizer(&c->tok, g);
	if (ret == 0) {
		set_name(c, g, what);
		ret = nb_ckpt_validate(c);
	}
	if (ret != 0) {
		nb_err("%s: GGUF import failed: %s", what, nb_strerror(ret));
		nb_ckpt_free(c);
	}
	return ret;
}

int nb_import_gguf(struct nb_ckpt *c, const char *path)
{
	struct nb_gguf g;
	int ret;

	nb_gguf_init(&g);
	ret = nb_gguf_open(&g, path);
	if (ret == 0)
		ret = nb_gguf_to_ckpt(c, &g, path);
	nb_gguf_free(&g);
	return ret;
}
