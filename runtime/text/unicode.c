/* UTF-8, character classes and NFC for the byte-level BPE pre-tokenizers.
 * The tables are run-length lists searched by bisection: ~6 KB for the
 * classes, ~2 KB for combining classes, ~27 KB for the decompositions. */
#include "runtime/text/unicode.h"

#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/text/unicode_tables.h"

#include <stdlib.h>
#include <string.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Hangul syllables compose and decompose by arithmetic (Unicode ch. 3.12). */
#define HANGUL_S 0xAC00u
#define HANGUL_L 0x1100u
#define HANGUL_V 0x1161u
#define HANGUL_T 0x11A7u
#define HANGUL_LCOUNT 19u
#define HANGUL_VCOUNT 21u
#define HANGUL_TCOUNT 28u
#define HANGUL_NCOUNT (HANGUL_VCOUNT * HANGUL_TCOUNT)
#define HANGUL_SCOUNT (HANGUL_LCOUNT * HANGUL_NCOUNT)

/* Value of the run containing cp in a table of start << shift | value. */
static uint32_t run_value(const uint32_t *runs, size_t n, unsigned shift, uint32_t cp)
{
	size_t lo = 0, hi = n;

	/* Invariant: runs[lo] starts at or before cp (runs[0] starts at 0). */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (runs[mid] >> shift <= cp)
			lo = mid;
		else
			hi = mid;
	}
	return runs[lo] & ((1u << shift) - 1);
}

int nb_unicode_class(uint32_t cp)
{
	if (cp < 0x80) {
		if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
			return NB_UC_LETTER;
		if (cp >= '0' && cp <= '9')
			return NB_UC_NUMBER;
		if (cp == ' ' || (cp >= '\t' && cp <= '\r'))
			return NB_UC_SPACE;
		return NB_UC_OTHER;
	}
	if (cp > NB_UC_MAX)
		return NB_UC_OTHER;
	return (int)run_value(uc_class_runs, ARRAY_LEN(uc_class_runs), 2, cp);
}

bool nb_unicode_is_numeric(uint32_t cp)
{
	if (nb_unicode_class(cp) == NB_UC_NUMBER)
		return true;
	for (size_t i = 0; i + 1 < ARRAY_LEN(uc_numeric_extra); i += 2)
		if (cp >= uc_numeric_extra[i] && cp <= uc_numeric_extra[i + 1])
			return true;
	return false;
}

unsigned nb_unicode_ccc(uint32_t cp)
{
	if (cp < 0x300 || cp > NB_UC_MAX)
		return 0;
	return run_value(uc_ccc_runs, ARRAY_LEN(uc_ccc_runs), 8, cp);
}

size_t nb_unicode_decode(const char *str, size_t n, uint32_t *cp)
{
	const uint8_t *s = (const uint8_t *)str;
	uint32_t c = s[0], min;
	size_t len, i;

	*cp = c;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		c &= 0x1f;
		min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		c &= 0x0f;
		min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		c &= 0x07;
		min = 0x10000;
	} else {
		goto bad;
	}
	if (n < len)
		goto bad;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			goto bad;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > NB_UC_MAX || (c >= 0xd800 && c <= 0xdfff))
		goto bad;
	*cp = c;
	return len;
bad:
	*cp = NB_UC_REPLACEMENT;
	return 1;
}

size_t nb_unicode_encode(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

bool nb_unicode_nfc_trivial(const char *s, size_t n)
{
	/* 0xcc is the lead byte of U+0300; every later lead byte is larger. */
	for (size_t i = 0; i < n; i++)
		if ((uint8_t)s[i] >= 0xcc)
			return false;
	return true;
}

/* ---- NFC ------------------------------------------------------------------ */

struct cp_buf {
	uint32_t *v;
	size_t n, cap;
};

static int cp_push(struct cp_buf *b, uint32_t cp)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		uint32_t *v;

		if (cap > SIZE_MAX / sizeof(*v) / 2)
			return -NB_ENOMEM;
		v = realloc(b->v, cap * sizeof(*v));
		if (!v)
			return -NB_ENOMEM;
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = cp;
	return 0;
}

/* Index of cp's entry in uc_decomp (entries of 3), or -1. */
static long decomp_find(uint32_t cp)
{
	size_t lo = 0, hi = ARRAY_LEN(uc_decomp) / 3;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t key = uc_decomp[3 * mid] & 0x7fffffffu;

		if (key == cp)
			return (long)mid;
		if (key < cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Appends the full canonical decomposition of cp. The table's mappings
 * nest at most a few levels deep, so the recursion is bounded. */
static int decompose(struct cp_buf *b, uint32_t cp)
{
	long i;
	int err;

	if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_SCOUNT) {
		uint32_t s = cp - HANGUL_S, t = s % HANGUL_TCOUNT;

		if ((err = cp_push(b, HANGUL_L + s / HANGUL_NCOUNT)) ||
		    (err = cp_push(b, HANGUL_V + s % HANGUL_NCOUNT / HANGUL_TCOUNT)))
			return err;
		return t ? cp_push(b, HANGUL_T + t) : 0;
	}
	if (cp < 0xc0 || (i = decomp_find(cp)) < 0)
		return cp_push(b, cp);
	err = decompose(b, uc_decomp[3 * i + 1]);
	if (!err && uc_decomp[3 * i + 2])
		err = decompose(b, uc_decomp[3 * i + 2]);
	return err;
}

/* Stable sort of a run of non-starters by combining class. Runs are almost
 * always one or two marks; a long run (hostile input) goes through qsort on
 * keys that carry the position, so it stays stable and O(n log n). */
static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int sort_marks(uint32_t *v, size_t n)
{
	if (n <= 32) {
		for (size_t i = 1; i < n; i++) {
			uint32_t c = v[i];
			unsigned cc = nb_unicode_ccc(c);
			size_t j = i;

			for (; j > 0 && nb_unicode_ccc(v[j - 1]) > cc; j--)
				v[j] = v[j - 1];
			v[j] = c;
		}
		return 0;
	}
	uint64_t *k = malloc(n * sizeof(*k));

	if (!k)
		return -NB_ENOMEM;
	for (size_t i = 0; i < n; i++)
		k[i] = (uint64_t)nb_unicode_ccc(v[i]) << 56 | (uint64_t)i << 21 | v[i];
	qsort(k, n, sizeof(*k), cmp_u64);
	for (size_t i = 0; i < n; i++)
		v[i] = (uint32_t)(k[i] & 0x1fffff);
	free(k);
	return 0;
}

static int canonical_order(struct cp_buf *b)
{
	size_t i = 0, j;
	int err;

	while (i < b->n) {
		if (nb_unicode_ccc(b->v[i]) == 0) {
			i++;
			continue;
		}
		for (j = i; j < b->n && nb_unicode_ccc(b->v[j]) != 0; j++)
			;
		err = sort_marks(b->v + i, j - i);
		if (err)
			return err;
		i = j;
	}
	return 0;
}

/* Primary composite of the pair, or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b)
{
	size_t lo = 0, hi = ARRAY_LEN(uc_comp);

	if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LCOUNT && b >= HANGUL_V &&
	    b < HANGUL_V + HANGUL_VCOUNT)
		return HANGUL_S + ((a - HANGUL_L) * HANGUL_VCOUNT + (b - HANGUL_V)) * HANGUL_TCOUNT;
	if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SCOUNT && (a - HANGUL_S) % HANGUL_TCOUNT == 0 &&
	    b > HANGUL_T && b < HANGUL_T + HANGUL_TCOUNT)
		return a + (b - HANGUL_T);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const uint32_t *e = &uc_decomp[3 * uc_comp[mid]];

		if (e[1] == a && e[2] == b)
			return e[0] & 0x7fffffffu;
		if (e[1] < a || (e[1] == a && e[2] < b))
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* Canonical composition in place (UAX #15): a mark joins the last starter
 * unless a character between them has class 0 or a class >= its own. */
static void compose(struct cp_buf *b)
{
	size_t out = 1, i;
	long starter; /* -1 while the text starts with marks: nothing to join */
	unsigned last = 0;

	if (b->n == 0)
		return;
	starter = nb_unicode_ccc(b->v[0]) ? -1 : 0;
	for (i = 1; i < b->n; i++) {
		uint32_t c = b->v[i], comp = 0;
		unsigned cc = nb_unicode_ccc(c);

		if (starter >= 0 && (last < cc || last == 0))
			comp = compose_pair(b->v[starter], c);
		if (comp) {
			b->v[starter] = comp;
			continue;
		}
		if (cc == 0)
			starter = (long)out;
		last = cc;
		b->v[out++] = c;
	}
	b->n = out;
}

int nb_unicode_nfc(const char *s, size_t n, char **out, size_t *out_len)
{
	struct cp_buf b = { 0 };
	size_t i = 0, o = 0;
	char *p = NULL;
	int err = 0;

	*out = NULL;
	*out_len = 0;
	while (i < n && !err) {
		uint32_t cp;

		i += nb_unicode_decode(s + i, n - i, &cp);
		err = decompose(&b, cp);
	}
	if (!err)
		err = canonical_order(&b);
	if (err)
		goto err_free;
	compose(&b);
	if (b.n > (SIZE_MAX - 1) / 4) {
		err = -NB_ENOMEM;
		goto err_free;
	}
	p = malloc(4 * b.n + 1);
	if (!p) {
		err = -NB_ENOMEM;
		goto err_free;
	}
	for (i = 0; i < b.n; i++)
		o += nb_unicode_encode(b.v[i], p + o);
	p[o] = '\0';
	free(b.v);
	*out = p;
	*out_len = o;
	return 0;

err_free:
	nb_err("unicode: no memory to normalize %zu bytes", n);
	free(b.v);
	return err;
}
