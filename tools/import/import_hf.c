/* HuggingFace checkpoints of the families of tools/import/family.c: a
 * directory with config.json, weights in model.safetensors (or shards
 * listed by model.safetensors.index.json), a tokenizer (tokenizer.model or
 * tokenizer.json) and optionally tokenizer_config.json (chat template,
 * add_bos_token) and a LICENSE.
 *
 * HF's conversion script permutes the rows of q_proj and k_proj for its
 * rotate-half RoPE: w.view(heads, head_dim/2, 2, in).transpose(1, 2). We
 * undo it, back to the interleaved pairs the runtime rotates. */
#include "tools/import/ckpt.h"
#include "tools/import/family.h"
#include "tools/import/safetensors.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#define JSON_MAX_BYTES (64u << 20)
#define LICENSE_MAX_BYTES (1u << 20)
#define JSON_INT_MAX 9007199254740992.0

/* Special ids from config.json, applied over the tokenizer's. */
struct hf_special {
	int64_t bos;	     /* -1: not given */
	const cJSON *eos;    /* number or array of numbers, or NULL */
};

static int join(char *dst, size_t cap, const char *dir, const char *file)
{
	int n = snprintf(dst, cap, "%s/%s", dir, file);

	if (n < 0 || (size_t)n >= cap) {
		nb_err("%s/%s: path too long", dir, file);
		return -NB_EINVAL;
	}
	return 0;
}

static bool exists(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The whole file, NUL-terminated; at most max bytes. */
static int read_text(const char *path, size_t max, char **out, size_t *len)
{
	struct nb_st_map m;
	int ret = nb_st_map_open(&m, path);

	*out = NULL;
	if (ret != 0)
		return ret;
	if (m.len > max) {
		nb_err("%s: %zu bytes, more than the %zu allowed", path, m.len, max);
		ret = -NB_ERANGE;
		goto out;
	}
	*out = malloc(m.len + 1);
	if (*out == NULL) {
		ret = -NB_ENOMEM;
		goto out;
	}
	if (m.len)
		memcpy(*out, m.addr, m.len);
	(*out)[m.len] = '\0';
	if (len)
		*len = m.len;
out:
	nb_st_map_close(&m);
	return ret;
}

/* JSON's white space only, from p to end. */
static bool only_space(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			return false;
	return true;
}

/* A file that is one JSON object and nothing else: a second value or junk
 * after the first is a damaged or concatenated file, not data to ignore. */
static int read_json(const char *path, cJSON **root)
{
	const char *end = NULL;
	size_t len;
	char *text;
	int ret = read_text(path, JSON_MAX_BYTES, &text, &len);

	*root = NULL;
	if (ret != 0)
		return ret;
	*root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (*root != NULL && !only_space(end, text + len)) {
		nb_err("%s: text after the JSON value, at byte %td", path, end - text);
		ret = -NB_EFORMAT;
	} else if (*root == NULL || !cJSON_IsObject(*root)) {
		nb_err("%s: not a JSON object", path);
		ret = -NB_EFORMAT;
	}
	free(text);
	if (ret != 0) {
		cJSON_Delete(*root);
		*root = NULL;
	}
	return ret;
}

/* ---- config.json --------------------------------------------------------- */

static bool json_int(const cJSON *v, uint64_t max, uint64_t *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return false;
	d = v->valuedouble;
	if (!(d >= 0.0 && d <= JSON_INT_MAX) || d != (double)(uint64_t)d || (uint64_t)d > max)
		return false;
	*out = (uint64_t)d;
	return true;
}

/* dflt 0: the key is required. */
static int cfg_u32(const cJSON *cfg, const char *key, uint32_t dflt, uint32_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
	uint64_t x;

	if ((v == NULL || cJSON_IsNull(v)) && dflt != 0) {
		*out = dflt;
		return 0;
	}
	if (!json_int(v, UINT32_MAX, &x) || x == 0) {
		nb_err("config.json: %s %s", key, v ? "is not a positive 32-bit integer" : "missing");
		return -NB_EFORMAT;
	}
	*out = (uint32_t)x;
	return 0;
}

static int cfg_f32(const cJSON *cfg, const char *key, float dflt, float *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);

	if (v == NULL || cJSON_IsNull(v)) {
		*out = dflt;
		return 0;
	}
	if (!cJSON_IsNumber(v)) {
		nb_err("config.json: %s is not a number", key);
		return -NB_EFORMAT;
	}
	*out = (float)v->valuedouble;
	return 0;
}

static const struct nb_family *find_family(const cJSON *cfg)
{
	const cJSON *archs = cJSON_GetObjectItemCaseSensitive(cfg, "architectures");
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
	const cJSON *a = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
	const struct nb_family *fam;
	char known[256];

	if (a != NULL) {
		fam = cJSON_IsString(a) ? nb_family_hf(a->valuestring, NULL) : NULL;
		if (fam == NULL) {
			nb_family_hf_list(known, sizeof(known), false);
			nb_err("config.json: architecture %.64s not supported (%s)",
			       cJSON_IsString(a) ? a->valuestring : "(not a string)", known);
		}
		return fam;
	}
	fam = cJSON_IsString(type) ? nb_family_hf(NULL, type->valuestring) : NULL;
	if (fam == NULL) {
		nb_family_hf_list(known, sizeof(known), true);
		nb_err("config.json: model_type %.64s not supported (%s)",
		       cJSON_IsString(type) ? type->valuestring : "(missing)", known);
	}
	return fam;
}

/* Features of the family's config the runtime does not implement. */
static int check_features(const cJSON *cfg, const struct nb_family *fam)
{
	static const char *const act_keys[] = { "hidden_act", "hidden_activation" };

	for (size_t i = 0; i < sizeof(act_keys) / sizeof(act_keys[0]); i++) {
		const cJSON *act = cJSON_GetObjectItemCaseSensitive(cfg, act_keys[i]);

		if (act != NULL && !cJSON_IsNull(act) &&
		    !(cJSON_IsString(act) && strcmp(act->valuestring, fam->hf_act) == 0)) {
			nb_err("config.json: %s %.32s not supported (%s only)", act_keys[i],
			       cJSON_IsString(act) ? act->valuestring : "(not a string)", fam->hf_act);
			return -NB_ENOTSUP;
		}
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "attention_bias")) ||
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "mlp_bias"))) {
		nb_err("config.json: attention_bias / mlp_bias not supported");
		return -NB_ENOTSUP;
	}
	return 0;
}

static int read_rope_scaling(const cJSON *cfg, struct nb_hparams *hp)
{
	const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling");
	const cJSON *type;
	int ret;

	hp->rope_scaling = NB_ROPE_SCALING_NONE;
	if (rs == NULL || cJSON_IsNull(rs))
		return 0;
	type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
	if (type == NULL)
		type = cJSON_GetObjectItemCaseSensitive(rs, "type");
	if (!cJSON_IsObject(rs) || !cJSON_IsString(type)) {
		nb_err("config.json: rope_scaling is neither null nor an object with a type");
		return -NB_EFORMAT;
	}
	if (strcmp(type->valuestring, "default") == 0)
		return 0;
	if (strcmp(type->valuestring, "llama3") != 0) {
		nb_err("config.json: rope_scaling type %.32s not supported (llama3 only)",
		       type->valuestring);
		return -NB_ENOTSUP;
	}
	hp->rope_scaling = NB_ROPE_SCALING_LLAMA3;
	if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(rs, "factor"))) {
		nb_err("config.json: rope_scaling.factor missing");
		return -NB_EFORMAT;
	}
	if ((ret = cfg_f32(rs, "factor", 0.0f, &hp->rope_factor)) != 0 ||
	    (ret = cfg_f32(rs, "low_freq_factor", 1.0f, &hp->rope_low_freq_factor)) != 0 ||
	    (ret = cfg_f32(rs, "high_freq_factor", 4.0f, &hp->rope_high_freq_factor)) != 0 ||
	    (ret = cfg_u32(rs, "original_max_position_embeddings", 0, &hp->rope_orig_ctx)) != 0)
		return ret;
	return 0;
}

static int read_hparams(const cJSON *cfg, struct nb_hparams *hp)
{
	const cJSON *tie = cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings");
	const struct nb_family *fam = find_family(cfg);
	int ret;

	if (fam == NULL)
		return -NB_ENOTSUP;
	if ((ret = check_features(cfg, fam)) != 0)
		return ret;
	if ((ret = cfg_u32(cfg, "hidden_size", 0, &hp->dim)) != 0 ||
	    (ret = cfg_u32(cfg, "intermediate_size", 0, &hp->hidden_dim)) != 0 ||
	    (ret = cfg_u32(cfg, "num_hidden_layers", 0, &hp->n_layers)) != 0 ||
	    (ret = cfg_u32(cfg, "num_attention_heads", 0, &hp->n_heads)) != 0 ||
	    (ret = cfg_u32(cfg, "num_key_value_heads", hp->n_heads, &hp->n_kv_heads)) != 0 ||
	    (ret = cfg_u32(cfg, "vocab_size", 0, &hp->vocab_size)) != 0 ||
	    (ret = cfg_u32(cfg, "max_position_embeddings", 2048, &hp->seq_len)) != 0 ||
	    (ret = cfg_f32(cfg, "rms_norm_eps", 1e-6f, &hp->norm_eps)) != 0 ||
	    (ret = cfg_f32(cfg, "rope_theta", 10000.0f, &hp->rope_theta)) != 0)
		return ret;
	if (hp->dim % hp->n_heads != 0 &&
	    cJSON_GetObjectItemCaseSensitive(cfg, "head_dim") == NULL) {
		nb_err("config.json: hidden_size %u not a multiple of num_attention_heads %u",
		       hp->dim, hp->n_heads);
		return -NB_EFORMAT;
	}
	if ((ret = cfg_u32(cfg, "head_dim", hp->dim / hp->n_heads ? hp->dim / hp->n_heads : 1,
			   &hp->head_dim)) != 0)
		return ret;
	if (tie != NULL && !cJSON_IsBool(tie) && !cJSON_IsNull(tie)) {
		nb_err("config.json: tie_word_embeddings is not a boolean");
		return -NB_EFORMAT;
	}
	hp->tied_embeddings = cJSON_IsBool(tie) ? cJSON_IsTrue(tie) : fam->hf_tied;
	nb_arch_apply(nb_arch_get(fam->arch), hp);
	return read_rope_scaling(cfg, hp);
}

static int read_special(const cJSON *cfg, struct hf_special *sp)
{
	const cJSON *bos = cJSON_GetObjectItemCaseSensitive(cfg, "bos_token_id");
	const cJSON *eos = cJSON_GetObjectItemCaseSensitive(cfg, "eos_token_id");
	const cJSON *e;
	uint64_t x;

	sp->bos = -1;
	sp->eos = NULL;
	if (bos != NULL && !cJSON_IsNull(bos)) {
		if (!json_int(bos, INT32_MAX, &x)) {
			nb_err("config.json: bos_token_id is not a token id");
			return -NB_EFORMAT;
		}
		sp->bos = (int64_t)x;
	}
	if (eos == NULL || cJSON_IsNull(eos))
		return 0;
	if (cJSON_IsArray(eos)) {
		cJSON_ArrayForEach(e, eos)
			if (!json_int(e, INT32_MAX, &x))
				goto bad_eos;
		if (cJSON_GetArraySize(eos) == 0)
			return 0;
	} else if (!json_int(eos, INT32_MAX, &x)) {
		goto bad_eos;
	}
	sp->eos = eos;
	return 0;
bad_eos:
	nb_err("config.json: eos_token_id is not a token id or a list of them");
	return -NB_EFORMAT;
}

/* A list of eos ids (Llama 3: end_of_text, eom, eot): keep the tokenizer's
 * if it is one of them, else take the first. */
static void apply_special(struct nb_tok_spec *tok, const struct hf_special *sp)
{
	const cJSON *e;

	if (sp->bos >= 0)
		tok->bos_id = (int32_t)sp->bos;
	if (sp->eos == NULL)
		return;
	if (cJSON_IsNumber(sp->eos)) {
		tok->eos_id = (int32_t)sp->eos->valuedouble;
		return;
	}
	cJSON_ArrayForEach(e, sp->eos)
		if ((int32_t)e->valuedouble == tok->eos_id)
			return;
	tok->eos_id = (int32_t)cJSON_GetArrayItem(sp->eos, 0)->valuedouble;
}

/* ---- tokenizer ----------------------------------------------------------- */

static int read_tok_config(struct nb_ckpt *c, const char *dir)
{
	char path[PATH_MAX];
	const cJSON *tmpl, *bos, *t;
	cJSON *root;
	int ret = join(path, sizeof(path), dir, "tokenizer_config.json");

	if (ret != 0 || !exists(path))
		return ret;
	ret = read_json(path, &root);
	if (ret != 0)
		return ret;
	bos = cJSON_GetObjectItemCaseSensitive(root, "add_bos_token");
	if (cJSON_IsBool(bos))
		c->tok.flags = cJSON_IsTrue(bos) ? c->tok.flags | NB_TOK_FLAG_ADD_BOS
						 : c->tok.flags & ~NB_TOK_FLAG_ADD_BOS;
	tmpl = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
	/* newer files: a list of {name, template}; the one named "default" */
	if (cJSON_IsArray(tmpl)) {
		cJSON_ArrayForEach(t, tmpl) {
			const cJSON *n = cJSON_GetObjectItemCaseSensitive(t, "name");
			if (cJSON_IsString(n) && strcmp(n->valuestring, "default") == 0)
				break;
		}
		tmpl = t ? cJSON_GetObjectItemCaseSensitive(t, "template") : NULL;
	}
	if (cJSON_IsString(tmpl)) {
		c->chat_template = strdup(tmpl->valuestring);
		if (c->chat_template == NULL)
			ret = -NB_ENOMEM;
	} else if (tmpl != NULL && !cJSON_IsNull(tmpl)) {
		nb_err("%s: chat_template is not a string", path);
		ret = -NB_EFORMAT;
	}
	cJSON_Delete(root);
	return ret;
}

static int read_tokenizer(struct nb_ckpt *c, const char *dir, const struct hf_special *sp)
{
	char path[PATH_MAX];
	int ret = join(path, sizeof(path), dir, "tokenizer.model");

	if (ret != 0)
		return ret;
	if (exists(path)) {
		ret = nb_tok_import_spm_model(&c->tok, path);
	} else {
		ret = join(path, sizeof(path), dir, "tokenizer.json");
		if (ret != 0)
			return ret;
		if (!exists(path)) {
			nb_err("%s: no tokenizer.model or tokenizer.json", dir);
			return -NB_ENOENT;
		}
		ret = nb_tok_import_json(&c->tok, path);
	}
	if (ret != 0)
		return ret;
	apply_special(&c->tok, sp);
	return read_tok_config(c, dir);
}

/* ---- tensors ------------------------------------------------------------- */

/* "model.layers.N.<rest>" with N canonical decimal: N and rest, or NULL. */
static const char *parse_layer(const char *name, uint32_t *layer)
{
	static const char prefix[] = "model.layers.";
	const char *p = name + sizeof(prefix) - 1;
	uint64_t v = 0;

	if (strncmp(name, prefix, sizeof(prefix) - 1) != 0 || *p < '0' || *p > '9' ||
	    (p[0] == '0' && p[1] != '.'))
		return NULL;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return NULL;
	}
	if (*p != '.')
		return NULL;
	*layer = (uint32_t)v;
	return p + 1;
}

/* 1: mapped to out, 0: dropped, <0: unknown name. */
static int map_name(const struct nb_hparams *hp, const char *hf, char *out, size_t cap,
		    enum nb_hf_transform *how)
{
	const struct nb_family *fam = nb_family_of(hp->arch);
	const struct nb_hf_name *n;
	uint32_t layer = 0;
	const char *rest = parse_layer(hf, &layer);

	for (n = fam->hf_names; n->hf != NULL; n++) {
		if (n->per_layer ? rest == NULL || strcmp(rest, n->hf) != 0 : strcmp(hf, n->hf) != 0)
			continue;
		if (n->per_layer && layer >= hp->n_layers) {
			nb_err("tensor %s: layer %u of %u", hf, layer, hp->n_layers);
			return -NB_EFORMAT;
		}
		/* tied: lm_head, when a checkpoint has it, is a copy of the embeddings */
		if (n->canonical == NULL ||
		    (hp->tied_embeddings && strcmp(n->canonical, "output.weight") == 0))
			return 0;
		*how = n->how;
		if (n->per_layer)
			snprintf(out, cap, "blk.%u.%s", layer, n->canonical);
		else
			snprintf(out, cap, "%s", n->canonical);
		return 1;
	}
	nb_err("tensor %s not supported for a %s model", hf, fam->hf_class);
	return -NB_ENOTSUP;
}

/* Rows that are heads of hd rows each in HF's rotate-half order (q and k
 * weights and biases; the q/k norm weights, one head): HF row
 * h*hd + j*hd/2 + i holds interleaved row h*hd + 2i + j. */
static int unpermute(float *w, uint64_t rows, uint64_t cols, uint32_t hd, const char *name)
{
	size_t row = (size_t)cols, half = hd / 2;
	float *tmp;

	if (hd % 2 != 0 || rows % hd != 0) {
		nb_err("tensor %s: %llu rows are not heads of %u", name, (unsigned long long)rows,
		       hd);
		return -NB_EFORMAT;
	}
	tmp = malloc((size_t)hd * row * sizeof(float));
	if (tmp == NULL)
		return -NB_ENOMEM;
	for (uint64_t h = 0; h < rows / hd; h++) {
		float *head = w + (size_t)h * hd * row;
		memcpy(tmp, head, (size_t)hd * row * sizeof(float));
		for (size_t i = 0; i < half; i++)
			for (size_t j = 0; j < 2; j++)
				memcpy(head + (2 * i + j) * row, tmp + (j * half + i) * row,
				       row * sizeof(float));
	}
	free(tmp);
	return 0;
}

static int add_tensor(struct nb_ckpt *c, const struct nb_st_tensor *t)
{
	char name[NB_TENSOR_NAME_MAX];
	enum nb_hf_transform how = NB_HF_AS_IS;
	float *data;
	int ret = map_name(&c->hp, t->name, name, sizeof(name), &how);

	if (ret <= 0)
		return ret;
	if (t->ndim < 1 || t->ndim > 4) {
		nb_err("tensor %s: %u dimensions", t->name, t->ndim);
		return -NB_EFORMAT;
	}
	ret = nb_st_to_f32(t, &data);
	if (ret != 0)
		return ret;
	if (how == NB_HF_ROTATE_HALF) {
		ret = unpermute(data, t->shape[0], t->n_elems / (t->shape[0] ? t->shape[0] : 1),
				c->hp.head_dim, t->name);
		if (ret != 0) {
			free(data);
			return ret;
		}
	}
	return nb_ckpt_add(c, name, t->ndim, t->shape, data);
}

static int import_file(struct nb_ckpt *c, const char *path)
{
	struct nb_st st;
	int ret;

	nb_st_init(&st);
	ret = nb_st_open(&st, path);
	for (size_t i = 0; ret == 0 && i < st.n_tensors; i++)
		ret = add_tensor(c, &st.tensors[i]);
	nb_st_free(&st);
	return ret;
}

/* A shard file name from the index: a plain name inside the directory. */
static bool shard_name_ok(const char *f)
{
	return f[0] != '\0' && f[0] != '.' && strchr(f, '/') == NULL && strlen(f) < NAME_MAX;
}

static int import_shard(struct nb_ckpt *c, const char *dir, const char *file, const cJSON *map)
{
	char path[PATH_MAX];
	const cJSON *e;
	struct nb_st st;
	int ret = join(path, sizeof(path), dir, file);

	nb_st_init(&st);
	if (ret == 0)
		ret = nb_st_open(&st, path);
	cJSON_ArrayForEach(e, map) {
		const struct nb_st_tensor *t;
		if (ret != 0)
			break;
		if (strcmp(e->valuestring, file) != 0)
			continue;
		t = nb_st_find(&st, e->string);
		if (t == NULL) {
			nb_err("%s: tensor %s listed in the index is missing", path, e->string);
			ret = -NB_EFORMAT;
			break;
		}
		ret = add_tensor(c, t);
	}
	nb_st_free(&st);
	return ret;
}

/* Each shard once, in the order the index first names it. */
static int import_sharded(struct nb_ckpt *c, const char *dir, const char *index)
{
	const cJSON *map, *e, *f;
	cJSON *root;
	int ret = read_json(index, &root);

	if (ret != 0)
		return ret;
	map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!cJSON_IsObject(map)) {
		nb_err("%s: no weight_map object", index);
		ret = -NB_EFORMAT;
		goto out;
	}
	cJSON_ArrayForEach(e, map) {
		if (!cJSON_IsString(e) || !shard_name_ok(e->valuestring)) {
			nb_err("%s: tensor %s: bad shard file name", index, e->string);
			ret = -NB_EFORMAT;
			goto out;
		}
	}
	cJSON_ArrayForEach(e, map) {
		for (f = map->child; f != e; f = f->next)
			if (strcmp(f->valuestring, e->valuestring) == 0)
				break;
		if (f != e)
			continue;
		ret = import_shard(c, dir, e->valuestring, map);
		if (ret != 0)
			break;
	}
out:
	cJSON_Delete(root);
	return ret;
}

static int import_weights(struct nb_ckpt *c, const char *dir)
{
	char path[PATH_MAX];
	int ret = join(path, sizeof(path), dir, "model.safetensors.index.json");

	if (ret != 0)
		return ret;
	if (exists(path))
		return import_sharded(c, dir, path);
	ret = join(path, sizeof(path), dir, "model.safetensors");
	if (ret != 0)
		return ret;
	return import_file(c, path);
}

/* ---- directory ----------------------------------------------------------- */

static void name_from_dir(char *dst, size_t cap, const char *dir)
{
	size_t end = strlen(dir), start;

	while (end > 1 && dir[end - 1] == '/')
		end--;
	start = end;
	while (start > 0 && dir[start - 1] != '/')
		start--;
	if (end - start >= cap)
		end = start + cap - 1;
	memcpy(dst, dir + start, end - start);
	dst[end - start] = '\0';
}

static int read_license(struct nb_ckpt *c, const char *dir)
{
	static const char *const names[] = { "LICENSE", "LICENSE.txt", "LICENSE.md" };
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (join(path, sizeof(path), dir, names[i]) != 0 || !exists(path))
			continue;
		return read_text(path, LICENSE_MAX_BYTES, &c->license, NULL);
	}
	return 0;
}

static int import_dir(struct nb_ckpt *c, const char *dir)
{
	char path[PATH_MAX];
	struct hf_special sp;
	cJSON *cfg = NULL;
	int ret = join(path, sizeof(path), dir, "config.json");

	if (ret == 0)
		ret = read_json(path, &cfg);
	if (ret == 0)
		ret = read_hparams(cfg, &c->hp);
	if (ret == 0)
		ret = read_special(cfg, &sp);
	if (ret == 0)
		ret = import_weights(c, dir);
	if (ret == 0)
		ret = read_tokenizer(c, dir, &sp);
	if (ret == 0)
		ret = read_license(c, dir);
	cJSON_Delete(cfg);
	return ret;
}

int nb_import_hf(struct nb_ckpt *c, const char *dir)
{
	int ret = import_dir(c, dir);

	if (ret == 0) {
		name_from_dir(c->name, sizeof(c->name), dir);
		ret = nb_ckpt_validate(c);
	}
	if (ret != 0) {
		nb_err("%s: HF import failed: %s", dir, nb_strerror(ret));
		nb_ckpt_free(c);
	}
	return ret;
}
