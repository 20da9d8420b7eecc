/* Chat templates: a conversation (role, content) -> the prompt text a chat
 * model was trained on.
 *
 * The image's chat_template is Jinja source. There is no Jinja engine here:
 * the common families are recognised by a distinctive substring and
 * rendered by hand-written C (docs/api.md lists them and shows each one).
 * Models without a template (or with one not recognised) get a plain
 * "User: / Assistant:" transcript.
 *
 * The prompt never starts with the BOS text: BOS is added by the tokenizer
 * (nb_chat_encode, from the tokenizer's add_bos flag), as llama.cpp does.
 * Special-token text the template inserts (<|im_start|>, </s>, ...) is
 * recorded as spans so nb_chat_encode turns exactly those into their
 * tokens, and not the same text inside a message (SentencePiece never
 * matches control tokens in text; byte-level BPE matches added tokens
 * anywhere, a limit of the tokenizer). */
#ifndef NB_CHAT_H
#define NB_CHAT_H

#include "runtime/text/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

enum nb_chat_family {
	NB_CHAT_DEFAULT = 0, /* no template: "User: ...\nAssistant:" */
	NB_CHAT_LLAMA2,      /* [INST] / <<SYS>> (Llama 2, Mistral-style) */
	NB_CHAT_LLAMA3,      /* <|start_header_id|> (Llama 3) */
	NB_CHAT_CHATML,      /* <|im_start|> (Qwen, SmolLM) */
	NB_CHAT_ZEPHYR,      /* <|user|> ... </s> (Zephyr, TinyLlama chat) */
	NB_CHAT_PHI3,        /* <|user|> ... <|end|> (Phi-3) */
	NB_CHAT_FAMILY_COUNT
};

enum nb_chat_role { NB_ROLE_SYSTEM = 0, NB_ROLE_USER, NB_ROLE_ASSISTANT };

#define NB_CHAT_MAX_DEFAULT_SYSTEM 512 /* longer default system prompts are ignored */

struct nb_chat_tmpl {
	int family; /* enum nb_chat_family */
	/* ChatML templates that open with a system turn of their own when the
	 * conversation has none (Qwen2/2.5, SmolLM2): its text, else "". */
	char default_system[NB_CHAT_MAX_DEFAULT_SYSTEM];
};

struct nb_chat_msg {
	int role; /* enum nb_chat_role */
	const char *content;
	size_t len;
};

/* Special-token text in a rendered prompt: text[off .. off + len). */
struct nb_chat_span {
	size_t off, len;
};

/* A rendered prompt: NUL-terminated text and its special-token spans. */
struct nb_chat_prompt {
	char *text;
	size_t len, cap, max_len;
	struct nb_chat_span *spans;
	size_t n_spans, cap_spans;
};

/* Recognises the family of Jinja template text (len bytes, need not be
 * NUL-terminated). NULL or empty: DEFAULT, 0. Not recognised: DEFAULT and
 * -NB_ENOTSUP, so the caller can warn. Never fails otherwise. */
int nb_chat_tmpl_detect(struct nb_chat_tmpl *t, const char *text, size_t len);
const char *nb_chat_family_name(int family);
/* Text of the token that ends an assistant turn ("<|eot_id|>", "<|im_end|>",
 * "</s>", ...): generation stops on it as on EOS. NULL for DEFAULT. */
const char *nb_chat_end_of_turn(int family);

/* max_len: the prompt may not grow beyond it (-NB_ERANGE). */
void nb_chat_prompt_init(struct nb_chat_prompt *p, size_t max_len);
void nb_chat_prompt_free(struct nb_chat_prompt *p);

/* Appends the conversation and the start of the assistant's reply (the
 * generation prompt). -NB_ERANGE past max_len, -NB_ENOMEM, -NB_EINVAL for
 * a bad role. */
int nb_chat_render(const struct nb_chat_tmpl *t, const struct nb_chat_msg *msgs, size_t n,
		   struct nb_chat_prompt *out);

/* Tokenizes a prompt: BOS first if the tokenizer's add_bos flag says so,
 * each span as its single token when the vocabulary has one (else as text),
 * the text between spans with nb_tok_encode (so SentencePiece prefixes each
 * piece after a special token with a space, as llama.cpp does). Same
 * contract as nb_tok_encode: *n gets the count needed, -NB_ERANGE if more
 * than max. */
int nb_chat_encode(const struct nb_tok *t, const char *text, size_t len,
		   const struct nb_chat_span *spans, size_t n_spans, int32_t *ids, size_t max,
		   size_t *n);
/* Id of the piece whose bytes are exactly s, or -1 (end-of-turn lookup). */
int32_t nb_chat_token_id(const struct nb_tok *t, const char *s);

#endif
