#include "tools/import/image_write.h"
#include "firmware/image.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t page_up(uint64_t x)
{
	return (x + NB_IMAGE_PAGE - 1) & ~(uint64_t)(NB_IMAGE_PAGE - 1);
}

static uint64_t tensor_up(uint64_t x)
{
	return (x + NB_IMAGE_TENSOR_ALIGN - 1) & ~(uint64_t)(NB_IMAGE_TENSOR_ALIGN - 1);
}

/* pwrite all of it, or fail naming the file. */
static int put(int fd, const char *path, uint64_t off, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			nb_err("%s: write: %s", path, strerror(errno));
			return -NB_EIO;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int build_meta(const struct nb_image_spec *s, uint8_t **out, size_t *len)
{
	size_t total = 0, off = 0;
	uint8_t *buf;

	for (size_t i = 0; i < s->n_meta; i++)
		total += (8 + strlen(s->meta[i].key) + strlen(s->meta[i].value) + 3) & ~(size_t)3;
	buf = calloc(1, total ? total : 1);
	if (!buf)
		return -NB_ENOMEM;
	for (size_t i = 0; i < s->n_meta; i++) {
		struct nb_image_meta_record r = { (uint32_t)strlen(s->meta[i].key),
						  (uint32_t)strlen(s->meta[i].value) };
		memcpy(buf + off, &r, sizeof(r));
		memcpy(buf + off + 8, s->meta[i].key, r.key_len);
		memcpy(buf + off + 8 + r.key_len, s->meta[i].value, r.value_len);
		off += (8 + r.key_len + r.value_len + 3) & ~(size_t)3;
	}
	*out = buf;
	*len = total;
	return 0;
}

static void fill_hparams(struct nb_image_hparams *d, const struct nb_hparams *hp)
{
	memset(d, 0, sizeof(*d));
	d->arch = hp->arch;
	d->dim = hp->dim;
	d->hidden_dim = hp->hidden_dim;
	d->n_layers = hp->n_layers;
	d->n_heads = hp->n_heads;
	d->n_kv_heads = hp->n_kv_heads;
	d->head_dim = hp->head_dim;
	d->vocab_size = hp->vocab_size;
	d->seq_len = hp->seq_len;
	d->tied_embeddings = hp->tied_embeddings;
	d->norm_eps = hp->norm_eps;
	d->rope_theta = hp->rope_theta;
	d->rope_scaling = hp->rope_scaling;
	d->rope_factor = hp->rope_factor;
	d->rope_low_freq_factor = hp->rope_low_freq_factor;
	d->rope_high_freq_factor = hp->rope_high_freq_factor;
	d->rope_orig_ctx = hp->rope_orig_ctx;
	d->features = hp->features;
	d->activation = hp->activation;
	d->norm_offset = hp->norm_offset;
	d->embed_scale = hp->embed_scale;
}

static int fill_entries(const struct nb_image_spec *s, struct nb_image_tensor *e,
			uint64_t *data_size)
{
	uint64_t off = 0;

	for (size_t i = 0; i < s->n_tensors; i++) {
		const struct nb_tensor *t = &s->tensors[i];
		uint64_t want;

		if (strlen(t->name) >= sizeof(e[i].name) ||
		    nb_tensor_bytes(t->type, t->ndim, t->shape, &want) || want != t->size) {
			nb_err("image: cannot store tensor '%s' (name, type or size)", t->name);
			return -NB_EINVAL;
		}
		memset(&e[i], 0, sizeof(e[i]));
		strcpy(e[i].name, t->name);
		e[i].type = t->type;
		e[i].ndim = t->ndim;
		memcpy(e[i].shape, t->shape, sizeof(uint64_t) * t->ndim);
		e[i].offset = off;
		e[i].size = t->size;
		off = tensor_up(off + t->size);
	}
	*data_size = off;
	return 0;
}

struct layout {
	struct nb_image_header hdr;
	uint64_t cursor;
};

static struct nb_image_section *add_section(struct layout *l, uint32_t kind, uint64_t size)
{
	struct nb_image_section *s = &l->hdr.sections[l->hdr.n_sections++];

	s->kind = kind;
	s->offset = l->cursor;
	s->size = size;
	l->cursor = page_up(l->cursor + size);
	return s;
}

static int fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	int fd, ret = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0)
		ret = -NB_EIO;
	if (fd >= 0)
		close(fd);
	return ret;
}

static int write_body(int fd, const char *tmp, const struct nb_image_spec *s,
		      const struct layout *l, const struct nb_image_tensor *entries,
		      const struct nb_image_section *const sec[7], const uint8_t *meta,
		      const uint8_t *tok, const int32_t *golden, size_t golden_len)
{
	struct nb_image_hparams hp;
	uint8_t trailer[NB_IMAGE_TRAILER_SIZE] = { 0 };
	int ret;

	fill_hparams(&hp, s->hp);
	ret = put(fd, tmp, 0, &l->hdr, sizeof(l->hdr));
	if (!ret)
		ret = put(fd, tmp, sec[0]->offset, &hp, sizeof(hp));
	if (!ret)
		ret = put(fd, tmp, sec[1]->offset, meta, sec[1]->size);
	if (!ret)
		ret = put(fd, tmp, sec[2]->offset, tok, sec[2]->size);
	if (!ret)
		ret = put(fd, tmp, sec[3]->offset, entries, sec[3]->size);
	if (!ret && sec[4])
		ret = put(fd, tmp, sec[4]->offset, golden, golden_len);
	for (size_t i = 0; !ret && i < s->n_tensors; i++)
		ret = put(fd, tmp, sec[5]->offset + entries[i].offset, s->tensors[i].data,
			  s->tensors[i].size);
	if (!ret)
		ret = put(fd, tmp, sec[6]->offset, trailer, sizeof(trailer));
	return ret;
}

static int32_t *golden_ids(const struct nb_image_spec *s, size_t *bytes)
{
	size_t n = (size_t)s->n_golden_prompt + s->n_golden_expected;
	int32_t *g = malloc(8 + n * sizeof(int32_t));

	if (!g)
		return NULL;
	g[0] = (int32_t)s->n_golden_prompt;
	g[1] = (int32_t)s->n_golden_expected;
	memcpy(g + 2, s->golden_prompt, s->n_golden_prompt * sizeof(int32_t));
	memcpy(g + 2 + s->n_golden_prompt, s->golden_expected,
	       s->n_golden_expected * sizeof(int32_t));
	*bytes = 8 + n * sizeof(int32_t);
	return g;
}

int nb_image_write(const char *path, const struct nb_image_spec *s)
{
	const struct nb_image_section *sec[7] = { 0 };
	struct nb_image_tensor *entries = NULL;
	uint8_t *meta = NULL, *tok = NULL;
	int32_t *golden = NULL;
	size_t meta_len, tok_len, golden_len = 0;
	uint64_t data_size;
	struct layout l;
	char tmp[PATH_MAX];
	int fd = -1, ret;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
		return -NB_EINVAL;
	entries = calloc(s->n_tensors ? s->n_tensors : 1, sizeof(*entries));
	ret = entries ? fill_entries(s, entries, &data_size) : -NB_ENOMEM;
	if (!ret)
		ret = build_meta(s, &meta, &meta_len);
	if (!ret)
		ret = nb_tok_spec_write(s->tok, &tok, &tok_len);
	if (!ret && s->golden_prompt && !(golden = golden_ids(s, &golden_len)))
		ret = -NB_ENOMEM;
	if (ret)
		goto out;

	memset(&l, 0, sizeof(l));
	memcpy(l.hdr.magic, NB_IMAGE_MAGIC, 8);
	l.hdr.version = NB_IMAGE_VERSION;
	l.hdr.header_size = sizeof(l.hdr);
	l.hdr.model_version = s->model_version;
	l.cursor = page_up(sizeof(l.hdr));
	sec[0] = add_section(&l, NB_SECTION_HPARAMS, sizeof(struct nb_image_hparams));
	sec[1] = add_section(&l, NB_SECTION_META, meta_len);
	sec[2] = add_section(&l, NB_SECTION_TOKENIZER, tok_len);
	sec[3] = add_section(&l, NB_SECTION_TENSORS, s->n_tensors * sizeof(*entries));
	if (golden)
		sec[4] = add_section(&l, NB_SECTION_GOLDEN, golden_len);
	sec[5] = add_section(&l, NB_SECTION_DATA, data_size);
	sec[6] = add_section(&l, NB_SECTION_TRAILER, NB_IMAGE_TRAILER_SIZE);
	l.hdr.file_size = sec[6]->offset + NB_IMAGE_TRAILER_SIZE;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		nb_err("%s: cannot create %s: %s", path, tmp, strerror(errno));
		ret = -NB_EIO;
		goto out;
	}
	ret = write_body(fd, tmp, s, &l, entries, sec, meta, tok, golden, golden_len);
	if (!ret && (ftruncate(fd, (off_t)l.hdr.file_size) != 0 || fsync(fd) != 0)) {
		nb_err("%s: %s", tmp, strerror(errno));
		ret = -NB_EIO;
	}
	/* The page cache holds what write() left: small pages, which the
	 * loader's mapping would then use, and decode streams the weights
	 * markedly slower through small pages. Dropped, the image comes back
	 * on first load through readahead, in huge pages where the file
	 * system has them. */
	if (!ret)
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	if (close(fd) != 0 && !ret)
		ret = -NB_EIO;
	fd = -1;
	if (!ret && rename(tmp, path) != 0) {
		nb_err("%s: rename: %s", path, strerror(errno));
		ret = -NB_EIO;
	}
	if (!ret)
		ret = fsync_dir_of(path);
out:
	if (ret)
		unlink(tmp);
	free(entries);
	free(meta);
	free(tok);
	free(golden);
	return ret;
}
