/* Byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM), id for id what HF
 * tokenizers gives with add_special_tokens=False:
 *   1. added tokens (USER/CONTROL pieces) are cut out of the raw text,
 *      leftmost-longest, before anything else sees it (HF matches those it
 *      marks "normalized" in the normalized text; the spec does not keep
 *      that flag, so with NFC a token followed by a mark that composes with
 *      its last character is still matched here);
 *   2. Qwen2: each remaining segment is NFC-normalized;
 *   3. the segment is split by the pre-tokenizer's regex, hand-written below
 *      with the regex's backtracking semantics;
 *   4. each pre-token's bytes become one-character symbols of the GPT-2 byte
 *      alphabet, ranked merges are applied lowest rank first (ties: leftmost),
 *      and the symbols are the ids. ignore_merges (Llama 3): a pre-token that
 *      is a vocab piece as a whole is that one piece.
 * Bytes whose character is not in the vocab are dropped (HF without an
 * unk_token) or become unk_id. */
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/text/tok_internal.h"
#include "runtime/text/unicode.h"

#include <stdlib.h>
#include <string.h>

struct bpe_merge {
	uint32_t right, rank, result;
};

struct nb_tok_bpe {
	int32_t byte_sym[256]; /* piece of each byte's one-character symbol, or -1 */
	/* Merges by left piece: merge_start[l]..merge_start[l + 1] index merge,
	 * sorted by right piece; a pair listed twice keeps its last rank, as in
	 * HF (its merge map is built by overwriting). */
	uint32_t *merge_start; /* n_vocab + 1 */
	struct bpe_merge *merge;
	/* Added tokens by first byte, longest first: added[added_start[b]..
	 * added_start[b + 1]] start with byte b. */
	uint32_t *added;
	uint32_t added_start[257];
};

/* ---- the GPT-2 byte alphabet ---------------------------------------------- */

/* Printable bytes stand for themselves; the 68 others (0-32, 127-160, 173)
 * are moved, in order, to U+0100..U+0143 so that no piece holds a space or
 * a control character. */
static uint32_t byte_to_cp(uint8_t b)
{
	if (b <= 32)
		return 256u + b;
	if (b >= 127 && b <= 160)
		return 256u + 33 + (b - 127u);
	if (b == 173)
		return 256u + 67;
	return b;
}

/* Byte of an alphabet character, or -1. */
static int cp_to_byte(uint32_t cp)
{
	if (cp < 256)
		return (cp > 32 && cp < 127) || (cp > 160 && cp != 173) ? (int)cp : -1;
	if (cp <= 256 + 32)
		return (int)(cp - 256);
	if (cp <= 256 + 66)
		return (int)(cp - 256 - 33 + 127);
	return cp == 256 + 67 ? 173 : -1;
}

static const char *piece(const struct nb_tok_spec *s, uint32_t id, size_t *len)
{
	*len = s->offsets[id + 1] - s->offsets[id];
	return s->text + s->offsets[id];
}

static bool is_added(const struct nb_tok_spec *s, uint32_t id)
{
	return s->types[id] == NB_PIECE_USER || s->types[id] == NB_PIECE_CONTROL;
}

/* Piece id of exactly these bytes that the BPE model may produce (added
 * tokens are only ever matched in the raw text), or -1. */
static int32_t model_lookup(const struct nb_tok *t, const char *s, size_t len)
{
	int32_t id = nb_tok_lookup(t, s, len);

	return id >= 0 && is_added(&t->spec, (uint32_t)id) ? -1 : id;
}

/* ---- pre-tokenizers ------------------------------------------------------- */

static uint32_t char_at(const char *s, size_t n, size_t i, size_t *len)
{
	uint32_t cp;

	*len = nb_unicode_decode(s + i, n - i, &cp);
	return cp;
}

static int class_at(const char *s, size_t n, size_t i)
{
	size_t len;

	return nb_unicode_class(char_at(s, n, i, &len));
}

/* End of the run of characters of class cls that starts at i. */
static size_t run_end(const char *s, size_t n, size_t i, int cls)
{
	size_t len;

	while (i < n && nb_unicode_class(char_at(s, n, i, &len)) == cls)
		i += len;
	return i;
}

/* Length after the apostrophe at i - 1 of 's|'t|'re|'ve|'m|'ll|'d, or 0.
 * fold: (?i:...), which with Unicode case folding also lets U+017F LONG S
 * match 's' (the only non-ASCII character that folds to one of these). */
static size_t contraction(const char *s, size_t n, size_t i, bool fold)
{
	static const char *const sfx[] = { "s", "t", "re", "ve", "m", "ll", "d" };

	for (size_t k = 0; k < sizeof(sfx) / sizeof(sfx[0]); k++) {
		size_t p = i, len;
		const char *x = sfx[k];

		for (; *x && p < n; x++, p += len) {
			uint32_t c = char_at(s, n, p, &len);

			if (fold && c >= 'A' && c <= 'Z')
				c += 'a' - 'A';
			if (fold && c == 0x17f)
				c = 's';
			if (c != (uint8_t)*x)
				break;
		}
		if (!*x)
			return p - i;
	}
	return 0;
}

/* \s+(?!\S)|\s+ at a white-space character i: the whole run if it ends the
 * text, else the run less its last character (which then leads the next
 * pre-token), else (a run of one) that character. */
static size_t space_run(const char *s, size_t n, size_t i)
{
	size_t e = i, last = i, len;

	while (e < n && nb_unicode_class(char_at(s, n, e, &len)) == NB_UC_SPACE) {
		last = e;
		e += len;
	}
	if (e == n || last == i)
		return e;
	return last;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const char *s, size_t n, size_t i)
{
	size_t len, k;
	uint32_t c = char_at(s, n, i, &len);
	int cls = nb_unicode_class(c);
	size_t j = i;

	if (c == '\'' && (k = contraction(s, n, i + 1, false)))
		return i + 1 + k;
	/* " ?X+": the optional space only sticks if an X follows it. */
	if (c == ' ' && i + 1 < n && class_at(s, n, i + 1) != NB_UC_SPACE) {
		j = i + 1;
		cls = class_at(s, n, j);
	}
	if (cls != NB_UC_SPACE)
		return run_end(s, n, j, cls);
	return space_run(s, n, i);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
 * ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ (Llama 3: 3, Qwen2: 1) */
static size_t match_llama3(const char *s, size_t n, size_t i, unsigned max_digits)
{
	size_t len0, len, k, e, nl_end = 0;
	uint32_t c = char_at(s, n, i, &len0);
	int cls = nb_unicode_class(c), cls1 = -1;

	if (c == '\'' && (k = contraction(s, n, i + 1, true)))
		return i + 1 + k;
	if (cls == NB_UC_LETTER)
		return run_end(s, n, i, NB_UC_LETTER);
	if (i + len0 < n)
		cls1 = class_at(s, n, i + len0);
	if (c != '\r' && c != '\n' && cls != NB_UC_NUMBER && cls1 == NB_UC_LETTER)
		return run_end(s, n, i + len0, NB_UC_LETTER);
	if (cls == NB_UC_NUMBER) {
		e = i;
		for (k = 0; k < max_digits && e < n; k++) {
			if (nb_unicode_class(char_at(s, n, e, &len)) != NB_UC_NUMBER)
				break;
			e += len;
		}
		return e;
	}
	if (cls == NB_UC_OTHER || (c == ' ' && cls1 == NB_UC_OTHER)) {
		e = run_end(s, n, cls == NB_UC_OTHER ? i : i + 1, NB_UC_OTHER);
		while (e < n && (s[e] == '\r' || s[e] == '\n'))
			e++;
		return e;
	}
	/* White space: \s*[\r\n]+ backtracks to just after the run's last
	 * line break; without one, the \s+ rules. */
	for (e = i; e < n && nb_unicode_class(char_at(s, n, e, &len)) == NB_UC_SPACE; e += len)
		if (s[e] == '\r' || s[e] == '\n')
			nl_end = e + 1;
	return nl_end ? nl_end : space_run(s, n, i);
}

/* Iterates the pre-tokens of one segment. SmolLM first isolates every
 * numeric character (Digits(individual_digits)), then runs the GPT-2 regex
 * on the stretches between them, each as a text of its own. */
struct splitter {
	uint32_t pretok;
	const char *s;
	size_t n, pos;
	size_t sub_end; /* SmolLM: end of the current stretch without digits */
};

static void split_init(struct splitter *sp, uint32_t pretok, const char *s, size_t n)
{
	sp->pretok = pretok;
	sp->s = s;
	sp->n = n;
	sp->pos = 0;
	sp->sub_end = 0;
}

static size_t smollm_next(struct splitter *sp)
{
	size_t len, e;

	if (sp->pos >= sp->sub_end) {
		if (nb_unicode_is_numeric(char_at(sp->s, sp->n, sp->pos, &len)))
			return sp->pos + len;
		for (e = sp->pos; e < sp->n; e += len)
			if (nb_unicode_is_numeric(char_at(sp->s, sp->n, e, &len)))
				break;
		sp->sub_end = e;
	}
	return match_gpt2(sp->s, sp->sub_end, sp->pos);
}

/* Next pre-token [*start, *end); false at the end of the segment. */
static bool split_next(struct splitter *sp, size_t *start, size_t *end)
{
	size_t e;

	if (sp->pos >= sp->n)
		return false;
	switch (sp->pretok) {
	case NB_PRETOK_LLAMA3:
		e = match_llama3(sp->s, sp->n, sp->pos, 3);
		break;
	case NB_PRETOK_QWEN2:
		e = match_llama3(sp->s, sp->n, sp->pos, 1);
		break;
	case NB_PRETOK_SMOLLM:
		e = smollm_next(sp);
		break;
	case NB_PRETOK_NONE:
		e = sp->n;
		break;
	default:
		e = match_gpt2(sp->s, sp->n, sp->pos);
		break;
	}
	*start = sp->pos;
	*end = e;
	sp->pos = e;
	return true;
}

int nb_tok_bpe_split(uint32_t pretok, const char *text, size_t len, size_t *ends, size_t max,
		     size_t *n)
{
	struct splitter sp;
	size_t a, b;

	*n = 0;
	if ((!text && len) || (!ends && max) || pretok > NB_PRETOK_SMOLLM)
		return -NB_EINVAL;
	split_init(&sp, pretok, text, len);
	while (split_next(&sp, &a, &b)) {
		if (*n < max)
			ends[*n] = b;
		(*n)++;
	}
	return *n > max ? -NB_ERANGE : 0;
}

/* ---- merges --------------------------------------------------------------- */

/* The merge of pieces (l, r), or NULL. */
static const struct bpe_merge *find_merge(const struct nb_tok_bpe *b, int32_t l, int32_t r)
{
	uint32_t lo = b->merge_start[l], hi = b->merge_start[l + 1];

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (b->merge[mid].right == (uint32_t)r)
			return &b->merge[mid];
		if (b->merge[mid].right < (uint32_t)r)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

struct sym {
	int32_t id;         /* -1 once merged into its left neighbour */
	int32_t prev, next; /* -1 at the ends */
};

struct cand {
	uint32_t rank, pos; /* pos: index of the left symbol, its order in the word */
	int32_t left, right;
	uint32_t result;
};

/* Per-call scratch: the tokenizer stays read-only, so threads may share it. */
struct enc {
	const struct nb_tok *t;
	int32_t *ids;
	size_t max, n;
	struct sym *sym;
	struct cand *heap;
	size_t sym_cap, heap_cap, heap_n;
	char *mapped;
	size_t mapped_cap;
};

static bool cand_less(const struct cand *a, const struct cand *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct enc *e, const struct cand *c)
{
	size_t i = e->heap_n++;

	while (i > 0 && cand_less(c, &e->heap[(i - 1) / 2])) {
		e->heap[i] = e->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	e->heap[i] = *c;
}

static struct cand heap_pop(struct enc *e)
{
	struct cand top = e->heap[0], last = e->heap[--e->heap_n];
	size_t i = 0, c;

	while ((c = 2 * i + 1) < e->heap_n) {
		if (c + 1 < e->heap_n && cand_less(&e->heap[c + 1], &e->heap[c]))
			c++;
		if (!cand_less(&e->heap[c], &last))
			break;
		e->heap[i] = e->heap[c];
		i = c;
	}
	if (e->heap_n)
		e->heap[i] = last;
	return top;
}

static void push_pair(struct enc *e, int32_t pos)
{
	const struct sym *s = e->sym;
	const struct bpe_merge *m;
	struct cand c;

	if (pos < 0 || s[pos].next < 0)
		return;
	m = find_merge(e->t->bpe, s[pos].id, s[s[pos].next].id);
	if (!m)
		return;
	c.rank = m->rank;
	c.pos = (uint32_t)pos;
	c.left = s[pos].id;
	c.right = s[s[pos].next].id;
	c.result = m->result;
	heap_push(e, &c);
}

static void emit(struct enc *e, int32_t id)
{
	if (e->n < e->max)
		e->ids[e->n] = id;
	e->n++;
}

/* p grown to hold need elements (at least one); NULL if out of memory,
 * p then still valid. */
static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
	void *q;

	if (need <= *cap && p)
		return p;
	if (need > SIZE_MAX / elem / 2)
		return NULL;
	need = need < 64 ? 64 : 2 * need;
	q = realloc(p, need * elem);
	if (q)
		*cap = need;
	return q;
}

/* ignore_merges: the whole pre-token as one piece, or -1. */
static int whole_piece(struct enc *e, const uint8_t *w, size_t n, int32_t *id)
{
	size_t i, o = 0;
	char *m = grow(e->mapped, &e->mapped_cap, 2 * n, 1);

	if (!m)
		return -NB_ENOMEM;
	e->mapped = m;
	for (i = 0; i < n; i++)
		o += nb_unicode_encode(byte_to_cp(w[i]), e->mapped + o);
	*id = model_lookup(e->t, e->mapped, o);
	return 0;
}

/* Symbols of one pre-token, merged; their ids appended. The heap holds
 * every candidate pair; a popped pair whose symbols have changed since it
 * was pushed is stale and skipped. */
static int bpe_word(struct enc *e, const uint8_t *w, size_t n)
{
	const struct nb_tok_bpe *b = e->t->bpe;
	int32_t id, ns = 0, i, unk = e->t->spec.unk_id;
	struct sym *sym;
	struct cand *heap;
	int err;

	if (e->t->spec.flags & NB_TOK_FLAG_IGNORE_MERGES) {
		err = whole_piece(e, w, n, &id);
		if (err)
			return err;
		if (id >= 0) {
			emit(e, id);
			return 0;
		}
	}
	if (n > INT32_MAX / 4)
		return -NB_ENOMEM;
	sym = grow(e->sym, &e->sym_cap, n, sizeof(*e->sym));
	if (!sym)
		return -NB_ENOMEM;
	e->sym = sym;
	for (size_t k = 0; k < n; k++) {
		id = b->byte_sym[w[k]] >= 0 ? b->byte_sym[w[k]] : unk;
		if (id < 0)
			continue; /* no piece and no unk: HF drops it */
		e->sym[ns].id = id;
		e->sym[ns].prev = ns - 1;
		e->sym[ns].next = -1;
		if (ns > 0)
			e->sym[ns - 1].next = ns;
		ns++;
	}
	if (ns > 1) {
		/* Each merge pushes at most two pairs. */
		heap = grow(e->heap, &e->heap_cap, 3 * (size_t)ns, sizeof(*e->heap));
		if (!heap)
			return -NB_ENOMEM;
		e->heap = heap;
	}
	e->heap_n = 0;
	for (i = 0; i + 1 < ns; i++)
		push_pair(e, i);
	while (e->heap_n) {
		struct cand c = heap_pop(e);
		struct sym *l = &e->sym[c.pos], *r;

		if (l->id != c.left || l->next < 0 || e->sym[l->next].id != c.right)
			continue;
		r = &e->sym[l->next];
		l->id = (int32_t)c.result;
		l->next = r->next;
		if (r->next >= 0)
			e->sym[r->next].prev = (int32_t)c.pos;
		r->id = -1;
		push_pair(e, l->prev);
		push_pair(e, (int32_t)c.pos);
	}
	for (i = 0; i < ns && i >= 0; i = e->sym[i].next)
		emit(e, e->sym[i].id);
	return 0;
}

static int encode_segment(struct enc *e, const char *s, size_t n)
{
	struct splitter sp;
	size_t a, z;
	int err;

	split_init(&sp, e->t->spec.pretok, s, n);
	while (split_next(&sp, &a, &z)) {
		err = bpe_word(e, (const uint8_t *)s + a, z - a);
		if (err)
			return err;
	}
	return 0;
}

static int plain_segment(struct enc *e, const char *s, size_t n)
{
	char *norm;
	size_t nlen;
	int err;

	if (n == 0)
		return 0;
	if (e->t->spec.pretok != NB_PRETOK_QWEN2 || nb_unicode_nfc_trivial(s, n))
		return encode_segment(e, s, n);
	err = nb_unicode_nfc(s, n, &norm, &nlen);
	if (err)
		return err;
	err = encode_segment(e, norm, nlen);
	free(norm);
	return err;
}

/* Added token starting at text[i] (the longest), or -1. */
static int32_t added_at(const struct nb_tok *t, const char *text, size_t len, size_t i)
{
	const struct nb_tok_bpe *b = t->bpe;
	uint8_t c = (uint8_t)text[i];

	for (uint32_t k = b->added_start[c]; k < b->added_start[c + 1]; k++) {
		size_t plen;
		const char *p = piece(&t->spec, b->added[k], &plen);

		if (plen <= len - i && memcmp(p, text + i, plen) == 0)
			return (int32_t)b->added[k];
	}
	return -1;
}

int nb_tok_bpe_encode(const struct nb_tok *t, const char *text, size_t len, int32_t *ids,
		      size_t max, size_t *n)
{
	struct enc e = { .t = t, .ids = ids, .max = max };
	size_t i, start = 0, plen;
	int32_t id;
	int err = 0;

	*n = 0;
	if (!t || !t->bpe || (!text && len) || (!ids && max))
		return -NB_EINVAL;
	for (i = 0; i < len && !err; i++) {
		if (t->bpe->added_start[(uint8_t)text[i]] ==
			    t->bpe->added_start[(uint8_t)text[i] + 1] ||
		    (id = added_at(t, text, len, i)) < 0)
			continue;
		err = plain_segment(&e, text + start, i - start);
		emit(&e, id);
		piece(&t->spec, (uint32_t)id, &plen);
		i += plen - 1;
		start = i + 1;
	}
	if (!err)
		err = plain_segment(&e, text + start, len - start);
	free(e.sym);
	free(e.heap);
	free(e.mapped);
	if (err) {
		nb_err("tokenizer: no memory to encode %zu bytes", len);
		return err;
	}
	*n = e.n;
	return e.n > max ? -NB_ERANGE : 0;
}

/* ---- decoding ------------------------------------------------------------- */

int nb_tok_bpe_piece_bytes(const struct nb_tok *t, int32_t id, char *buf, size_t cap,
			   size_t *len)
{
	size_t plen, i = 0, o = 0, clen;
	const char *p;
	bool raw;

	*len = 0;
	if (!t || id < 0 || (uint32_t)id >= t->spec.n_vocab || (!buf && cap))
		return -NB_EINVAL;
	p = piece(&t->spec, (uint32_t)id, &plen);
	/* Added tokens are raw text; so is a piece with a character outside
	 * the alphabet (HF's ByteLevel decoder keeps such a token as it is). */
	raw = is_added(&t->spec, (uint32_t)id);
	for (; !raw && i < plen; i += clen) {
		uint32_t cp;
		int byte;

		clen = nb_unicode_decode(p + i, plen - i, &cp);
		byte = cp_to_byte(cp);
		if (byte < 0)
			raw = true;
		else if (o < cap)
			buf[o++] = (char)byte;
		else
			o++;
	}
	if (raw) {
		o = plen;
		if (plen <= cap && plen)
			memcpy(buf, p, plen);
	}
	*len = o;
	return o > cap ? -NB_ERANGE : 0;
}

/* ---- open ----------------------------------------------------------------- */

struct merge_row {
	uint32_t left, right, rank, result;
};

static int cmp_row(const void *pa, const void *pb)
{
	const struct merge_row *a = pa, *b = pb;

	if (a->left != b->left)
		return a->left < b->left ? -1 : 1;
	if (a->right != b->right)
		return a->right < b->right ? -1 : 1;
	return a->rank < b->rank ? -1 : a->rank > b->rank;
}

/* Piece made by merging l and r, or -1 (then the merge can never apply). */
static int32_t merge_result(const struct nb_tok *t, uint32_t l, uint32_t r)
{
	size_t ll, rl;
	const char *lp = piece(&t->spec, l, &ll), *rp = piece(&t->spec, r, &rl);
	char small[256], *buf = small;
	int32_t id;

	if (ll + rl > sizeof(small)) {
		buf = malloc(ll + rl);
		if (!buf)
			return -2;
	}
	memcpy(buf, lp, ll);
	memcpy(buf + ll, rp, rl);
	id = model_lookup(t, buf, ll + rl);
	if (buf != small)
		free(buf);
	return id;
}

/* Rows of the usable merges, sorted by (left, right, rank). */
static int merge_rows(const struct nb_tok *t, struct merge_row **out, uint32_t *n_out)
{
	const struct nb_tok_spec *s = &t->spec;
	struct merge_row *rows;
	uint32_t r, n = 0, skipped = 0;

	*out = NULL;
	*n_out = 0;
	rows = malloc((s->n_merges ? s->n_merges : 1) * sizeof(*rows));
	if (!rows)
		return -NB_ENOMEM;
	for (r = 0; r < s->n_merges; r++) {
		uint32_t l = s->merges[2 * r], rt = s->merges[2 * r + 1];
		int32_t res = merge_result(t, l, rt);

		if (res == -2) {
			free(rows);
			return -NB_ENOMEM;
		}
		if (res < 0) {
			if (!skipped++)
				nb_warn("tokenizer: merge %u joins pieces %u and %u into no piece; ignored",
					r, l, rt);
			continue;
		}
		rows[n++] = (struct merge_row){ l, rt, r, (uint32_t)res };
	}
	if (skipped > 1)
		nb_warn("tokenizer: %u merges make no piece and are ignored", skipped);
	qsort(rows, n, sizeof(*rows), cmp_row);
	*out = rows;
	*n_out = n;
	return 0;
}

static int build_merges(struct nb_tok *t)
{
	struct nb_tok_bpe *b = t->bpe;
	uint32_t n_vocab = t->spec.n_vocab, n, i, k = 0;
	struct merge_row *rows;
	int err;

	err = merge_rows(t, &rows, &n);
	if (err)
		return err;
	b->merge_start = calloc((size_t)n_vocab + 1, sizeof(*b->merge_start));
	b->merge = malloc((n ? n : 1) * sizeof(*b->merge));
	if (!b->merge_start || !b->merge) {
		free(rows);
		return -NB_ENOMEM;
	}
	for (i = 0; i < n; i++) {
		/* Of a pair listed twice the later rank wins (sorted last). */
		if (i + 1 < n && rows[i + 1].left == rows[i].left && rows[i + 1].right == rows[i].right)
			continue;
		b->merge[k++] = (struct bpe_merge){ rows[i].right, rows[i].rank, rows[i].result };
		b->merge_start[rows[i].left + 1]++;
	}
	for (i = 0; i < n_vocab; i++)
		b->merge_start[i + 1] += b->merge_start[i];
	free(rows);
	return 0;
}

static int build_added(struct nb_tok *t)
{
	const struct nb_tok_spec *s = &t->spec;
	struct nb_tok_bpe *b = t->bpe;
	uint32_t i, n = 0, count[256] = { 0 }, fill[256];
	size_t len;
	const char *p;

	for (i = 0; i < s->n_vocab; i++) {
		p = piece(s, i, &len);
		if (is_added(s, i) && len)
			count[(uint8_t)p[0]]++, n++;
	}
	b->added = malloc((n ? n : 1) * sizeof(*b->added));
	if (!b->added)
		return -NB_ENOMEM;
	b->added_start[0] = 0;
	for (i = 0; i < 256; i++) {
		b->added_start[i + 1] = b->added_start[i] + count[i];
		fill[i] = b->added_start[i];
	}
	for (i = 0; i < s->n_vocab; i++) {
		p = piece(s, i, &len);
		if (is_added(s, i) && len)
			b->added[fill[(uint8_t)p[0]]++] = i;
	}
	/* Longest first within a bucket; insertion sort, buckets are small
	 * (a few hundred special tokens share "<" at most). */
	for (uint32_t c = 0; c < 256; c++) {
		uint32_t lo = b->added_start[c], hi = b->added_start[c + 1];

		for (i = lo + 1; i < hi; i++) {
			uint32_t id = b->added[i], j = i;
			size_t l0 = s->offsets[id + 1] - s->offsets[id];

			for (; j > lo && s->offsets[b->added[j - 1] + 1] - s->offsets[b->added[j - 1]] < l0;
			     j--)
				b->added[j] = b->added[j - 1];
			b->added[j] = id;
		}
	}
	return 0;
}

static void build_bytes(struct nb_tok *t)
{
	for (int i = 0; i < 256; i++) {
		char c[4];
		size_t n = nb_unicode_encode(byte_to_cp((uint8_t)i), c);

		t->bpe->byte_sym[i] = model_lookup(t, c, n);
	}
}

int nb_tok_bpe_open(struct nb_tok *t)
{
	int err;

	if (t->spec.kind != NB_TOK_BPE)
		return -NB_EINVAL;
	t->bpe = calloc(1, sizeof(*t->bpe));
	if (!t->bpe)
		return -NB_ENOMEM;
	build_bytes(t);
	err = build_merges(t);
	if (!err)
		err = build_added(t);
	if (err) {
		nb_err("tokenizer: no memory for the BPE tables of %u pieces, %u merges",
		       t->spec.n_vocab, t->spec.n_merges);
		nb_tok_bpe_close(t);
	}
	return err;
}

void nb_tok_bpe_close(struct nb_tok *t)
{
	if (!t || !t->bpe)
		return;
	free(t->bpe->merge_start);
	free(t->bpe->merge);
	free(t->bpe->added);
	free(t->bpe);
	t->bpe = NULL;
}
