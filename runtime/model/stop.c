#include "runtime/model/stop.h"
#include "runtime/base/err.h"

#include <string.h>

void nb_stop_init(struct nb_stop *s)
{
	memset(s, 0, sizeof(*s));
}

int nb_stop_add(struct nb_stop *s, const char *str)
{
	size_t len = strlen(str);

	if (len == 0 || len > NB_STOP_MAX_LEN || s->n == NB_STOP_MAX)
		return -NB_EINVAL;
	s->strs[s->n] = str;
	s->lens[s->n++] = len;
	return 0;
}

/* Length of the longest tail of p[0..n) that is a proper prefix of a stop string. */
static size_t partial_tail(const struct nb_stop *s, const char *p, size_t n)
{
	size_t best = 0;

	for (size_t i = 0; i < s->n; i++) {
		size_t max = s->lens[i] - 1 < n ? s->lens[i] - 1 : n;
		for (size_t k = max; k > best; k--) {
			if (memcmp(p + n - k, s->strs[i], k) == 0) {
				best = k;
				break;
			}
		}
	}
	return best;
}

/* Earliest complete stop string in p[0..n), or n. */
static size_t first_hit(const struct nb_stop *s, const char *p, size_t n)
{
	size_t best = n;

	for (size_t i = 0; i < s->n; i++) {
		const char *at = memmem(p, n, s->strs[i], s->lens[i]);
		if (at && (size_t)(at - p) < best)
			best = (size_t)(at - p);
	}
	return best;
}

bool nb_stop_feed(struct nb_stop *s, const char *buf, size_t len,
		  void (*emit)(void *arg, const char *buf, size_t len), void *arg)
{
	while (len > 0 && !s->hit) {
		size_t room = sizeof(s->pending) - s->n_pending;
		size_t take = len < room ? len : room, hit, keep;

		memcpy(s->pending + s->n_pending, buf, take);
		s->n_pending += take;
		buf += take;
		len -= take;
		hit = first_hit(s, s->pending, s->n_pending);
		if (hit < s->n_pending) {
			if (hit)
				emit(arg, s->pending, hit);
			s->n_pending = 0;
			s->hit = true;
			break;
		}
		keep = partial_tail(s, s->pending, s->n_pending);
		if (s->n_pending > keep)
			emit(arg, s->pending, s->n_pending - keep);
		memmove(s->pending, s->pending + s->n_pending - keep, keep);
		s->n_pending = keep;
	}
	return s->hit;
}

void nb_stop_flush(struct nb_stop *s, void (*emit)(void *arg, const char *buf, size_t len),
		   void *arg)
{
	if (s->n_pending && !s->hit)
		emit(arg, s->pending, s->n_pending);
	s->n_pending = 0;
}
