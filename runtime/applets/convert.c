/* `nibble convert`: import a checkpoint (llama2.c, HF safetensors, GGUF)
 * and write a float32 model image with its manifest and golden vector,
 * through the load and write halves of tools/import/convert.h. */
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/version.h"
#include "runtime/base/log.h"
#include "tools/import/convert.h"

#include <stdio.h>
#include <stdlib.h>

struct convert_opts {
	const char *src, *out, *name;
	const char *golden_prompt;
	uint32_t golden_steps;
	unsigned long long model_version;
	struct nb_src_opts src_opts;
};

static const char *const formats[] = { "llama2c", "hf", "gguf", "nib" };

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
	size_t fmt;
	int c, ret = 0;

	while (!ret && (c = nb_getopt("convert", argc, argv, "o:t:f:", opts)) != -1) {
		switch (c) {
		case 'o': o->out = optarg; break;
		case 't': o->src_opts.tokenizer = optarg; break;
		case 'N': o->name = optarg; break;
		case 'L': o->src_opts.license_file = optarg; break;
		case 'g': o->golden_prompt = optarg; break;
		case 'f':
			ret = nb_arg_choice("convert", "--format", optarg, formats, 4, &fmt);
			o->src_opts.format = optarg;
			break;
		case 'V':
			ret = nb_arg_uint("convert", "--model-version", optarg, 1, UINT64_MAX,
					  &o->model_version);
			break;
		case 's':
			ret = nb_arg_u32("convert", "--golden-steps", optarg, 1, 4096, &o->golden_steps);
			break;
		default: return -NB_EINVAL;
		}
	}
	if (ret)
		return ret;
	if (optind == argc)
		ret = nb_usage_error("convert", "no source (SRC)");
	else if (optind + 1 != argc)
		ret = nb_usage_error("convert", "unexpected argument '%s'", argv[optind + 1]);
	else if (!o->out)
		ret = nb_usage_error("convert", "no output (-o OUT.nib)");
	else
		o->src = argv[optind];
	return ret ? -NB_EINVAL : 0;
}

static int convert(const struct convert_opts *o, struct nb_ckpt *c, struct nb_src_info *info)
{
	struct nb_tensor *views = NULL;
	char creator[64];
	int ret = nb_src_load(c, o->src, &o->src_opts, info);

	snprintf(creator, sizeof(creator), "nibble %s convert", nb_version_string());
	if (!ret)
		ret = nb_ckpt_views(c, &views);
	if (!ret)
		ret = nb_out_write(&(struct nb_out_spec){
			.path = o->out, .applet = "convert", .creator = creator, .c = c,
			.tensors = views, .n_tensors = c->n_tensors, .src_path = o->src,
			.name = o->name, .source = info->desc, .quantization = "f32",
			.golden_prompt = o->golden_prompt, .golden_steps = o->golden_steps,
			.model_version = o->model_version });
	free(views);
	return ret;
}

static int convert_main(int argc, char **argv)
{
	struct convert_opts o = { .golden_prompt = "Once upon a time", .golden_steps = 16,
				  .model_version = 1, .src_opts = { .applet = "convert" } };
	struct nb_src_info *info;
	struct nb_ckpt c;
	int ret;

	if (parse_opts(&o, argc, argv))
		return NB_EXIT_USAGE;
	/* Before the import, which can take long: fail where nothing is lost. */
	if (nb_out_check("convert", o.out))
		return NB_EXIT_FAIL;
	info = malloc(sizeof(*info));
	nb_ckpt_init(&c);
	ret = info ? convert(&o, &c, info) : -NB_ENOMEM;
	/* The cause was logged where it was found, naming its file. */
	if (ret)
		nb_err("convert: %s not written", o.out);
	else
		nb_info("convert: wrote %s (%zu tensors)", o.out, c.n_tensors);
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
		 "      --model-version N   monotonic model version for updates, 1 or more (1)\n"
		 "      --golden-prompt T   prompt of the golden vector (\"Once upon a time\")\n"
		 "      --golden-steps N    its greedy tokens, 1..4096 (16)\n",
	.main = convert_main,
};
