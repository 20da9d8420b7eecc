/* `nibble inspect`: what an image holds, and optionally whether it still
 * produces its golden test vector. */
#include "firmware/arch.h"
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/model/llm.h"
#include "runtime/base/log.h"

#include <getopt.h>
#include <string.h>

static const char *const section_names[] = {
	[NB_SECTION_HPARAMS] = "hparams", [NB_SECTION_META] = "meta",
	[NB_SECTION_TOKENIZER] = "tokenizer", [NB_SECTION_TENSORS] = "tensors",
	[NB_SECTION_GOLDEN] = "golden", [NB_SECTION_DATA] = "data",
	[NB_SECTION_TRAILER] = "trailer",
};

static void print_header(const struct nb_image *img)
{
	const struct nb_image_header *h = img->hdr;

	printf("image:    format %u, %llu bytes, model version %llu\n", h->version,
	       (unsigned long long)h->file_size, (unsigned long long)h->model_version);
	for (uint32_t i = 0; i < h->n_sections; i++)
		printf("section   %-10s offset %10llu  size %10llu\n",
		       section_names[h->sections[i].kind], (unsigned long long)h->sections[i].offset,
		       (unsigned long long)h->sections[i].size);
}

static void print_hparams(const struct nb_hparams *hp)
{
	printf("arch:     %s  dim %u  hidden %u  layers %u  heads %u  kv_heads %u  head_dim %u\n",
	       nb_arch_get(hp->arch)->name, hp->dim, hp->hidden_dim, hp->n_layers, hp->n_heads,
	       hp->n_kv_heads, hp->head_dim);
	printf("          vocab %u  seq_len %u  tied %u  norm_eps %g  rope_theta %g  rope_scaling %s\n",
	       hp->vocab_size, hp->seq_len, hp->tied_embeddings, (double)hp->norm_eps,
	       (double)hp->rope_theta, hp->rope_scaling == NB_ROPE_SCALING_LLAMA3 ? "llama3" : "none");
	/* what the layer adds to Llama's, if anything */
	if (hp->features || hp->activation != NB_ACT_SILU || hp->norm_offset != 0.0f ||
	    hp->embed_scale != 0.0f)
		printf("layer:    %s%sactivation %s  norm_offset %g  embed_scale %g\n",
		       hp->features & NB_FEAT_QKV_BIAS ? "qkv_bias  " : "",
		       hp->features & NB_FEAT_QK_NORM ? "qk_norm  " : "",
		       hp->activation == NB_ACT_GELU_TANH ? "gelu_tanh" : "silu",
		       (double)hp->norm_offset, (double)hp->embed_scale);
}

/* META values, the long ones (license, chat template) cut to their first line. */
static void print_meta(const struct nb_image *img)
{
	static const char *const keys[] = { "name", "source", "quantization", "created_by",
					    "compatible", "license", "chat_template" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *v;
		size_t len, line;

		if (nb_image_meta(img, keys[i], &v, &len))
			continue;
		line = strcspn(v, "\n");
		line = line < len ? line : len;
		printf("%-9s %.*s%s", keys[i], (int)line, v, line < len ? " ..." : "");
		printf(line < len ? " (%zu bytes)\n" : "\n", len);
	}
}

static void print_tensors(const struct nb_image *img)
{
	printf("tensors:  %u\n", img->n_tensors);
	for (uint32_t i = 0; i < img->n_tensors; i++) {
		const struct nb_image_tensor *e = &img->entries[i];
		char shape[64] = "";
		for (uint32_t d = 0; d < e->ndim; d++)
			snprintf(shape + strlen(shape), sizeof(shape) - strlen(shape), "%s%llu",
				 d ? " x " : "", (unsigned long long)e->shape[d]);
		printf("  %-28s %-5s %-14s offset %10llu  size %10llu\n", e->name,
		       nb_dtype_name(e->type), shape, (unsigned long long)e->offset,
		       (unsigned long long)e->size);
	}
}

static void print_golden(const struct nb_image *img)
{
	const struct nb_image_golden *g = img->golden;

	if (!g) {
		printf("golden:   none\n");
		return;
	}
	printf("golden:   prompt");
	for (uint32_t i = 0; i < g->n_prompt; i++)
		printf(" %d", g->ids[i]);
	printf(" -> %u greedy tokens:", g->n_expected);
	for (uint32_t i = 0; i < g->n_expected; i++)
		printf(" %d", g->ids[g->n_prompt + i]);
	printf("\n");
}

static int check_golden(const struct nb_llm *l)
{
	uint32_t diff = 0;
	int ret = nb_llm_check_golden(l, &diff);

	if (ret == 0)
		printf("check:    golden vector reproduced exactly\n");
	else if (ret == -NB_ESELFTEST)
		printf("check:    FAILED: token %u of the golden continuation differs\n", diff);
	else
		printf("check:    FAILED: %s\n", nb_strerror(ret));
	return ret;
}

static int inspect_main(int argc, char **argv)
{
	static const struct option opts[] = { { "check", no_argument, NULL, 'c' },
					      { NULL, 0, NULL, 0 } };
	struct nb_llm l;
	int c, check = 0, ret;

	while ((c = nb_getopt("inspect", argc, argv, "c", opts)) != -1) {
		if (c != 'c')
			return NB_EXIT_USAGE;
		check = 1;
	}
	if (optind == argc)
		return nb_usage_error("inspect", "no image (MODEL.nib)");
	if (optind + 1 != argc)
		return nb_usage_error("inspect", "unexpected argument '%s'", argv[optind + 1]);
	ret = nb_llm_open(&l, argv[optind], 0);
	if (ret)
		return NB_EXIT_FAIL;
	print_header(&l.img);
	print_hparams(&l.img.hp);
	print_meta(&l.img);
	printf("tokenizer: %u pieces, bos %d, eos %d\n", nb_tok_vocab_size(l.tok), nb_tok_bos(l.tok),
	       nb_tok_eos(l.tok));
	print_tensors(&l.img);
	print_golden(&l.img);
	if (check)
		ret = check_golden(&l);
	nb_llm_close(&l);
	return ret ? NB_EXIT_FAIL : NB_EXIT_OK;
}

const struct nb_applet nb_applet_inspect = {
	.name = "inspect",
	.summary = "print a model image's header, manifest and tensor table",
	.usage = "usage: nibble inspect [--check] MODEL.nib\n\n"
		 "Validates the image and prints its header and sections, hyper-parameters,\n"
		 "manifest (name, source, quantization, license, chat template), tokenizer,\n"
		 "tensor table and golden test vector. --check also runs the golden vector\n"
		 "and fails unless the model reproduces it token for token.\n",
	.main = inspect_main,
};
