/* `nibble quantize`: a float source (checkpoint or float32 image) into a
 * quantized image, by round-to-nearest, AWQ or GPTQ (tools/quant/quantize.h). */
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/version.h"
#include "runtime/base/log.h"
#include "tools/quant/quantize.h"

#include <stdio.h>
#include <stdlib.h>

/* What the options gave, besides the job's own options. */
struct qargs {
	struct nb_quantize_opts o;
	bool have_type, have_damp;
	char creator[64];
};

static const char *const formats[] = { "llama2c", "hf", "gguf", "nib" };

static int parse_one(struct qargs *a, int c, const char *arg)
{
	struct nb_quantize_opts *o = &a->o;
	size_t i;
	double v;
	int ret;

	switch (c) {
	case 'o': o->out = arg; return 0;
	case 'T': a->have_type = true; return nb_qplan_parse_type(arg, false, &o->plan.type);
	case 'm':
		ret = nb_arg_choice("quantize", "--method", arg, nb_qmethod_names, NB_QMETHOD_COUNT, &i);
		o->method = (enum nb_qmethod)i;
		return ret;
	case 'c': o->calib = arg; return 0;
	case 'n':
		return nb_arg_u32("quantize", "--calib-tokens", arg, 1, NB_QUANTIZE_MAX_CALIB_TOKENS,
				  &o->calib_tokens);
	case 'k': return nb_qplan_add_keep(&o->plan, arg);
	case 'a': o->act_order = true; return 0;
	case 'd':
		a->have_damp = true;
		ret = nb_arg_interval("quantize", "--damp", arg, 0, 1, NB_ARG_ABOVE_MIN, &v);
		o->damp = (float)v;
		return ret;
	case 'C': o->no_clip = true; return 0;
	case 's': return nb_arg_u32("quantize", "--golden-steps", arg, 1, 4096, &o->golden_steps);
	case 'g': o->golden_prompt = arg; return 0;
	case 't': o->src_opts.tokenizer = arg; return 0;
	case 'f':
		o->src_opts.format = arg;
		return nb_arg_choice("quantize", "--format", arg, formats, 4, &i);
	case 'N': o->name = arg; return 0;
	case 'L': o->src_opts.license_file = arg; return 0;
	case 'V': {
		unsigned long long mv;

		ret = nb_arg_uint("quantize", "--model-version", arg, 1, UINT64_MAX, &mv);
		o->model_version = mv;
		return ret;
	}
	default: return -NB_EINVAL;
	}
}

/* Options that belong to another method, or that are missing. */
static int check_args(const struct qargs *a)
{
	const struct nb_quantize_opts *o = &a->o;

	if (!o->out)
		return nb_usage_error("quantize", "no output (-o OUT.nib)");
	if (!a->have_type)
		return nb_usage_error("quantize", "no --type");
	if (o->method != NB_QMETHOD_GPTQ && (o->act_order || a->have_damp))
		return nb_usage_error("quantize", "--act-order and --damp are options of --method gptq");
	if (o->method != NB_QMETHOD_AWQ && o->no_clip)
		return nb_usage_error("quantize", "--no-clip is an option of --method awq");
	if (o->method != NB_QMETHOD_RTN && !o->calib)
		return nb_usage_error("quantize", "--method %s needs calibration text (--calib FILE)",
				      nb_qmethod_names[o->method]);
	return 0;
}

static int parse_opts(struct qargs *a, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },   { "type", required_argument, NULL, 'T' },
		{ "method", required_argument, NULL, 'm' },   { "calib", required_argument, NULL, 'c' },
		{ "calib-tokens", required_argument, NULL, 'n' },
		{ "keep", required_argument, NULL, 'k' },     { "act-order", no_argument, NULL, 'a' },
		{ "damp", required_argument, NULL, 'd' },     { "no-clip", no_argument, NULL, 'C' },
		{ "golden-steps", required_argument, NULL, 's' },
		{ "golden-prompt", required_argument, NULL, 'g' },
		{ "tokenizer", required_argument, NULL, 't' }, { "format", required_argument, NULL, 'f' },
		{ "name", required_argument, NULL, 'N' },     { "license", required_argument, NULL, 'L' },
		{ "model-version", required_argument, NULL, 'V' }, { NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = nb_getopt("quantize", argc, argv, "o:t:f:", opts)) != -1)
		if (parse_one(a, c, optarg))
			return -NB_EINVAL;
	if (optind == argc)
		return nb_usage_error("quantize", "no source (SRC)");
	if (optind + 1 != argc)
		return nb_usage_error("quantize", "unexpected argument '%s'", argv[optind + 1]);
	a->o.src = argv[optind];
	return check_args(a);
}

static int quantize_main(int argc, char **argv)
{
	struct qargs *a = calloc(1, sizeof(*a));
	int ret;

	if (!a)
		return NB_EXIT_FAIL;
	a->o = (struct nb_quantize_opts){ .method = NB_QMETHOD_RTN, .calib_tokens = 2048,
					  .golden_steps = 16, .golden_prompt = "Once upon a time",
					  .damp = NB_GPTQ_DAMP, .creator = a->creator,
					  .src_opts = { .applet = "quantize" } };
	snprintf(a->creator, sizeof(a->creator), "nibble %s quantize", nb_version_string());
	if (parse_opts(a, argc, argv)) {
		free(a);
		return NB_EXIT_USAGE;
	}
	if (a->o.calib && a->o.method == NB_QMETHOD_RTN)
		nb_warn("quantize: rtn does not use --calib");
	/* Before the quantization, which can take long: fail where nothing is lost. */
	ret = nb_out_check("quantize", a->o.out);
	if (!ret) {
		ret = nb_quantize_image(&a->o);
		if (ret) /* the cause was logged where it was found */
			nb_err("quantize: %s not written", a->o.out);
	}
	free(a);
	return ret ? NB_EXIT_FAIL : NB_EXIT_OK;
}

const struct nb_applet nb_applet_quantize = {
	.name = "quantize",
	.summary = "quantize a model to 4 or 8 bits (RTN, AWQ, GPTQ) into an image",
	.usage = "usage: nibble quantize SRC -o OUT.nib --type TYPE [options]\n\n"
		 "SRC is anything `nibble convert` reads (llama2.c, HF directory, GGUF) or a\n"
		 "float32 image. Matrices become TYPE, norm vectors stay float32; the golden\n"
		 "vector is computed on the quantized model.\n\n"
		 "  -o, --output FILE       the image to write (atomically)\n"
		 "      --type TYPE         q4_g32 | q4_g64 | q4_g128 | q4z_g32 | q4z_g128 | q8_g32\n"
		 "                          (q4: 4-bit symmetric, q4z: with zero points; g: group)\n"
		 "      --method M          rtn (round to nearest, default) | awq | gptq\n"
		 "      --calib FILE        calibration text (needed by awq, gptq); documents\n"
		 "                          separated by a line <|endoftext|>\n"
		 "      --calib-tokens N    use its first N tokens, 1..1048576 (2048)\n"
		 "      --keep TYPE:NAMES   give NAMES another type (f32, q8, any TYPE): embed,\n"
		 "                          output, attn_q, attn_k, attn_v, attn_output, ffn_gate,\n"
		 "                          ffn_up, ffn_down or tensor names; repeatable\n"
		 "      --act-order         gptq: quantize inputs by decreasing activation energy\n"
		 "      --damp F            gptq: Hessian damping in (0, 1], times its mean\n"
		 "                          diagonal (0.01)\n"
		 "      --no-clip           awq: no clipping search\n"
		 "  -t, --tokenizer FILE    llama2.c tokenizer.bin (default: beside SRC)\n"
		 "  -f, --format F          llama2c | hf | gguf | nib (default: detected)\n"
		 "      --name NAME         model name (default: from SRC)\n"
		 "      --license FILE      license text (default: from SRC)\n"
		 "      --model-version N   model version, 1 or more (default: SRC's, or 1)\n"
		 "      --golden-prompt T   prompt of the golden vector (\"Once upon a time\")\n"
		 "      --golden-steps N    its greedy tokens, 1..4096 (16)\n",
	.main = quantize_main,
};
