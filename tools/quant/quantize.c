/* `nibble quantize`: a float source (checkpoint or float32 image) into a
 * quantized image, by round-to-nearest, AWQ or GPTQ.
 *
 * Calibration runs the runtime's own forward pass over the calibration
 * text with the capture hook (struct nb_fwd) collecting X^T X and mean |x|
 * of the input of every linear layer. Layers are quantized one after
 * another, each from one pass of the model truncated after it: the float
 * weights of a quantized layer are replaced by what the kernels will see,
 * so the inputs of a layer are those of the quantized layers before it (as
 * in GPTQ's sequential mode). Within a layer the inputs come from the float
 * layer, as in the reference implementations; quantizing o after q/k/v
 * (GPTQ's "true sequential") cost 4x the passes and measured no better on
 * stories260K. AWQ needs it so anyway: its scales fold into the float
 * weights of the layer's own earlier operations.
 *
 * The embedding and the output matrix are quantized round-to-nearest by
 * every method (GPTQ and AWQ tune the linears of the blocks). */
#include "runtime/base/sys.h"
#include "firmware/image.h"
#include "runtime/base/err.h"
#include "runtime/model/forward.h"
#include "runtime/base/log.h"
#include "runtime/text/tokenizer.h"
#include "tools/import/convert.h"
#include "tools/quant/perplexity.h"
#include "tools/quant/quantize.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>


#define CALIB_MAX_FILE (64u << 20)       /* calibration needs only the start */

/* ---- the plan ---------------------------------------------------------- */

int nb_qplan_parse_type(const char *s, bool allow_f32, uint32_t *type)
{
	if (allow_f32 && strcmp(s, "f32") == 0) {
		*type = NB_DTYPE_F32;
		return 0;
	}
	if (strcmp(s, "q8") == 0) {
		*type = NB_QTYPE_Q8_G32;
		return 0;
	}
	*type = nb_qtype_by_name(s);
	if (*type)
		return 0;
	nb_err("quantize: unknown type '%s' (%s%s)", s, nb_qtype_names(), allow_f32 ? ", f32" : "");
	return -NB_EINVAL;
}

static bool name_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '.';
}

static int add_keep_name(struct nb_qplan *p, uint32_t type, const char *name, size_t len)
{
	if (len == 0 || len >= NB_TENSOR_NAME_MAX) {
		nb_err("quantize: --keep: empty or too long tensor name");
		return -NB_EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		if (!name_char_ok(name[i])) {
			nb_err("quantize: --keep: bad character in '%.*s'", (int)len, name);
			return -NB_EINVAL;
		}
	}
	if (p->n_keep == NB_QPLAN_MAX_KEEP) {
		nb_err("quantize: --keep: more than %d names", NB_QPLAN_MAX_KEEP);
		return -NB_EINVAL;
	}
	p->keep[p->n_keep].type = type;
	memcpy(p->keep[p->n_keep].name, name, len);
	p->keep[p->n_keep].name[len] = '\0';
	p->n_keep++;
	return 0;
}

int nb_qplan_add_keep(struct nb_qplan *p, const char *arg)
{
	const char *colon = strchr(arg, ':'), *name;
	char tname[16];
	uint32_t type;
	int ret;

	if (!colon || colon == arg || (size_t)(colon - arg) >= sizeof(tname) || !colon[1]) {
		nb_err("quantize: --keep '%s': expected TYPE:NAME[,NAME...]", arg);
		return -NB_EINVAL;
	}
	memcpy(tname, arg, (size_t)(colon - arg));
	tname[colon - arg] = '\0';
	ret = nb_qplan_parse_type(tname, true, &type);
	for (name = colon + 1; !ret; name++) {
		const char *end = strchr(name, ',');
		size_t len = end ? (size_t)(end - name) : strlen(name);

		ret = add_keep_name(p, type, name, len);
		if (!end)
			break;
		name = end;
	}
	return ret;
}

/* Does keep name k select the tensor called name? "embed" is token_embd;
 * "output" is too when the embeddings are tied (one tensor); a layer kind
 * (ffn_down) selects it in every layer; ".weight" is optional. */
static bool keep_matches(const char *k, const char *name, bool tied)
{
	char base[NB_TENSOR_NAME_MAX], kb[NB_TENSOR_NAME_MAX];
	size_t n;
	const char *dot;

	snprintf(base, sizeof(base), "%s", name);
	n = strlen(base);
	if (n > 7 && strcmp(base + n - 7, ".weight") == 0)
		base[n - 7] = '\0';
	snprintf(kb, sizeof(kb), "%s", k);
	n = strlen(kb);
	if (n > 7 && strcmp(kb + n - 7, ".weight") == 0)
		kb[n - 7] = '\0';
	if (strcmp(kb, "embed") == 0 || (tied && strcmp(kb, "output") == 0))
		snprintf(kb, sizeof(kb), "token_embd");
	if (strcmp(base, kb) == 0)
		return true;
	dot = strncmp(base, "blk.", 4) == 0 ? strchr(base + 4, '.') : NULL;
	return dot && strcmp(dot + 1, kb) == 0;
}

uint32_t nb_qplan_type_of(const struct nb_qplan *p, const char *name, uint32_t ndim, bool tied)
{
	if (ndim != 2)
		return NB_DTYPE_F32;
	for (size_t i = p->n_keep; i-- > 0;)
		if (keep_matches(p->keep[i].name, name, tied))
			return p->keep[i].type;
	return p->type;
}

int nb_qplan_check(const struct nb_qplan *p, const char *const *names, size_t n, bool tied)
{
	for (size_t i = 0; i < p->n_keep; i++) {
		size_t j = 0;

		while (j < n && !keep_matches(p->keep[i].name, names[j], tied))
			j++;
		if (j == n) {
			nb_err("quantize: --keep: the model has no tensor '%s'", p->keep[i].name);
			return -NB_EINVAL;
		}
	}
	return 0;
}

/* ---- options ------------------------------------------------------------ */

const char *const nb_qmethod_names[NB_QMETHOD_COUNT] = { "rtn", "awq", "gptq" };

int nb_quantize_check(const struct nb_quantize_opts *o)
{
	if (o->method >= NB_QMETHOD_COUNT || o->plan.type < NB_QTYPE_MIN ||
	    o->plan.type > NB_QTYPE_MAX) {
		nb_err("quantize: method %d, type %u: no such method or type", (int)o->method,
		       o->plan.type);
		return -NB_EINVAL;
	}
	if (o->method != NB_QMETHOD_RTN && !o->calib) {
		nb_err("quantize: --method %s needs calibration text (--calib FILE)",
		       nb_qmethod_names[o->method]);
		return -NB_EINVAL;
	}
	if (!(o->damp > 0.0f && o->damp <= 1.0f) || o->calib_tokens < 1 ||
	    o->calib_tokens > NB_QUANTIZE_MAX_CALIB_TOKENS) {
		nb_err("quantize: damp %g or %u calibration tokens out of range", (double)o->damp,
		       o->calib_tokens);
		return -NB_EINVAL;
	}
	return 0;
}

/* ---- the job ----------------------------------------------------------- */

enum stage { ST_QKV, ST_O, ST_GATE_UP, ST_DOWN, N_STAGES };

/* Linears of a stage, sharing one input; the first is the capture key. */
static const char *const stage_kinds[N_STAGES][3] = {
	{ "attn_q", "attn_k", "attn_v" },
	{ "attn_output", NULL, NULL },
	{ "ffn_gate", "ffn_up", NULL },
	{ "ffn_down", NULL, NULL },
};

struct seq {
	uint32_t start, len;
};

struct qjob {
	const struct nb_quantize_opts *o;
	struct nb_ckpt c;
	struct nb_src_info info;
	struct nb_tensor *fviews; /* float32 views of c: the calibration model */
	uint32_t *types;          /* [n_tensors] planned type */
	void **packed;            /* [n_tensors] quantized bytes, or NULL */
	uint64_t *packed_size;
	int32_t *ids;             /* calibration tokens */
	struct seq *seqs;
	size_t n_ids, n_seqs;
	uint32_t max_seq;
	size_t done, total; /* matrices, for the progress bar */
	bool tty;
	double loss_rtn, loss_method; /* summed over the calibrated linears */
	double t0;
};

static void progress(struct qjob *j, const char *name)
{
	char bar[31];
	size_t fill;

	j->done++;
	if (!j->tty)
		return;
	fill = j->total ? j->done * 30 / j->total : 30;
	memset(bar, '#', fill);
	memset(bar + fill, '.', 30 - fill);
	bar[30] = '\0';
	fprintf(stderr, "\r[%s] %zu/%zu %-32.32s", bar, j->done, j->total, name);
	if (j->done == j->total)
		fputc('\n', stderr);
	fflush(stderr);
}

static size_t tensor_index(const struct qjob *j, uint32_t layer, const char *kind)
{
	char name[NB_TENSOR_NAME_MAX];
	const struct nb_ckpt_tensor *t;

	snprintf(name, sizeof(name), "blk.%u.%s.weight", layer, kind);
	t = nb_ckpt_find(&j->c, name);
	return (size_t)(t - j->c.tensors); /* present: nb_ckpt_validate */
}

static size_t find_index(const struct qjob *j, const char *name)
{
	const struct nb_ckpt_tensor *t = nb_ckpt_find(&j->c, name);

	return t ? (size_t)(t - j->c.tensors) : SIZE_MAX;
}

/* Stores m as tensor i's image data and puts what the kernels will see
 * into the float working copy, which later calibration passes run on. */
static int commit(struct qjob *j, size_t i, const struct nb_qmat *m)
{
	int ret = nb_qmat_pack(m, &j->packed[i], &j->packed_size[i]);

	if (!ret)
		nb_qmat_dequant(m, j->c.tensors[i].data);
	return ret;
}

static int quantize_rtn(struct qjob *j, size_t i)
{
	struct nb_ckpt_tensor *t = &j->c.tensors[i];
	struct nb_qmat m;
	int ret = 0;

	if (j->types[i] != NB_DTYPE_F32) {
		ret = nb_qmat_alloc(&m, j->types[i], t->shape[0], t->shape[1]);
		if (!ret) {
			nb_qmat_rtn(&m, t->data, 1.0f);
			ret = commit(j, i, &m);
		}
		nb_qmat_free(&m);
	}
	progress(j, t->name);
	return ret;
}

/* RTN's output error on st, for the comparison in the summary. */
static int rtn_loss(const float *w, uint64_t rows, uint64_t cols, uint32_t type,
		    const struct nb_calib_stat *st, double *loss)
{
	float *wq = malloc(rows * cols * sizeof(float));
	struct nb_qmat m;
	int ret = wq ? nb_qmat_alloc(&m, type, rows, cols) : -NB_ENOMEM;

	if (!ret) {
		nb_qmat_rtn(&m, w, 1.0f);
		nb_qmat_dequant(&m, wq);
		*loss = nb_calib_loss(st, w, wq, rows);
		nb_qmat_free(&m);
	}
	free(wq);
	return ret;
}

/* ---- calibration ------------------------------------------------------- */

struct capture {
	const struct nb_tensor *key[N_STAGES];
	struct nb_calib_stat *st;
};

static void on_capture(void *arg, const struct nb_tensor *w, const float *x)
{
	struct capture *cap = arg;

	for (int s = 0; s < N_STAGES; s++)
		if (w == cap->key[s] && cap->st[s].cols)
			nb_calib_stat_add(&cap->st[s], x);
}

static void free_stats(struct nb_calib_stat *st)
{
	for (int s = 0; s < N_STAGES; s++)
		nb_calib_stat_free(&st[s]);
}

/* Runs the calibration text through layers 0..layer (as they are now) and
 * collects the input statistics of the layer's stages into st. */
static int calib_pass(struct qjob *j, uint32_t layer, struct nb_calib_stat *st)
{
	struct nb_hparams hp = j->c.hp;
	struct capture cap = { .st = st };
	struct nb_model m;
	struct nb_fwd f;
	float *logits;
	int ret;

	memset(st, 0, N_STAGES * sizeof(*st));
	nb_model_init(&m);
	hp.n_layers = layer + 1;
	ret = nb_model_bind(&m, &hp, j->fviews, j->c.n_tensors);
	for (int s = 0; !ret && s < N_STAGES; s++) {
		cap.key[s] = &j->fviews[tensor_index(j, layer, stage_kinds[s][0])];
		ret = nb_calib_stat_alloc(&st[s], (uint32_t)cap.key[s]->shape[1]);
	}
	if (!ret)
		ret = nb_fwd_open(&f, &m, j->max_seq);
	if (!ret) {
		f.capture = on_capture;
		f.capture_arg = &cap;
		for (size_t k = 0; !ret && k < j->n_seqs; k++)
			ret = nb_fwd_prompt(&f, j->ids + j->seqs[k].start, j->seqs[k].len, 0, &logits);
		nb_fwd_close(&f);
	}
	nb_model_free(&m);
	for (int s = 0; s < N_STAGES; s++)
		if (st[s].cols)
			nb_calib_stat_finish(&st[s]);
	if (ret)
		free_stats(st);
	return ret;
}

/* The calibration text, at most CALIB_MAX_FILE bytes of it. */
static char *read_calib(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	size_t cap;
	char *buf;

	if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		nb_err("quantize: --calib %s: %s", path, f ? "not a regular file" : strerror(errno));
		if (f)
			fclose(f);
		return NULL;
	}
	cap = (uint64_t)st.st_size < CALIB_MAX_FILE ? (size_t)st.st_size : CALIB_MAX_FILE;
	buf = malloc(cap + 1);
	*len = buf ? fread(buf, 1, cap, f) : 0;
	if (buf && ferror(f)) {
		nb_err("quantize: --calib %s: read error", path);
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf)
		buf[*len] = '\0';
	return buf;
}


/* Appends one document's tokens (BOS first) up to the budget, in
 * sequences of at most seq_len. */
static int add_doc(struct qjob *j, const struct nb_tok *tok, const char *doc, size_t n,
		   size_t budget)
{
	size_t got = 0, cap = budget - j->n_ids;
	int32_t *ids;
	int ret = nb_tok_encode_alloc(tok, doc, n, true, 0, &ids, &got);

	if (ret) {
		nb_err("quantize: --calib %s: cannot tokenize a document (%s)", j->o->calib,
		       nb_strerror(ret));
		return ret;
	}
	got = got < cap ? got : cap;
	memcpy(j->ids + j->n_ids, ids, got * sizeof(int32_t));
	for (size_t k = 0; k < got; k += j->c.hp.seq_len) {
		uint32_t len = (uint32_t)(got - k < j->c.hp.seq_len ? got - k : j->c.hp.seq_len);

		j->seqs[j->n_seqs++] = (struct seq){ (uint32_t)(j->n_ids + k), len };
		j->max_seq = len > j->max_seq ? len : j->max_seq;
	}
	j->n_ids += got;
	free(ids);
	return 0;
}

static int load_calib(struct qjob *j)
{
	size_t len = 0, off = 0, n, budget = j->o->calib_tokens, docs = 0;
	char *text = read_calib(j->o->calib, &len);
	struct nb_tok *tok = NULL;
	const char *doc;
	int ret;

	if (!text)
		return -NB_EIO;
	j->ids = malloc(budget * sizeof(int32_t));
	j->seqs = malloc(budget * sizeof(struct seq));
	ret = j->ids && j->seqs ? nb_tok_open(&tok, &j->c.tok) : -NB_ENOMEM;
	/* Documents as `nibble perplexity` splits them. */
	while (!ret && j->n_ids < budget &&
	       nb_ppl_next_doc(text, len, "<|endoftext|>", &off, &doc, &n)) {
		if (n == 0)
			continue;
		ret = add_doc(j, tok, doc, n, budget);
		docs++;
	}
	if (!ret && j->n_ids == 0) {
		nb_err("quantize: --calib %s: no text", j->o->calib);
		ret = -NB_EFORMAT;
	}
	if (!ret)
		nb_info("quantize: calibration: %zu tokens from %zu documents of %s", j->n_ids,
			docs, j->o->calib);
	nb_tok_close(tok);
	free(text);
	return ret;
}

/* ---- GPTQ --------------------------------------------------------------- */

static int gptq_tensor(struct qjob *j, size_t i, const struct nb_calib_stat *st)
{
	struct nb_ckpt_tensor *t = &j->c.tensors[i];
	const struct nb_gptq_opts go = { j->o->damp, j->o->act_order };
	uint64_t n = t->shape[0] * t->shape[1];
	float *wq = malloc(n * sizeof(float));
	double base = 0;
	struct nb_qmat m;
	int ret = wq ? rtn_loss(t->data, t->shape[0], t->shape[1], j->types[i], st, &base)
		     : -NB_ENOMEM;

	if (!ret)
		ret = nb_qmat_alloc(&m, j->types[i], t->shape[0], t->shape[1]);
	if (!ret) {
		ret = nb_gptq_quantize(&m, t->data, st, &go);
		if (!ret) {
			double loss;

			nb_qmat_dequant(&m, wq);
			loss = nb_calib_loss(st, t->data, wq, t->shape[0]);
			nb_dbg("quantize: %s: output error rtn %.4g, gptq %.4g", t->name, base, loss);
			j->loss_rtn += base;
			j->loss_method += loss;
			ret = commit(j, i, &m);
		}
		nb_qmat_free(&m);
	}
	free(wq);
	return ret;
}

static int gptq_layer(struct qjob *j, uint32_t l)
{
	struct nb_calib_stat st[N_STAGES];
	int ret = calib_pass(j, l, st);

	for (int s = 0; !ret && s < N_STAGES; s++) {
		for (int k = 0; !ret && k < 3 && stage_kinds[s][k]; k++) {
			size_t i = tensor_index(j, l, stage_kinds[s][k]);

			if (j->types[i] != NB_DTYPE_F32)
				ret = gptq_tensor(j, i, &st[s]);
			progress(j, j->c.tensors[i].name);
		}
	}
	free_stats(st);
	return ret;
}

/* ---- AWQ ---------------------------------------------------------------- */

/* A linear of the layer being scaled: its float weights before any
 * scaling (the reference of its output error), and the scales its columns
 * were multiplied by and its rows divided by (NULL: none). */
struct awq_ref {
	size_t idx;
	int stage;
	float *w0;
	float *s;           /* owned by the stage's first linear */
	const float *row_s; /* the next stage's s, folded into these rows */
};

/* Divides the output channels feeding stage s of layer l by scale. false
 * when no operation can take it: o after grouped-query attention, or after
 * v with a bias (which would need dividing too), and a norm that scales by
 * (offset + w), which dividing w does not divide. */
static bool awq_fold(struct qjob *j, uint32_t l, int s, const float *scale, bool apply)
{
	const struct nb_hparams *hp = &j->c.hp;
	const char *prev = s == ST_QKV ? "attn_norm" : s == ST_GATE_UP ? "ffn_norm" :
			   s == ST_DOWN ? "ffn_up" : "attn_v";
	struct nb_ckpt_tensor *t;

	if (s == ST_O && (hp->n_heads != hp->n_kv_heads || (hp->features & NB_FEAT_QKV_BIAS)))
		return false;
	if ((s == ST_QKV || s == ST_GATE_UP) && hp->norm_offset != 0.0f)
		return false;
	if (!apply)
		return true;
	t = &j->c.tensors[tensor_index(j, l, prev)];
	if (t->ndim == 1) {
		for (uint64_t c = 0; c < t->shape[0]; c++)
			t->data[c] /= scale[c];
	} else {
		for (uint64_t r = 0; r < t->shape[0]; r++)
			for (uint64_t c = 0; c < t->shape[1]; c++)
				t->data[r * t->shape[1] + c] /= scale[r];
	}
	return true;
}

/* The linear whose rows take stage s's scale: v for o, up for down. */
static struct awq_ref *folded_ref(struct qjob *j, uint32_t l, int s, struct awq_ref *all, size_t n)
{
	size_t i = s == ST_O ? tensor_index(j, l, "attn_v") :
		   s == ST_DOWN ? tensor_index(j, l, "ffn_up") : SIZE_MAX;

	for (size_t k = 0; k < n; k++)
		if (all[k].idx == i)
			return &all[k];
	return NULL;
}

static int awq_stage(struct qjob *j, uint32_t l, int s, const struct nb_calib_stat *st,
		     struct awq_ref *all, size_t n_all)
{
	struct awq_ref *refs = all, *folded;
	struct nb_awq_linear lin[3];
	size_t n = 0;
	bool any = false;
	float alpha;
	double l_rtn, l_awq;
	int ret;

	while (refs < all + n_all && refs->stage != s)
		refs++;
	for (int k = 0; k < 3 && stage_kinds[s][k]; k++) {
		size_t i = tensor_index(j, l, stage_kinds[s][k]);
		struct nb_ckpt_tensor *t = &j->c.tensors[i];

		lin[n++] = (struct nb_awq_linear){ t->data, t->shape[0], j->types[i] };
		any |= j->types[i] != NB_DTYPE_F32;
	}
	if (!any || !awq_fold(j, l, s, NULL, false))
		return 0;
	refs[0].s = malloc(st->cols * sizeof(float));
	if (!refs[0].s)
		return -NB_ENOMEM;
	ret = nb_awq_scale(lin, n, st, refs[0].s, &alpha, &l_rtn, &l_awq);
	if (ret)
		return ret;
	for (size_t k = 1; k < n; k++)
		refs[k].s = refs[0].s; /* shared: freed through refs[0] */
	awq_fold(j, l, s, refs[0].s, true);
	folded = folded_ref(j, l, s, all, n_all);
	if (folded)
		folded->row_s = refs[0].s;
	nb_dbg("quantize: blk.%u.%s..: awq alpha %.2f, output error rtn %.4g, scaled %.4g", l,
	       stage_kinds[s][0], (double)alpha, l_rtn, l_awq);
	return 0;
}

/* Quantizes one scaled linear (clip search unless q/k: their error passes
 * through the softmax, which H does not see) and measures its output
 * error against the unscaled original. */
static int awq_quantize(struct qjob *j, const struct awq_ref *r, const struct nb_calib_stat *st,
			bool clip)
{
	struct nb_ckpt_tensor *t = &j->c.tensors[r->idx];
	uint64_t rows = t->shape[0], cols = t->shape[1];
	float *eff = malloc(rows * cols * sizeof(float));
	double base = 0, loss;
	struct nb_qmat m;
	int ret = eff ? nb_qmat_alloc(&m, j->types[r->idx], rows, cols) : -NB_ENOMEM;

	if (ret) {
		free(eff);
		return ret;
	}
	if (clip)
		ret = nb_awq_clip_quantize(&m, t->data, st);
	else
		nb_qmat_rtn(&m, t->data, 1.0f);
	if (!ret)
		ret = commit(j, r->idx, &m);
	if (!ret) {
		/* what the unscaled input sees: rows and columns scaled back */
		for (uint64_t k = 0; k < rows * cols; k++)
			eff[k] = t->data[k] / (r->s ? r->s[k % cols] : 1.0f) *
				 (r->row_s ? r->row_s[k / cols] : 1.0f);
		loss = nb_calib_loss(st, r->w0, eff, rows);
		ret = rtn_loss(r->w0, rows, cols, j->types[r->idx], st, &base);
		j->loss_rtn += base;
		j->loss_method += loss;
		nb_dbg("quantize: %s: output error rtn %.4g, awq %.4g", t->name, base, loss);
	}
	nb_qmat_free(&m);
	free(eff);
	return ret;
}

static void free_refs(struct awq_ref *refs, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		free(refs[k].w0);
		if (k == 0 || refs[k].s != refs[k - 1].s)
			free(refs[k].s);
	}
}

/* refs: the layer's linears in stage order, with copies of their weights. */
static int awq_refs(struct qjob *j, uint32_t l, struct awq_ref *refs, size_t *n)
{
	*n = 0;
	memset(refs, 0, 7 * sizeof(*refs));
	for (int s = 0; s < N_STAGES; s++) {
		for (int k = 0; k < 3 && stage_kinds[s][k]; k++) {
			size_t i = tensor_index(j, l, stage_kinds[s][k]);
			const struct nb_ckpt_tensor *t = &j->c.tensors[i];
			size_t bytes = t->shape[0] * t->shape[1] * sizeof(float);

			refs[*n] = (struct awq_ref){ .idx = i, .stage = s, .w0 = malloc(bytes) };
			if (!refs[*n].w0)
				return -NB_ENOMEM;
			memcpy(refs[(*n)++].w0, t->data, bytes);
		}
	}
	return 0;
}

static int awq_layer(struct qjob *j, uint32_t l)
{
	struct nb_calib_stat st[N_STAGES];
	struct awq_ref refs[7];
	size_t n = 0;
	int ret = calib_pass(j, l, st);

	if (ret)
		return ret;
	ret = awq_refs(j, l, refs, &n);
	for (int s = 0; !ret && s < N_STAGES; s++)
		ret = awq_stage(j, l, s, &st[s], refs, n);
	for (size_t k = 0; !ret && k < n; k++) {
		const struct nb_ckpt_tensor *t = &j->c.tensors[refs[k].idx];
		bool qk = strstr(t->name, ".attn_q.") || strstr(t->name, ".attn_k.");

		if (j->types[refs[k].idx] != NB_DTYPE_F32)
			ret = awq_quantize(j, &refs[k], &st[refs[k].stage], !j->o->no_clip && !qk);
		progress(j, t->name);
	}
	free_refs(refs, n);
	free_stats(st);
	return ret;
}

/* ---- the whole job ------------------------------------------------------ */

static int plan_types(struct qjob *j)
{
	const char **names = calloc(j->c.n_tensors ? j->c.n_tensors : 1, sizeof(*names));
	bool tied = j->c.hp.tied_embeddings;
	int ret;

	j->types = calloc(j->c.n_tensors ? j->c.n_tensors : 1, sizeof(*j->types));
	j->packed = calloc(j->c.n_tensors ? j->c.n_tensors : 1, sizeof(*j->packed));
	j->packed_size = calloc(j->c.n_tensors ? j->c.n_tensors : 1, sizeof(*j->packed_size));
	if (!names || !j->types || !j->packed || !j->packed_size) {
		free(names);
		return -NB_ENOMEM;
	}
	for (size_t i = 0; i < j->c.n_tensors; i++) {
		names[i] = j->c.tensors[i].name;
		j->types[i] = nb_qplan_type_of(&j->o->plan, names[i], j->c.tensors[i].ndim, tied);
		j->total += j->c.tensors[i].ndim == 2;
	}
	ret = nb_qplan_check(&j->o->plan, names, j->c.n_tensors, tied);
	free(names);
	return ret;
}

static int quantize_layers(struct qjob *j)
{
	static const char *const globals[] = { "token_embd.weight", "output.weight" };
	int ret = 0;

	/* first: every layer's input depends on the embedding */
	for (size_t g = 0; !ret && g < 2; g++) {
		size_t i = find_index(j, globals[g]);

		if (i != SIZE_MAX)
			ret = quantize_rtn(j, i);
	}
	for (uint32_t l = 0; !ret && l < j->c.hp.n_layers; l++) {
		if (j->o->method == NB_QMETHOD_GPTQ) {
			ret = gptq_layer(j, l);
		} else if (j->o->method == NB_QMETHOD_AWQ) {
			ret = awq_layer(j, l);
		} else {
			for (int s = 0; !ret && s < N_STAGES; s++)
				for (int k = 0; !ret && k < 3 && stage_kinds[s][k]; k++)
					ret = quantize_rtn(j, tensor_index(j, l, stage_kinds[s][k]));
		}
	}
	return ret;
}

static void append(char *buf, size_t cap, size_t *n, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Appends to buf[cap] at *n; a full buffer truncates, never overflows. */
static void append(char *buf, size_t cap, size_t *n, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (*n + 1 >= cap)
		return;
	va_start(ap, fmt);
	k = vsnprintf(buf + *n, cap - *n, fmt, ap);
	va_end(ap);
	if (k > 0)
		*n = *n + (size_t)k < cap ? *n + (size_t)k : cap - 1;
}

/* A keep name as the recipe shows it: "embed" (and the tied "output") is
 * token_embd. */
static const char *recipe_name(const char *k, bool tied)
{
	return strcmp(k, "embed") == 0 || (tied && strcmp(k, "output") == 0) ? "token_embd" : k;
}

/* The keep names in runs of one type, each name once per run. */
static void recipe_keeps(const struct nb_qplan *p, bool tied, char *buf, size_t cap, size_t *n)
{
	for (size_t k = 0; k < p->n_keep; k++) {
		const char *nm = recipe_name(p->keep[k].name, tied);
		size_t first = k;
		bool dup = false;

		while (first > 0 && p->keep[first - 1].type == p->keep[k].type)
			first--;
		for (size_t i = first; i < k; i++)
			dup |= strcmp(recipe_name(p->keep[i].name, tied), nm) == 0;
		if (first == k)
			append(buf, cap, n, "; %s: %s", nb_dtype_name(p->keep[k].type), nm);
		else if (!dup)
			append(buf, cap, n, ", %s", nm);
	}
}

/* "q4_g32 gptq act-order damp 0.01 calib 2048 tokens; q8_g32: token_embd" */
static void recipe(const struct qjob *j, char *buf, size_t cap)
{
	const struct nb_quantize_opts *o = j->o;
	size_t n = 0;

	buf[0] = '\0';
	append(buf, cap, &n, "%s %s", nb_qinfo(o->plan.type)->name, nb_qmethod_names[o->method]);
	if (o->method == NB_QMETHOD_GPTQ)
		append(buf, cap, &n, "%s damp %g", o->act_order ? " act-order" : "",
		       (double)o->damp);
	if (o->method == NB_QMETHOD_AWQ)
		append(buf, cap, &n, "%s", o->no_clip ? " no-clip" : " clip");
	if (o->method != NB_QMETHOD_RTN)
		append(buf, cap, &n, " calib %zu tokens", j->n_ids);
	recipe_keeps(&o->plan, j->c.hp.tied_embeddings, buf, cap, &n);
}

static int output_views(const struct qjob *j, struct nb_tensor **out)
{
	int ret = nb_ckpt_views(&j->c, out);

	for (size_t i = 0; !ret && i < j->c.n_tensors; i++) {
		if (j->packed[i]) {
			(*out)[i].type = j->types[i];
			(*out)[i].data = j->packed[i];
			(*out)[i].size = j->packed_size[i];
		}
	}
	return ret;
}

static int write_out(struct qjob *j)
{
	char rec[1024];
	struct nb_tensor *views = NULL;
	int ret = output_views(j, &views);

	recipe(j, rec, sizeof(rec));
	if (!ret)
		ret = nb_out_write(&(struct nb_out_spec){
			.path = j->o->out, .applet = "quantize", .creator = j->o->creator, .c = &j->c,
			.tensors = views,
			.n_tensors = j->c.n_tensors, .src_path = j->o->src, .name = j->o->name,
			.source = j->info.desc, .quantization = rec,
			.golden_prompt = j->o->golden_prompt, .golden_steps = j->o->golden_steps,
			.model_version = j->o->model_version ? j->o->model_version
				       : j->info.model_version ? j->info.model_version : 1 });
	if (!ret)
		nb_info("quantize: wrote %s (%s) in %.1f s", j->o->out, rec, nb_sys_now() - j->t0);
	free(views);
	return ret;
}

static int run(struct qjob *j)
{
	int ret = nb_src_load(&j->c, j->o->src, &j->o->src_opts, &j->info);

	if (!ret)
		ret = plan_types(j);
	if (!ret && j->o->calib && j->o->method != NB_QMETHOD_RTN)
		ret = load_calib(j);
	if (!ret)
		ret = nb_ckpt_views(&j->c, &j->fviews);
	if (!ret)
		ret = quantize_layers(j);
	if (!ret && j->o->method != NB_QMETHOD_RTN && j->loss_rtn > 0)
		nb_info("quantize: output error of the calibrated linears: %s %.4g vs rtn %.4g (%.1f%%)",
			nb_qmethod_names[j->o->method], j->loss_method, j->loss_rtn,
			100.0 * j->loss_method / j->loss_rtn);
	if (!ret)
		ret = write_out(j);
	return ret;
}

static void job_free(struct qjob *j)
{
	for (size_t i = 0; j->packed && i < j->c.n_tensors; i++)
		free(j->packed[i]);
	free(j->packed);
	free(j->packed_size);
	free(j->types);
	free(j->fviews);
	free(j->ids);
	free(j->seqs);
	nb_ckpt_free(&j->c);
}

int nb_quantize_image(const struct nb_quantize_opts *o)
{
	struct qjob *j;
	int ret = nb_quantize_check(o);

	if (ret)
		return ret;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -NB_ENOMEM;
	j->o = o;
	j->tty = isatty(STDERR_FILENO);
	j->t0 = nb_sys_now();
	nb_ckpt_init(&j->c);
	ret = run(j);
	job_free(j);
	free(j);
	return ret;
}
