/* SentencePiece BPE encoding, id for id what sentencepiece's bpe::Model and
 * SentencePieceProcessor produce for a model with the identity normalizer:
 *   1. normalize: ▁ prefix (add_dummy_prefix), every ' ' -> ▁;
 *   2. split into UTF-8 characters (USER pieces matched whole and frozen);
 *   3. repeatedly merge the adjacent pair whose concatenation is a NORMAL,
 *      USER or UNUSED piece with the highest score, leftmost on ties;
 *   4. undo merges into UNUSED pieces; pieces not in the vocabulary become
 *      <0xXX> byte pieces (byte fallback) or one <unk> per run.
 * Step 3 runs over the whole text with a binary heap of candidate pairs
 * (stale entries are skipped when popped), so it is O(n log n): the text is
 * never cut into words, as sentencepiece does not cut it either. */
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/text/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* Symbol and heap indices are int32: keeps both arrays compact. */
#define SPM_MAX_NORMALIZED 0x3fffffffu

struct spm_sym {
	uint32_t start, len; /* bytes of the normalized text; len 0 once merged away */
	int32_t prev, next;  /* neighbours, -1 at the ends */
	bool freeze;         /* a USER piece: never merged */
};

struct spm_pair {
	float score;
	int32_t left, right;
	uint32_t size; /* bytes of the merged piece when pushed: detects stale pairs */
};

struct spm_state {
	const struct nb_tok *t;
	char *norm;
	size_t norm_len;
	struct spm_sym *sym;
	int32_t n_sym;
	struct spm_pair *heap;
	size_t n_heap, cap_heap;
	uint32_t *unused_split; /* per piece id: left length of its last pushed pair */
	uint32_t *stack;        /* resegmentation work list: (start, len) pairs */
	int32_t *ids;
	size_t max, n;
	bool prev_unk;
};

static const char spm_space[3] = { '\xe2', '\x96', '\x81' };

static int normalize(struct spm_state *st, const char *text, size_t len)
{
	bool prefix = st->t->spec.flags & NB_TOK_FLAG_ADD_SPACE_PREFIX;
	size_t spaces = 0, i, o = 0;
	uint64_t total;

	for (i = 0; i < len; i++)
		spaces += text[i] == ' ';
	total = (uint64_t)len + 2 * (uint64_t)spaces + (prefix ? 3 : 0);
	if (total > SPM_MAX_NORMALIZED) {
		nb_err("tokenizer: text of %zu bytes too long to encode at once", len);
		return -NB_ERANGE;
	}
	st->norm_len = (size_t)total;
	st->norm = malloc(st->norm_len);
	if (!st->norm)
		return -NB_ENOMEM;
	if (prefix) {
		memcpy(st->norm, spm_space, 3);
		o = 3;
	}
	for (i = 0; i < len; i++) {
		if (text[i] == ' ') {
			memcpy(st->norm + o, spm_space, 3);
			o += 3;
		} else {
			st->norm[o++] = text[i];
		}
	}
	return 0;
}

static uint32_t utf8_len(uint8_t c)
{
	return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* Longest USER piece at pos, or 0. */
static uint32_t user_match(const struct spm_state *st, size_t pos)
{
	size_t l = st->t->spm_user_max_len;
	int32_t id;

	if (l > st->norm_len - pos)
		l = st->norm_len - pos;
	return (uint32_t)nb_tok_longest_prefix(st->t, st->norm + pos, l, NB_PIECE_USER, &id);
}

static int split_chars(struct spm_state *st)
{
	size_t pos = 0;
	uint32_t l, u;
	int32_t i = 0;

	st->sym = malloc(st->norm_len * sizeof(*st->sym));
	if (!st->sym)
		return -NB_ENOMEM;
	while (pos < st->norm_len) {
		l = utf8_len((uint8_t)st->norm[pos]);
		if (l > st->norm_len - pos)
			l = (uint32_t)(st->norm_len - pos);
		u = st->t->spm_user_max_len ? user_match(st, pos) : 0;
		st->sym[i].start = (uint32_t)pos;
		st->sym[i].len = u ? u : l;
		st->sym[i].freeze = u != 0;
		st->sym[i].prev = i - 1;
		pos += st->sym[i].len;
		st->sym[i].next = pos < st->norm_len ? i + 1 : -1;
		i++;
	}
	st->n_sym = i;
	return 0;
}

/* ---- heap of candidate pairs --------------------------------------------- */

static bool pair_before(const struct spm_pair *a, const struct spm_pair *b)
{
	return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(struct spm_state *st, const struct spm_pair *p)
{
	size_t i, parent;

	if (st->n_heap == st->cap_heap)
		return; /* cannot happen: see alloc_work */
	i = st->n_heap++;

	while (i > 0) {
		parent = (i - 1) / 2;
		if (!pair_before(p, &st->heap[parent]))
			break;
		st->heap[i] = st->heap[parent];
		i = parent;
	}
	st->heap[i] = *p;
}

static struct spm_pair heap_pop(struct spm_state *st)
{
	struct spm_pair top = st->heap[0], last = st->heap[--st->n_heap];
	size_t i = 0, c;

	for (;;) {
		c = 2 * i + 1;
		if (c >= st->n_heap)
			break;
		if (c + 1 < st->n_heap && pair_before(&st->heap[c + 1], &st->heap[c]))
			c++;
		if (!pair_before(&st->heap[c], &last))
			break;
		st->heap[i] = st->heap[c];
		i = c;
	}
	if (st->n_heap)
		st->heap[i] = last;
	return top;
}

static bool mergeable(uint8_t type)
{
	return type == NB_PIECE_NORMAL || type == NB_PIECE_USER || type == NB_PIECE_UNUSED;
}

static void maybe_add_pair(struct spm_state *st, int32_t left, int32_t right)
{
	const struct spm_sym *l, *r;
	struct spm_pair p;
	int32_t id;

	if (left < 0 || right < 0)
		return;
	l = &st->sym[left];
	r = &st->sym[right];
	if (l->freeze || r->freeze)
		return;
	id = nb_tok_lookup(st->t, st->norm + l->start, (size_t)l->len + r->len);
	if (id < 0 || !mergeable(st->t->spec.types[id]))
		return;
	p.score = st->t->spec.scores[id];
	p.left = left;
	p.right = right;
	p.size = l->len + r->len;
	heap_push(st, &p);
	if (st->unused_split && st->t->spec.types[id] == NB_PIECE_UNUSED)
		st->unused_split[id] = l->len;
}

static void merge_all(struct spm_state *st)
{
	struct spm_sym *l, *r;
	struct spm_pair top;
	int32_t i;

	for (i = 1; i < st->n_sym; i++)
		maybe_add_pair(st, i - 1, i);
	while (st->n_heap) {
		top = heap_pop(st);
		l = &st->sym[top.left];
		r = &st->sym[top.right];
		if (l->len == 0 || r->len == 0 || l->len + r->len != top.size)
			continue;
		l->len += r->len;
		l->next = r->next;
		if (r->next >= 0)
			st->sym[r->next].prev = top.left;
		r->len = 0;
		maybe_add_pair(st, l->prev, top.left);
		maybe_add_pair(st, top.left, l->next);
	}
}

/* ---- output --------------------------------------------------------------- */

static void emit(struct spm_state *st, int32_t id)
{
	if (st->n < st->max)
		st->ids[st->n] = id;
	st->n++;
}

/* One final piece: its id, or its bytes, or <unk> (a run of unknown pieces
 * gives one <unk>, as sentencepiece does without byte fallback). */
static void emit_piece(struct spm_state *st, uint32_t start, uint32_t len)
{
	const struct nb_tok *t = st->t;
	int32_t id = nb_tok_lookup(t, st->norm + start, len);
	bool unk;

	if (id < 0)
		id = t->spec.unk_id;
	unk = t->spec.types[id] == NB_PIECE_UNKNOWN;
	if (unk && (t->spec.flags & NB_TOK_FLAG_BYTE_FALLBACK)) {
		for (uint32_t i = 0; i < len; i++)
			emit(st, t->byte_ids[(uint8_t)st->norm[start + i]]);
	} else if (!(unk && st->prev_unk)) {
		emit(st, id);
	}
	st->prev_unk = unk;
}

/* A merge into an UNUSED piece is undone (recursively) into the two halves
 * it was last pushed with; the work list keeps the order left to right. */
static void emit_symbol(struct spm_state *st, uint32_t start, uint32_t len)
{
	size_t top = 0;
	uint32_t split;
	int32_t id;

	if (!st->unused_split) {
		emit_piece(st, start, len);
		return;
	}
	st->stack[top++] = start;
	st->stack[top++] = len;
	while (top) {
		len = st->stack[--top];
		start = st->stack[--top];
		id = nb_tok_lookup(st->t, st->norm + start, len);
		split = id >= 0 && st->t->spec.types[id] == NB_PIECE_UNUSED ? st->unused_split[id]
									      : 0;
		if (split == 0 || split >= len) {
			emit_piece(st, start, len);
			continue;
		}
		st->stack[top++] = start + split;
		st->stack[top++] = len - split;
		st->stack[top++] = start;
		st->stack[top++] = split;
	}
}

static int alloc_work(struct spm_state *st)
{
	size_t n = (size_t)st->n_sym;

	/* n - 1 initial pairs plus at most two per merge, and fewer than n merges. */
	st->cap_heap = 3 * n;
	st->heap = malloc(st->cap_heap * sizeof(*st->heap));
	if (!st->heap)
		return -NB_ENOMEM;
	if (!st->t->spm_has_unused)
		return 0;
	st->unused_split = calloc(st->t->spec.n_vocab, sizeof(*st->unused_split));
	/* Each split pushes one more pair than it pops: at most len pairs. */
	st->stack = malloc(2 * (st->norm_len + 1) * sizeof(*st->stack));
	if (!st->unused_split || !st->stack)
		return -NB_ENOMEM;
	return 0;
}

int nb_tok_spm_encode(const struct nb_tok *t, const char *text, size_t len, int32_t *ids,
		      size_t max, size_t *n)
{
	struct spm_state st = { .t = t, .ids = ids, .max = max };
	int32_t i;
	int err;

	*n = 0;
	if (len == 0)
		return 0;
	err = normalize(&st, text, len);
	if (err)
		goto out;
	err = split_chars(&st);
	if (err)
		goto out;
	err = alloc_work(&st);
	if (err)
		goto out;
	merge_all(&st);
	for (i = 0; i >= 0; i = st.sym[i].next)
		emit_symbol(&st, st.sym[i].start, st.sym[i].len);
	*n = st.n;
	err = st.n > max ? -NB_ERANGE : 0;
out:
	if (err == -NB_ENOMEM)
		nb_err("tokenizer: no memory to encode %zu bytes", len);
	free(st.stack);
	free(st.unused_split);
	free(st.heap);
	free(st.sym);
	free(st.norm);
	return err;
}
