/* The two halves of making an image (tools/import/convert.h), shared by
 * `nibble convert` and `nibble quantize`: load a source (llama2.c, HF
 * safetensors, GGUF, float32 image) into a checkpoint; write an image with
 * its manifest and golden vector. */
#include "firmware/image.h"
#include "runtime/base/err.h"
#include "runtime/model/llm.h"
#include "runtime/base/log.h"
#include "tools/import/convert.h"
#include "tools/import/image_write.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_TEXT_FILE (1u << 20)
#define L2C_MAGIC_V1 0x616b3432u /* "ak42": llama2.c's versioned header */

enum src_format { FMT_LLAMA2C, FMT_HF, FMT_GGUF, FMT_NIB };

static const char *const fmt_names[] = { "llama2.c", "HF safetensors", "GGUF", "nibble image" };

/* A legacy llama2.c checkpoint starts with seven int32 hyper-parameters
 * (the vocabulary negative for an unshared classifier). Text and other
 * files give values far out of these ranges: 4 printable bytes are at
 * least 0x20202020. */
static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static bool looks_like_llama2c(const uint8_t *h, size_t n)
{
	static const int32_t max[7] = { 1 << 16, 1 << 20, 1 << 10, 1 << 10, 1 << 10, 1 << 24,
					1 << 24 };

	if (n >= 4 && le32(h) == L2C_MAGIC_V1)
		return true;
	if (n < 28)
		return false;
	for (int i = 0; i < 7; i++) {
		int32_t v = (int32_t)le32(h + 4 * i);

		if (i == 5 && v < 0 && v > -max[5])
			v = -v;
		if (v <= 0 || v > max[i])
			return false;
	}
	return true;
}

static int detect_format(const char *path, const struct nb_src_opts *o, enum src_format *fmt)
{
	static const char *const forced_names[] = { "llama2c", "hf", "gguf", "nib" };
	struct stat st;
	uint8_t head[28] = { 0 };
	size_t n;
	FILE *f;

	if (o->format) {
		for (size_t i = 0; i < sizeof(forced_names) / sizeof(forced_names[0]); i++) {
			if (strcmp(o->format, forced_names[i]) == 0) {
				*fmt = (enum src_format)i;
				return 0;
			}
		}
		nb_err("%s: --format: '%s' is not one of llama2c, hf, gguf, nib", o->applet,
		       o->format);
		return -NB_EINVAL;
	}
	if (stat(path, &st) != 0) {
		nb_err("%s: %s: %s", o->applet, path, strerror(errno));
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	}
	if (S_ISDIR(st.st_mode)) {
		*fmt = FMT_HF;
		return 0;
	}
	f = fopen(path, "rb");
	if (!f) {
		nb_err("%s: %s: %s", o->applet, path, strerror(errno));
		return -NB_EIO;
	}
	n = fread(head, 1, sizeof(head), f);
	fclose(f);
	if (n >= 8 && memcmp(head, NB_IMAGE_MAGIC, 8) == 0)
		*fmt = FMT_NIB;
	else if (n >= 4 && memcmp(head, "GGUF", 4) == 0)
		*fmt = FMT_GGUF;
	else if (looks_like_llama2c(head, n))
		*fmt = FMT_LLAMA2C;
	else {
		nb_err("%s: %s: not a model: no llama2.c checkpoint, GGUF file, nibble image or "
		       "HF directory (--format forces one)", o->applet, path);
		return -NB_EFORMAT;
	}
	return 0;
}

/* llama2.c checkpoints carry no tokenizer: --tokenizer, else tokenizer.bin
 * or tok<N>.bin beside the checkpoint. */
static int find_tokenizer(const char *applet, const char *src, char *out, size_t cap)
{
	static const char *const names[] = { "tokenizer.bin", "tok512.bin", "tok32000.bin" };
	char dir[PATH_MAX];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s", src);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(out, cap, "%s/%s", dirname(dir), names[i]);
		snprintf(dir, sizeof(dir), "%s", src);
		if (stat(out, &st) == 0)
			return 0;
	}
	nb_err("%s: %s: a llama2.c checkpoint needs its tokenizer: no tokenizer.bin, tok512.bin "
	       "or tok32000.bin beside it (give one with --tokenizer)", applet, src);
	return -NB_ENOENT;
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = malloc(MAX_TEXT_FILE + 1);
	n = buf ? fread(buf, 1, MAX_TEXT_FILE, f) : 0;
	fclose(f);
	if (buf)
		buf[n] = '\0';
	return buf;
}

/* --license FILE, else LICENSE beside (or inside) the source. */
static char *find_license(const char *src, const struct nb_src_opts *o, enum src_format fmt)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];

	if (o->license_file)
		return read_text(o->license_file);
	snprintf(dir, sizeof(dir), "%s", src);
	snprintf(path, sizeof(path), "%s/LICENSE", fmt == FMT_HF ? src : dirname(dir));
	return read_text(path);
}

/* A META value as a new NUL-terminated string, NULL if absent. */
static char *meta_dup(const struct nb_image *img, const char *key)
{
	const char *v;
	size_t len;
	char *s;

	if (nb_image_meta(img, key, &v, &len))
		return NULL;
	s = malloc(len + 1);
	if (s) {
		memcpy(s, v, len);
		s[len] = '\0';
	}
	return s;
}

static int copy_image_tensors(struct nb_ckpt *c, const struct nb_image *img, const char *path)
{
	for (uint32_t i = 0; i < img->n_tensors; i++) {
		const struct nb_tensor *t = &img->tensors[i];
		float *data;
		int ret;

		if (t->type != NB_DTYPE_F32) {
			nb_err("%s: tensor %s is %s: the source must be a float32 image", path,
			       t->name, nb_dtype_name(t->type));
			return -NB_ENOTSUP;
		}
		data = malloc(t->size ? t->size : 1);
		if (!data)
			return -NB_ENOMEM;
		memcpy(data, t->data, t->size);
		ret = nb_ckpt_add(c, t->name, t->ndim, t->shape, data);
		if (ret)
			return ret;
	}
	return 0;
}

/* A float32 image back into a checkpoint: re-quantizing an image needs no
 * original checkpoint. */
static int import_image(struct nb_ckpt *c, const char *path, uint64_t *model_version)
{
	struct nb_image img;
	char *name;
	int ret;

	nb_image_init(&img);
	ret = nb_image_open(&img, path, 0);
	if (ret)
		return ret;
	c->hp = img.hp;
	*model_version = img.hdr->model_version;
	ret = nb_tok_spec_parse(&c->tok, img.tok_blob, img.tok_size);
	if (!ret)
		ret = copy_image_tensors(c, &img, path);
	name = meta_dup(&img, "name");
	if (name)
		snprintf(c->name, sizeof(c->name), "%s", name);
	free(name);
	c->license = meta_dup(&img, "license");
	c->chat_template = meta_dup(&img, "chat_template");
	nb_image_close(&img);
	return ret;
}

static int import(struct nb_ckpt *c, const char *src, const struct nb_src_opts *o,
		  enum src_format fmt, uint64_t *model_version)
{
	char tok[PATH_MAX];

	switch (fmt) {
	case FMT_HF:
		return nb_import_hf(c, src);
	case FMT_GGUF:
		return nb_import_gguf(c, src);
	case FMT_NIB:
		return import_image(c, src, model_version);
	default:
		if (o->tokenizer)
			return nb_import_llama2c(c, src, o->tokenizer);
		if (find_tokenizer(o->applet, src, tok, sizeof(tok)))
			return -NB_ENOENT;
		return nb_import_llama2c(c, src, tok);
	}
}

int nb_src_load(struct nb_ckpt *c, const char *path, const struct nb_src_opts *o,
		struct nb_src_info *info)
{
	enum src_format fmt;
	char *license;
	int ret;

	info->model_version = 0;
	ret = detect_format(path, o, &fmt);
	if (!ret)
		ret = import(c, path, o, fmt, &info->model_version);
	if (!ret)
		ret = nb_ckpt_validate(c);
	if (ret)
		return ret;
	snprintf(info->desc, sizeof(info->desc), "%s (%s)", path, fmt_names[fmt]);
	license = find_license(path, o, fmt);
	if (license) {
		free(c->license);
		c->license = license;
	}
	return 0;
}

int nb_ckpt_views(const struct nb_ckpt *c, struct nb_tensor **out)
{
	struct nb_tensor *v = calloc(c->n_tensors ? c->n_tensors : 1, sizeof(*v));

	if (!v)
		return -NB_ENOMEM;
	for (size_t i = 0; i < c->n_tensors; i++) {
		const struct nb_ckpt_tensor *t = &c->tensors[i];
		uint64_t n = 1;
		for (uint32_t d = 0; d < t->ndim; d++)
			n *= t->shape[d];
		v[i].name = t->name;
		v[i].type = NB_DTYPE_F32;
		v[i].ndim = t->ndim;
		memcpy(v[i].shape, t->shape, sizeof(v[i].shape));
		v[i].data = t->data;
		v[i].size = n * sizeof(float);
	}
	*out = v;
	return 0;
}

/* The golden vector: BOS + prompt, greedy continuation, by this very model. */
static int make_golden(const struct nb_out_spec *o, int32_t **ids, size_t *n_prompt)
{
	const struct nb_ckpt *c = o->c;
	size_t len = strlen(o->golden_prompt), n = 0;
	struct nb_model m;
	struct nb_tok *tok = NULL;
	int ret;

	nb_model_init(&m);
	*ids = NULL;
	ret = nb_tok_open(&tok, &c->tok);
	if (!ret)
		ret = nb_tok_encode_alloc(tok, o->golden_prompt, len, true, o->golden_steps, ids, &n);
	if (!ret)
		ret = nb_model_bind(&m, &c->hp, o->tensors, o->n_tensors);
	if (!ret && n + o->golden_steps > c->hp.seq_len)
		ret = -NB_ERANGE;
	if (!ret)
		ret = nb_llm_greedy(&m, *ids, (uint32_t)n, o->golden_steps, *ids + n);
	if (ret)
		nb_err("%s: cannot compute the golden vector (%s)", o->applet, nb_strerror(ret));
	*n_prompt = n;
	nb_model_free(&m);
	nb_tok_close(tok);
	return ret;
}

static const char *base_of(const char *path, char *buf, size_t cap)
{
	char tmp[PATH_MAX], *dot;

	snprintf(tmp, sizeof(tmp), "%s", path);
	snprintf(buf, cap, "%s", basename(tmp));
	dot = strrchr(buf, '.');
	if (dot && dot != buf)
		*dot = '\0';
	return buf;
}

int nb_out_write(const struct nb_out_spec *o)
{
	const struct nb_ckpt *c = o->c;
	char name[128];
	int32_t *golden = NULL;
	size_t n_prompt = 0;
	struct nb_image_kv meta[6];
	size_t n_meta = 0;
	int ret;

	ret = make_golden(o, &golden, &n_prompt);
	if (ret)
		goto out;
	meta[n_meta++] = (struct nb_image_kv){ "name", o->name ? o->name
					       : c->name[0] ? c->name : base_of(o->src_path, name, sizeof(name)) };
	meta[n_meta++] = (struct nb_image_kv){ "source", o->source };
	meta[n_meta++] = (struct nb_image_kv){ "quantization", o->quantization };
	meta[n_meta++] = (struct nb_image_kv){ "created_by", o->creator ? o->creator : o->applet };
	meta[n_meta++] = (struct nb_image_kv){ "license", c->license ? c->license : "unknown" };
	if (c->chat_template)
		meta[n_meta++] = (struct nb_image_kv){ "chat_template", c->chat_template };
	ret = nb_image_write(o->path, &(struct nb_image_spec){
		.hp = &c->hp, .tok = &c->tok, .model_version = o->model_version,
		.meta = meta, .n_meta = n_meta, .tensors = o->tensors, .n_tensors = o->n_tensors,
		.golden_prompt = golden, .n_golden_prompt = (uint32_t)n_prompt,
		.golden_expected = golden + n_prompt, .n_golden_expected = o->golden_steps });
out:
	free(golden);
	return ret;
}

int nb_out_check(const char *applet, const char *path)
{
	char buf[PATH_MAX], *dir;
	struct stat st;

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
		nb_err("%s: %s: path too long", applet, path);
		return -NB_EINVAL;
	}
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		nb_err("%s: %s: is a directory", applet, path);
		return -NB_EINVAL;
	}
	dir = dirname(buf);
	errno = 0;
	if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode))
		errno = ENOTDIR;
	if (errno || access(dir, W_OK | X_OK) != 0) {
		nb_err("%s: %s: cannot write in %s: %s", applet, path, dir, strerror(errno));
		return -NB_EIO;
	}
	return 0;
}
