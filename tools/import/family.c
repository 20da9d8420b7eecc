/* The families the importers take, with their HF tensor names. */
#include "tools/import/family.h"

#include <stdio.h>
#include <string.h>

static const struct nb_hf_name llama_names[] = {
	{ "model.embed_tokens.weight", "token_embd.weight", false, NB_HF_AS_IS },
	{ "model.norm.weight", "output_norm.weight", false, NB_HF_AS_IS },
	{ "lm_head.weight", "output.weight", false, NB_HF_AS_IS },
	{ "input_layernorm.weight", "attn_norm.weight", true, NB_HF_AS_IS },
	{ "self_attn.q_proj.weight", "attn_q.weight", true, NB_HF_ROTATE_HALF },
	{ "self_attn.k_proj.weight", "attn_k.weight", true, NB_HF_ROTATE_HALF },
	{ "self_attn.v_proj.weight", "attn_v.weight", true, NB_HF_AS_IS },
	{ "self_attn.o_proj.weight", "attn_output.weight", true, NB_HF_AS_IS },
	{ "post_attention_layernorm.weight", "ffn_norm.weight", true, NB_HF_AS_IS },
	{ "mlp.gate_proj.weight", "ffn_gate.weight", true, NB_HF_AS_IS },
	{ "mlp.up_proj.weight", "ffn_up.weight", true, NB_HF_AS_IS },
	{ "mlp.down_proj.weight", "ffn_down.weight", true, NB_HF_AS_IS },
	{ "self_attn.rotary_emb.inv_freq", NULL, true, NB_HF_AS_IS }, /* from rope_theta */
	{ NULL, NULL, false, NB_HF_AS_IS },
};

static const struct nb_family families[] = {
	{ .arch = NB_ARCH_LLAMA, .hf_class = "LlamaForCausalLM", .hf_type = "llama",
	  .hf_act = "silu", .hf_tied = false, .hf_names = llama_names },
};

#define N_FAMILIES (sizeof(families) / sizeof(families[0]))

const struct nb_family *nb_family_hf(const char *hf_class, const char *hf_type)
{
	for (size_t i = 0; i < N_FAMILIES; i++) {
		if (hf_class ? strcmp(hf_class, families[i].hf_class) == 0
			     : hf_type && strcmp(hf_type, families[i].hf_type) == 0)
			return &families[i];
	}
	return NULL;
}

const struct nb_family *nb_family_of(uint32_t arch)
{
	for (size_t i = 0; i < N_FAMILIES; i++)
		if (families[i].arch == arch)
			return &families[i];
	return NULL;
}

void nb_family_hf_list(char *buf, size_t cap, bool types)
{
	size_t used = 0;

	if (cap)
		buf[0] = '\0';
	for (size_t i = 0; i < N_FAMILIES && used < cap; i++) {
		int n = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "",
				 types ? families[i].hf_type : families[i].hf_class);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}
