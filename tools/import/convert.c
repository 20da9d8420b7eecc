/* `nibble convert`: import a checkpoint (llama2.c, HF safetensors, GGUF)
 * and write a float32 model image with its manifest and golden vector. The
 * load and write halves (tools/import/convert.h) are shared with `nibble quantize`. */
#include "firmware/image.h"
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/model/llm.h"
#include "runtime/base/log.h"
#include "runtime/base/version.h"
#include "tools/import/convert.h"
#include "tools/import/image_write.h"

#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_TEXT_FILE (1u << 20)

struct convert_opts {
	const char *src, *out, *name;
	const char *golden_prompt;
	uint32_t golden_steps;
	uint64_t model_version;
	struct nb_src_opts src_opts;
};

enum src_format { FMT_LLAMA2C, FMT_HF, FMT_GGUF, FMT_NIB };

static const char *const fmt_names[] = { "llama2.c", "HF safetensors", "GGUF", "nibble image" };

static int detect_format(const char *path, const struct nb_src_opts *o, enum src_format *fmt)
{
	static const char *const forced_names[] = { "llama2c", "hf", "gguf", "nib" };
	struct stat st;
	char magic[8] = { 0 };
	FILE *f;

	if (o->format) {
		for (size_t i = 0; i < sizeof(forced_names) / sizeof(forced_names[0]); i++) {
			if (strcmp(o->format, forced_names[i]) == 0) {
				*fmt = (enum src_format)i;
				return 0;
			}
		}
		nb_err("%s: unknown --format '%s' (llama2c, hf, gguf, nib)", o->applet, o->format);
		return -NB_EINVAL;
	}
	if (stat(path, &st) != 0) {
		nb_err("%s: %s: no such file or directory", o->applet, path);
		return -NB_ENOENT;
	}
	if (S_ISDIR(st.st_mode)) {
		*fmt = FMT_HF;
		return 0;
	}
	f = fopen(path, "rb");
	if (!f || fread(magic, 1, 4, f) != 4) {
		nb_err("%s: %s: cannot read", o->applet, path);
		if (f)
			fclose(f);
		return -NB_EIO;
	}
	if (fread(magic + 4, 1, 4, f) != 4)
		memset(magic + 4, 0, 4);
	fclose(f);
	if (memcmp(magic, NB_IMAGE_MAGIC, 8) == 0)
		*fmt = FMT_NIB;
	else
		*fmt = memcmp(magic, "GGUF", 4) == 0 ? FMT_GGUF : FMT_LLAMA2C;
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
	nb_err("%s: %s is a llama2.c checkpoint: give its tokenizer with --tokenizer", applet, src);
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
	char name[128], creator[64];
	int32_t *golden = NULL;
	size_t n_prompt = 0;
	struct nb_image_kv meta[6];
	size_t n_meta = 0;
	int ret;

	ret = make_golden(o, &golden, &n_prompt);
	if (ret)
		goto out;
	snprintf(creator, sizeof(creator), "nibble %s %s", nb_version_string(), o->applet);
	meta[n_meta++] = (struct nb_image_kv){ "name", o->name ? o->name
					       : c->name[0] ? c->name : base_of(o->src_path, name, sizeof(name)) };
	meta[n_meta++] = (struct nb_image_kv){ "source", o->source };
	meta[n_meta++] = (struct nb_image_kv){ "quantization", o->quantization };
	meta[n_meta++] = (struct nb_image_kv){ "created_by", creator };
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

static int parse_opts(struct convert_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' }, { "tokenizer", required_argument, NULL, 't' },
		{ "name", required_argument, NULL, 'N' },   { "license", required_argument, NULL, 'L' },
		{ "format", required_argument, NULL, 'f' },
		{ "model-version", required_argument, NULL, 'V' },
		{ "golden-prompt", required_argument, NULL, 'g' },
		{ "golden-steps", required_argument, NULL, 's' }, { NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "o:t:f:", opts, NULL)) != -1) {
		switch (c) {
		case 'o': o->out = optarg; break;
		case 't': o->src_opts.tokenizer = optarg; break;
		case 'N': o->name = optarg; break;
		case 'L': o->src_opts.license_file = optarg; break;
		case 'f': o->src_opts.format = optarg; break;
		case 'g': o->golden_prompt = optarg; break;
		case 'V':
			o->model_version = strtoull(optarg, &end, 10);
			if (*end || optarg[0] == '-')
				return -NB_EINVAL;
			break;
		case 's':
			o->golden_steps = (uint32_t)strtoul(optarg, &end, 10);
			if (*end || o->golden_steps == 0 || o->golden_steps > 4096)
				return -NB_EINVAL;
			break;
		default: return -NB_EINVAL;
		}
	}
	if (optind + 1 != argc || !o->out)
		return -NB_EINVAL;
	o->src = argv[optind];
	return 0;
}

static int convert_main(int argc, char **argv)
{
	struct convert_opts o = { .golden_prompt = "Once upon a time", .golden_steps = 16,
				  .model_version = 1, .src_opts = { .applet = "convert" } };
	struct nb_tensor *views = NULL;
	struct nb_src_info *info = malloc(sizeof(*info));
	struct nb_ckpt c;
	int ret;

	if (parse_opts(&o, argc, argv)) {
		free(info);
		fprintf(stderr, "%s", nb_applet_convert.usage);
		return NB_EXIT_USAGE;
	}
	nb_ckpt_init(&c);
	ret = info ? nb_src_load(&c, o.src, &o.src_opts, info) : -NB_ENOMEM;
	if (!ret)
		ret = nb_ckpt_views(&c, &views);
	if (!ret)
		ret = nb_out_write(&(struct nb_out_spec){
			.path = o.out, .applet = "convert", .c = &c, .tensors = views,
			.n_tensors = c.n_tensors, .src_path = o.src, .name = o.name,
			.source = info->desc, .quantization = "f32",
			.golden_prompt = o.golden_prompt, .golden_steps = o.golden_steps,
			.model_version = o.model_version });
	if (ret)
		nb_err("convert: %s: %s", o.src, nb_strerror(ret));
	else
		nb_info("convert: wrote %s (%zu tensors)", o.out, c.n_tensors);
	free(views);
	free(info);
	nb_ckpt_free(&c);
	return ret ? NB_EXIT_FAIL : NB_EXIT_OK;
}

const struct nb_applet nb_applet_convert = {
	.name = "convert",
	.summary = "import llama2.c / HF safetensors / GGUF into a model image",
	.usage = "usage: nibble convert SRC -o OUT.nib [options]\n\n"
		 "SRC is a llama2.c checkpoint (.bin), a HuggingFace directory (config.json,\n"
		 "model.safetensors or a sharded index, tokenizer.model or tokenizer.json), a\n"
		 "GGUF file (llama architecture; F32, F16, Q8_0, Q4_0 tensors) or a float32\n"
		 "image. Writes a float32 image with the tokenizer, manifest and a golden test\n"
		 "vector (the greedy continuation of a prompt, computed here).\n\n"
		 "  -o, --output FILE       the image to write (atomically)\n"
		 "  -t, --tokenizer FILE    llama2.c tokenizer.bin (default: beside SRC)\n"
		 "  -f, --format F          llama2c | hf | gguf | nib (default: detected)\n"
		 "      --name NAME         model name (default: from SRC)\n"
		 "      --license FILE      license text (default: LICENSE beside SRC)\n"
		 "      --model-version N   monotonic model version for updates (1)\n"
		 "      --golden-prompt T   prompt of the golden vector (\"Once upon a time\")\n"
		 "      --golden-steps N    its greedy tokens (16)\n",
	.main = convert_main,
};
