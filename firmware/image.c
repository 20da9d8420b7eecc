#include "firmware/image.h"
#include "kernels/quant.h"
#include "runtime/base/err.h"
#include "runtime/base/kconfig.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Generous limits: an image that claims more is corrupt, not ambitious. */
#define MAX_TENSORS 65536u
#define MAX_DIM (1ull << 32)

unsigned nb_image_default_flags(void)
{
	return (IS_ENABLED(CONFIG_IMAGE_POPULATE) ? NB_IMAGE_POPULATE : 0) |
	       (IS_ENABLED(CONFIG_IMAGE_MLOCK) ? NB_IMAGE_MLOCK : 0) |
	       (IS_ENABLED(CONFIG_IMAGE_HUGEPAGE) ? NB_IMAGE_HUGEPAGE : 0);
}

const char *nb_dtype_name(uint32_t type)
{
	if (nb_qinfo(type))
		return nb_qinfo(type)->name;
	switch (type) {
	case NB_DTYPE_F32:
		return "f32";
	case NB_DTYPE_F16:
		return "f16";
	case NB_DTYPE_BF16:
		return "bf16";
	default:
		return "unknown";
	}
}

int nb_tensor_bytes(uint32_t type, uint32_t ndim, const uint64_t *shape, uint64_t *bytes)
{
	uint64_t n = 1;

	if (ndim < 1 || ndim > 4)
		return -NB_ERANGE;
	for (uint32_t i = 0; i < ndim; i++) {
		if (shape[i] == 0 || shape[i] > MAX_DIM || __builtin_mul_overflow(n, shape[i], &n))
			return -NB_ERANGE;
	}
	switch (type) {
	case NB_DTYPE_F32:
		return __builtin_mul_overflow(n, 4, bytes) ? -NB_ERANGE : 0;
	default:
		/* Quantized types are matrices {rows, cols} in row-quad blocks. */
		if (nb_qinfo(type))
			return ndim == 2 ? nb_qtensor_bytes(type, shape[0], shape[1], bytes) : -NB_ERANGE;
		return -NB_ENOTSUP;
	}
}

void nb_image_init(struct nb_image *img)
{
	memset(img, 0, sizeof(*img));
	img->fd = -1;
}

static const struct nb_image_section *find_section(const struct nb_image_header *h,
						   uint32_t kind)
{
	for (uint32_t i = 0; i < h->n_sections; i++)
		if (h->sections[i].kind == kind)
			return &h->sections[i];
	return NULL;
}

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static int check_header(const struct nb_image_header *h, size_t size)
{
	if (size < sizeof(*h)) {
		nb_err("image: %zu bytes is shorter than the %zu-byte header", size, sizeof(*h));
		return -NB_EFORMAT;
	}
	if (memcmp(h->magic, NB_IMAGE_MAGIC, 8) != 0) {
		nb_err("image: bad magic: not a nibble model image");
		return -NB_EFORMAT;
	}
	if (h->version != NB_IMAGE_VERSION) {
		nb_err("image: format version %u, this build reads version %u", h->version,
		       NB_IMAGE_VERSION);
		return -NB_ENOTSUP;
	}
	if (h->header_size != sizeof(*h) || h->flags != 0) {
		nb_err("image: header size %u / flags %#x not understood", h->header_size, h->flags);
		return -NB_EFORMAT;
	}
	if (h->file_size != size) {
		nb_err("image: header says %llu bytes, file has %zu (truncated or padded?)",
		       (unsigned long long)h->file_size, size);
		return -NB_EFORMAT;
	}
	if (h->n_sections > NB_IMAGE_MAX_SECTIONS) {
		nb_err("image: %u sections, at most %u", h->n_sections, NB_IMAGE_MAX_SECTIONS);
		return -NB_EFORMAT;
	}
	/* Reserved bytes are zero, so that a later version may give them a
	 * meaning that this one would otherwise silently ignore. */
	if (!all_zero(h->reserved, sizeof(h->reserved)) ||
	    !all_zero(h->sections + h->n_sections,
		      (NB_IMAGE_MAX_SECTIONS - h->n_sections) * sizeof(h->sections[0]))) {
		nb_err("image: reserved header bytes or unused section entries are not zero");
		return -NB_EFORMAT;
	}
	return 0;
}

/* Every section page-aligned, inside the file, after the header, not
 * overlapping another, each kind at most once. */
static int check_sections(const struct nb_image_header *h, size_t size)
{
	for (uint32_t i = 0; i < h->n_sections; i++) {
		const struct nb_image_section *s = &h->sections[i];
		uint64_t end;

		if (s->kind == 0 || s->kind > NB_SECTION_KIND_MAX || s->reserved != 0) {
			nb_err("image: section %u has unknown kind %u (reserved %#x)", i, s->kind,
			       s->reserved);
			return -NB_EFORMAT;
		}
		if (s->offset % NB_IMAGE_PAGE || s->offset < sizeof(*h) ||
		    __builtin_add_overflow(s->offset, s->size, &end) || end > size) {
			nb_err("image: section %u (kind %u) at %llu+%llu lies outside the file", i,
			       s->kind, (unsigned long long)s->offset, (unsigned long long)s->size);
			return -NB_ERANGE;
		}
		for (uint32_t j = 0; j < i; j++) {
			const struct nb_image_section *o = &h->sections[j];
			if (o->kind == s->kind) {
				nb_err("image: section kind %u appears twice", s->kind);
				return -NB_EFORMAT;
			}
			if (s->offset < o->offset + o->size && o->offset < end) {
				nb_err("image: sections %u and %u overlap", j, i);
				return -NB_EFORMAT;
			}
		}
	}
	return 0;
}

static const struct nb_image_section *need_section(const struct nb_image_header *h,
						   uint32_t kind, const char *what)
{
	const struct nb_image_section *s = find_section(h, kind);
	if (!s)
		nb_err("image: no %s section", what);
	return s;
}

static int load_hparams(struct nb_image *img, const struct nb_image_section *s)
{
	const struct nb_image_hparams *d = (const void *)(img->map + s->offset);
	struct nb_hparams *hp = &img->hp;

	if (s->size != sizeof(*d)) {
		nb_err("image: hparams section is %llu bytes, want %zu",
		       (unsigned long long)s->size, sizeof(*d));
		return -NB_EFORMAT;
	}
	hp->arch = d->arch;
	hp->dim = d->dim;
	hp->hidden_dim = d->hidden_dim;
	hp->n_layers = d->n_layers;
	hp->n_heads = d->n_heads;
	hp->n_kv_heads = d->n_kv_heads;
	hp->head_dim = d->head_dim;
	hp->vocab_size = d->vocab_size;
	hp->seq_len = d->seq_len;
	hp->tied_embeddings = d->tied_embeddings;
	hp->norm_eps = d->norm_eps;
	hp->rope_theta = d->rope_theta;
	hp->rope_scaling = d->rope_scaling;
	hp->rope_factor = d->rope_factor;
	hp->rope_low_freq_factor = d->rope_low_freq_factor;
	hp->rope_high_freq_factor = d->rope_high_freq_factor;
	hp->rope_orig_ctx = d->rope_orig_ctx;
	hp->features = d->features;
	hp->activation = d->activation;
	hp->norm_offset = d->norm_offset;
	hp->embed_scale = d->embed_scale;
	if (!all_zero(d->reserved, sizeof(d->reserved))) {
		nb_err("image: reserved hparams bytes are not zero");
		return -NB_EFORMAT;
	}
	return nb_hparams_check(hp);
}

static int check_tensor(const struct nb_image_tensor *e, uint32_t i, uint64_t data_size)
{
	uint64_t want, end;
	int ret;

	if (memchr(e->name, '\0', sizeof(e->name)) == NULL || e->name[0] == '\0') {
		nb_err("image: tensor %u has no valid name", i);
		return -NB_EFORMAT;
	}
	ret = nb_tensor_bytes(e->type, e->ndim, e->shape, &want);
	if (ret == -NB_ENOTSUP) {
		nb_err("image: tensor '%s' has unknown type %u", e->name, e->type);
		return ret;
	}
	if (ret) {
		nb_err("image: tensor '%s' has an invalid shape (ndim %u)", e->name, e->ndim);
		return -NB_EFORMAT;
	}
	for (uint32_t d = e->ndim; d < 4; d++) {
		if (e->shape[d] != 0) {
			nb_err("image: tensor '%s': unused dimension %u is not 0", e->name, d);
			return -NB_EFORMAT;
		}
	}
	if (e->size != want || e->layout != 0 || e->reserved != 0) {
		nb_err("image: tensor '%s' is %llu bytes (layout %u), its shape needs %llu",
		       e->name, (unsigned long long)e->size, e->layout, (unsigned long long)want);
		return -NB_EFORMAT;
	}
	if (e->offset % NB_IMAGE_TENSOR_ALIGN || __builtin_add_overflow(e->offset, e->size, &end) ||
	    end > data_size) {
		nb_err("image: tensor '%s' at %llu+%llu lies outside the data section", e->name,
		       (unsigned long long)e->offset, (unsigned long long)e->size);
		return -NB_ERANGE;
	}
	return 0;
}

static int by_name(const void *a, const void *b)
{
	const struct nb_image_tensor *x = *(const struct nb_image_tensor *const *)a;
	const struct nb_image_tensor *y = *(const struct nb_image_tensor *const *)b;

	return strcmp(x->name, y->name);
}

static int by_offset(const void *a, const void *b)
{
	const struct nb_image_tensor *x = *(const struct nb_image_tensor *const *)a;
	const struct nb_image_tensor *y = *(const struct nb_image_tensor *const *)b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* No name twice and no byte in two tensors (a tensor written through
 * another's bytes is corruption, not sharing). Sorted, each entry needs
 * comparing with its neighbour only: 65536 entries stay fast. Every range
 * was checked to lie inside the data section. */
static int check_distinct(const struct nb_image_tensor *e, uint32_t n)
{
	const struct nb_image_tensor **by = malloc(n * sizeof(*by));
	int ret = 0;

	if (!by)
		return -NB_ENOMEM;
	for (uint32_t i = 0; i < n; i++)
		by[i] = &e[i];
	qsort(by, n, sizeof(*by), by_name);
	for (uint32_t i = 1; i < n && !ret; i++) {
		if (strcmp(by[i - 1]->name, by[i]->name) == 0) {
			nb_err("image: tensor '%s' appears twice", by[i]->name);
			ret = -NB_EFORMAT;
		}
	}
	if (!ret)
		qsort(by, n, sizeof(*by), by_offset);
	for (uint32_t i = 1; i < n && !ret; i++) {
		if (by[i]->offset < by[i - 1]->offset + by[i - 1]->size) {
			nb_err("image: tensors '%s' and '%s' overlap", by[i - 1]->name, by[i]->name);
			ret = -NB_EFORMAT;
		}
	}
	free(by);
	return ret;
}

static int load_tensors(struct nb_image *img, const struct nb_image_section *table,
			const struct nb_image_section *data)
{
	uint64_t n = table->size / sizeof(struct nb_image_tensor);

	if (table->size % sizeof(struct nb_image_tensor) || n == 0 || n > MAX_TENSORS) {
		nb_err("image: tensor table of %llu bytes is not 1..%u entries",
		       (unsigned long long)table->size, MAX_TENSORS);
		return -NB_EFORMAT;
	}
	img->entries = (const void *)(img->map + table->offset);
	img->n_tensors = (uint32_t)n;
	img->tensors = calloc(n, sizeof(*img->tensors));
	if (!img->tensors)
		return -NB_ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		const struct nb_image_tensor *e = &img->entries[i];
		struct nb_tensor *t = &img->tensors[i];
		int ret = check_tensor(e, i, data->size);

		if (ret)
			return ret;
		t->name = e->name;
		t->type = e->type;
		t->ndim = e->ndim;
		memcpy(t->shape, e->shape, sizeof(t->shape));
		t->data = img->map + data->offset + e->offset;
		t->size = e->size;
	}
	return check_distinct(img->entries, img->n_tensors);
}

/* Every record inside the section; keys unique is not required (first wins). */
static int check_meta(const uint8_t *p, size_t size)
{
	size_t off = 0;

	while (off < size) {
		struct nb_image_meta_record r;
		uint64_t len;

		if (size - off < sizeof(r)) {
			nb_err("image: meta record at %zu is truncated", off);
			return -NB_EFORMAT;
		}
		memcpy(&r, p + off, sizeof(r));
		len = (uint64_t)sizeof(r) + r.key_len + r.value_len;
		len = (len + 3) & ~3ull;
		if (r.key_len == 0 || len > size - off) {
			nb_err("image: meta record at %zu (key %u, value %u bytes) overruns the section",
			       off, r.key_len, r.value_len);
			return -NB_EFORMAT;
		}
		off += len;
	}
	return 0;
}

static int load_golden(struct nb_image *img, const struct nb_image_section *s)
{
	const struct nb_image_golden *g;
	uint64_t n;

	if (!s)
		return 0;
	g = (const void *)(img->map + s->offset);
	if (s->size < sizeof(*g))
		goto bad;
	n = (uint64_t)g->n_prompt + g->n_expected;
	if (g->n_prompt == 0 || s->size != sizeof(*g) + n * sizeof(int32_t))
		goto bad;
	for (uint64_t i = 0; i < n; i++) {
		if (g->ids[i] < 0 || (uint32_t)g->ids[i] >= img->hp.vocab_size) {
			nb_err("image: golden vector id %d is outside the vocabulary", g->ids[i]);
			return -NB_EFORMAT;
		}
	}
	img->golden = g;
	return 0;
bad:
	nb_err("image: golden vector section of %llu bytes is malformed",
	       (unsigned long long)s->size);
	return -NB_EFORMAT;
}

static int validate(struct nb_image *img)
{
	const struct nb_image_header *h = (const void *)img->map;
	const struct nb_image_section *hp, *meta, *tok, *table, *data, *trailer;
	int ret;

	ret = check_header(h, img->map_size);
	if (!ret)
		ret = check_sections(h, img->map_size);
	if (ret)
		return ret;
	img->hdr = h;
	hp = need_section(h, NB_SECTION_HPARAMS, "hparams");
	meta = need_section(h, NB_SECTION_META, "meta");
	tok = need_section(h, NB_SECTION_TOKENIZER, "tokenizer");
	table = need_section(h, NB_SECTION_TENSORS, "tensor table");
	data = need_section(h, NB_SECTION_DATA, "data");
	trailer = need_section(h, NB_SECTION_TRAILER, "signature trailer");
	if (!hp || !meta || !tok || !table || !data || !trailer)
		return -NB_EFORMAT;
	if (trailer->size != NB_IMAGE_TRAILER_SIZE ||
	    trailer->offset + trailer->size != img->map_size) {
		nb_err("image: the signature trailer must be the last %u bytes",
		       NB_IMAGE_TRAILER_SIZE);
		return -NB_EFORMAT;
	}
	img->trailer = img->map + trailer->offset;
	ret = load_hparams(img, hp);
	if (!ret)
		ret = check_meta(img->map + meta->offset, meta->size);
	if (!ret)
		ret = load_tensors(img, table, data);
	if (!ret)
		ret = load_golden(img, find_section(h, NB_SECTION_GOLDEN));
	if (ret)
		return ret;
	img->meta = img->map + meta->offset;
	img->meta_size = meta->size;
	img->tok_blob = img->map + tok->offset;
	img->tok_size = tok->size;
	return 0;
}

int nb_image_open_mem(struct nb_image *img, const void *buf, size_t size)
{
	int ret;

	nb_image_init(img);
	img->map = buf;
	img->map_size = size;
	ret = validate(img);
	if (ret) {
		free(img->tensors);
		nb_image_init(img);
	}
	return ret;
}

static void advise(struct nb_image *img, const char *path, unsigned flags)
{
	void *p = (void *)img->map;

	if ((flags & NB_IMAGE_HUGEPAGE) && madvise(p, img->map_size, MADV_HUGEPAGE) != 0)
		nb_dbg("%s: MADV_HUGEPAGE: %s", path, strerror(errno));
	if ((flags & NB_IMAGE_MLOCK) && mlock(p, img->map_size) != 0)
		nb_warn("%s: mlock: %s (weights may be paged out)", path, strerror(errno));
}

int nb_image_open(struct nb_image *img, const char *path, unsigned flags)
{
	struct stat st;
	void *map;
	int ret;

	nb_image_init(img);
	img->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (img->fd < 0) {
		nb_err("%s: %s", path, strerror(errno));
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	}
	if (fstat(img->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		nb_err("%s: not a regular file", path);
		ret = -NB_EIO;
		goto fail_fd;
	}
	if ((uint64_t)st.st_size < sizeof(struct nb_image_header)) {
		nb_err("%s: %lld bytes is too short for a model image", path, (long long)st.st_size);
		ret = -NB_EFORMAT;
		goto fail_fd;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ,
		   MAP_PRIVATE | ((flags & NB_IMAGE_POPULATE) ? MAP_POPULATE : 0), img->fd, 0);
	if (map == MAP_FAILED) {
		nb_err("%s: mmap: %s", path, strerror(errno));
		ret = -NB_EIO;
		goto fail_fd;
	}
	img->map = map;
	img->map_size = (size_t)st.st_size;
	ret = validate(img);
	if (ret) {
		nb_err("%s: not a valid model image (%s)", path, nb_strerror(ret));
		goto fail_map;
	}
	advise(img, path, flags);
	return 0;

fail_map:
	free(img->tensors);
	munmap(map, img->map_size);
fail_fd:
	close(img->fd);
	nb_image_init(img);
	return ret;
}

void nb_image_close(struct nb_image *img)
{
	if (img->fd >= 0) {
		munmap((void *)img->map, img->map_size);
		close(img->fd);
	}
	free(img->tensors);
	nb_image_init(img);
}

int nb_image_meta(const struct nb_image *img, const char *key, const char **value, size_t *len)
{
	size_t off = 0, klen = strlen(key);

	while (off < img->meta_size) {
		struct nb_image_meta_record r;
		const char *k;

		memcpy(&r, img->meta + off, sizeof(r));
		k = (const char *)img->meta + off + sizeof(r);
		if (r.key_len == klen && memcmp(k, key, klen) == 0) {
			*value = k + r.key_len;
			*len = r.value_len;
			return 0;
		}
		off += (sizeof(r) + r.key_len + r.value_len + 3) & ~(size_t)3;
	}
	return -NB_ENOENT;
}

const struct nb_tensor *nb_image_tensor(const struct nb_image *img, const char *name)
{
	for (uint32_t i = 0; i < img->n_tensors; i++)
		if (strcmp(img->tensors[i].name, name) == 0)
			return &img->tensors[i];
	return NULL;
}
