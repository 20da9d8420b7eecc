#include "runtime/text/chat_template.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/text/tok_internal.h"
#include "runtime/text/unicode.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- recognising a template ------------------------------------------------ */

/* Checked in this order: a Phi-3 template also contains <|user|>. */
static const struct {
	int family;
	const char *needle;
} markers[] = {
	{ NB_CHAT_LLAMA3, "<|start_header_id|>" },
	{ NB_CHAT_CHATML, "<|im_start|>" },
	{ NB_CHAT_LLAMA2, "[INST]" },
	{ NB_CHAT_PHI3, "<|end|>" },
	{ NB_CHAT_ZEPHYR, "<|user|>" },
};

static const char *const family_names[NB_CHAT_FAMILY_COUNT] = {
	"default", "llama2", "llama3", "chatml", "zephyr", "phi3",
};

static bool contains(const char *text, size_t len, const char *needle)
{
	return memmem(text, len, needle, strlen(needle)) != NULL;
}

/* Text that a Jinja string literal holds as is: valid UTF-8 without quote,
 * brace, escape or control character. */
static bool plain(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || strchr("'\"{}\\", c))
			return false;
	}
	for (size_t i = 0, k; i < n; i += k) {
		uint32_t cp;

		k = nb_unicode_decode(s + i, n - i, &cp);
		if (cp == NB_UC_REPLACEMENT && k == 1)
			return false;
	}
	return true;
}

/* A ChatML template may open with its own system turn when the
 * conversation has none, written as a Jinja string literal:
 * '<|im_start|>system\nYou are ...<|im_end|>\n'. Takes the first such
 * literal text that is plain (no quote, brace or escape inside). */
static void find_default_system(struct nb_chat_tmpl *t, const char *text, size_t len)
{
	static const char open[] = "<|im_start|>system", close[] = "<|im_end|>";
	const char *p = text, *end = text + len, *hit;

	while ((hit = memmem(p, (size_t)(end - p), open, sizeof(open) - 1)) != NULL) {
		const char *s = hit + sizeof(open) - 1, *e;

		p = s;
		if (end - s >= 2 && s[0] == '\\' && s[1] == 'n')
			s += 2; /* the Jinja escape, as tokenizer_config.json holds it */
		else if (s < end && s[0] == '\n')
			s++;
		else
			continue;
		e = memmem(s, (size_t)(end - s), close, sizeof(close) - 1);
		if (!e || e == s || (size_t)(e - s) >= sizeof(t->default_system))
			continue;
		if (!plain(s, (size_t)(e - s)))
			continue;
		memcpy(t->default_system, s, (size_t)(e - s));
		t->default_system[e - s] = '\0';
		return;
	}
}

int nb_chat_tmpl_detect(struct nb_chat_tmpl *t, const char *text, size_t len)
{
	memset(t, 0, sizeof(*t));
	t->family = NB_CHAT_DEFAULT;
	if (!text || len == 0)
		return 0;
	for (size_t i = 0; i < sizeof(markers) / sizeof(markers[0]); i++) {
		if (!contains(text, len, markers[i].needle))
			continue;
		/* <|end|> alone is no chat format; Phi-3 needs both. */
		if (markers[i].family == NB_CHAT_PHI3 && !contains(text, len, "<|user|>"))
			continue;
		t->family = markers[i].family;
		if (t->family == NB_CHAT_CHATML)
			find_default_system(t, text, len);
		return 0;
	}
	return -NB_ENOTSUP;
}

const char *nb_chat_family_name(int family)
{
	return family >= 0 && family < NB_CHAT_FAMILY_COUNT ? family_names[family] : "?";
}

const char *nb_chat_end_of_turn(int family)
{
	switch (family) {
	case NB_CHAT_LLAMA2: return "</s>";
	case NB_CHAT_LLAMA3: return "<|eot_id|>";
	case NB_CHAT_CHATML: return "<|im_end|>";
	case NB_CHAT_ZEPHYR: return "</s>";
	case NB_CHAT_PHI3: return "<|end|>";
	default: return NULL;
	}
}

/* ---- the prompt buffer ------------------------------------------------------ */

void nb_chat_prompt_init(struct nb_chat_prompt *p, size_t max_len)
{
	memset(p, 0, sizeof(*p));
	p->max_len = max_len < SIZE_MAX / 2 ? max_len : SIZE_MAX / 2;
}

void nb_chat_prompt_free(struct nb_chat_prompt *p)
{
	if (!p)
		return;
	free(p->text);
	free(p->spans);
	nb_chat_prompt_init(p, p->max_len);
}

static int put(struct nb_chat_prompt *p, const char *s, size_t n)
{
	if (n > p->max_len - p->len)
		return -NB_ERANGE;
	if (!p->text || p->len + n + 1 > p->cap) {
		size_t cap = p->cap ? p->cap : 256;
		char *grown;

		while (cap < p->len + n + 1)
			cap = cap > SIZE_MAX / 2 ? p->len + n + 1 : cap * 2;
		grown = realloc(p->text, cap);
		if (!grown)
			return -NB_ENOMEM;
		p->text = grown;
		p->cap = cap;
	}
	memcpy(p->text + p->len, s, n);
	p->len += n;
	p->text[p->len] = '\0';
	return 0;
}

static int put_s(struct nb_chat_prompt *p, const char *s)
{
	return put(p, s, strlen(s));
}

static int put_special(struct nb_chat_prompt *p, const char *s)
{
	size_t off = p->len;
	int err;

	if (p->n_spans == p->cap_spans) {
		size_t cap = p->cap_spans ? p->cap_spans * 2 : 16;
		struct nb_chat_span *grown = realloc(p->spans, cap * sizeof(*grown));

		if (!grown)
			return -NB_ENOMEM;
		p->spans = grown;
		p->cap_spans = cap;
	}
	err = put_s(p, s);
	if (!err)
		p->spans[p->n_spans++] = (struct nb_chat_span){ off, p->len - off };
	return err;
}

/* Python's str.strip() / Jinja's trim, for ASCII whitespace. */
static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void strip(const char **s, size_t *n, bool lead, bool trail)
{
	while (lead && *n && is_ws(**s)) {
		(*s)++;
		(*n)--;
	}
	while (trail && *n && is_ws((*s)[*n - 1]))
		(*n)--;
}

static const char *role_name(int role)
{
	return role == NB_ROLE_SYSTEM ? "system" : role == NB_ROLE_USER ? "user" : "assistant";
}

/* ---- the families --------------------------------------------------------------
 * Each renderer follows its family's published template; docs/api.md shows
 * the output. Every put() error is sticky: err keeps the first one. */

/* <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ...
 * The template takes messages[0] as the system prompt; here any run of
 * system messages joins (blank line between) the next user turn, and one
 * not followed by a user turn stands in a turn of its own. */
static int llama2_inst(struct nb_chat_prompt *p, const struct nb_chat_msg *sys, size_t n_sys,
		       const char *user, size_t user_len)
{
	int err = 0;

	if (p->len > 0)
		err = put_special(p, "<s>");
	err = err ? err : put_s(p, "[INST] ");
	if (n_sys) {
		/* content.strip() of "<<SYS>>\n" + sys + "\n<</SYS>>\n\n" + user */
		err = err ? err : put_s(p, "<<SYS>>\n");
		for (size_t i = 0; i < n_sys; i++) {
			if (i)
				err = err ? err : put_s(p, "\n\n");
			err = err ? err : put(p, sys[i].content, sys[i].len);
		}
		strip(&user, &user_len, false, true);
		err = err ? err : put_s(p, user_len ? "\n<</SYS>>\n\n" : "\n<</SYS>>");
	} else {
		strip(&user, &user_len, true, true);
	}
	err = err ? err : put(p, user, user_len);
	return err ? err : put_s(p, " [/INST]");
}

static int render_llama2(const struct nb_chat_tmpl *t, const struct nb_chat_msg *m, size_t n,
			 struct nb_chat_prompt *p)
{
	size_t sys_from = 0, n_sys = 0;
	int err = 0;

	(void)t;
	for (size_t i = 0; i < n && !err; i++) {
		const char *c = m[i].content;
		size_t len = m[i].len;

		if (m[i].role == NB_ROLE_SYSTEM) {
			sys_from = n_sys ? sys_from : i;
			n_sys++;
		} else if (m[i].role == NB_ROLE_USER) {
			err = llama2_inst(p, m + sys_from, n_sys, c, len);
			n_sys = 0;
		} else {
			if (n_sys)
				err = llama2_inst(p, m + sys_from, n_sys, "", 0);
			n_sys = 0;
			strip(&c, &len, true, true);
			err = err ? err : put_s(p, " ");
			err = err ? err : put(p, c, len);
			err = err ? err : put_s(p, " ");
			err = err ? err : put_special(p, "</s>");
		}
	}
	if (!err && n_sys)
		err = llama2_inst(p, m + sys_from, n_sys, "", 0);
	/* The generation prompt is the [/INST] already written. */
	return err;
}

/* <|start_header_id|>{role}<|end_header_id|>\n\n{content | trim}<|eot_id|> ...
 * then <|start_header_id|>assistant<|end_header_id|>\n\n */
static int llama3_header(struct nb_chat_prompt *p, const char *role)
{
	int err = put_special(p, "<|start_header_id|>");

	err = err ? err : put_s(p, role);
	err = err ? err : put_special(p, "<|end_header_id|>");
	return err ? err : put_s(p, "\n\n");
}

static int render_llama3(const struct nb_chat_tmpl *t, const struct nb_chat_msg *m, size_t n,
			 struct nb_chat_prompt *p)
{
	int err = 0;

	(void)t;
	for (size_t i = 0; i < n && !err; i++) {
		const char *c = m[i].content;
		size_t len = m[i].len;

		strip(&c, &len, true, true);
		err = llama3_header(p, role_name(m[i].role));
		err = err ? err : put(p, c, len);
		err = err ? err : put_special(p, "<|eot_id|>");
	}
	return err ? err : llama3_header(p, "assistant");
}

/* <|im_start|>{role}\n{content}<|im_end|>\n ... then <|im_start|>assistant\n */
static int chatml_turn(struct nb_chat_prompt *p, const char *role, const char *c, size_t len)
{
	int err = put_special(p, "<|im_start|>");

	err = err ? err : put_s(p, role);
	err = err ? err : put_s(p, "\n");
	err = err ? err : put(p, c, len);
	err = err ? err : put_special(p, "<|im_end|>");
	return err ? err : put_s(p, "\n");
}

static int render_chatml(const struct nb_chat_tmpl *t, const struct nb_chat_msg *m, size_t n,
			 struct nb_chat_prompt *p)
{
	int err = 0;

	if (t->default_system[0] && (n == 0 || m[0].role != NB_ROLE_SYSTEM))
		err = chatml_turn(p, "system", t->default_system, strlen(t->default_system));
	for (size_t i = 0; i < n && !err; i++)
		err = chatml_turn(p, role_name(m[i].role), m[i].content, m[i].len);
	err = err ? err : put_special(p, "<|im_start|>");
	return err ? err : put_s(p, "assistant\n");
}

/* <|{role}|>\n{content}</s>\n ... then <|assistant|>\n; Phi-3 ends turns with
 * <|end|> instead of the EOS text. */
static int render_zephyr(const struct nb_chat_tmpl *t, const struct nb_chat_msg *m, size_t n,
			 struct nb_chat_prompt *p)
{
	const char *end = t->family == NB_CHAT_PHI3 ? "<|end|>" : "</s>";
	int err = 0;

	for (size_t i = 0; i < n && !err; i++) {
		err = put_s(p, "<|");
		err = err ? err : put_s(p, role_name(m[i].role));
		err = err ? err : put_s(p, "|>\n");
		err = err ? err : put(p, m[i].content, m[i].len);
		err = err ? err : put_special(p, end);
		err = err ? err : put_s(p, "\n");
	}
	return err ? err : put_s(p, "<|assistant|>\n");
}

/* {system}\n\nUser: {user}\nAssistant: {assistant}\n ... Assistant:
 * No space after the last colon: the model's first token brings its own. */
static int render_default(const struct nb_chat_tmpl *t, const struct nb_chat_msg *m, size_t n,
			  struct nb_chat_prompt *p)
{
	int err = 0;

	(void)t;
	for (size_t i = 0; i < n && !err; i++) {
		if (m[i].role == NB_ROLE_USER)
			err = put_s(p, "User: ");
		else if (m[i].role == NB_ROLE_ASSISTANT)
			err = put_s(p, "Assistant: ");
		err = err ? err : put(p, m[i].content, m[i].len);
		err = err ? err : put_s(p, m[i].role == NB_ROLE_SYSTEM ? "\n\n" : "\n");
	}
	return err ? err : put_s(p, "Assistant:");
}

int nb_chat_render(const struct nb_chat_tmpl *t, const struct nb_chat_msg *msgs, size_t n,
		   struct nb_chat_prompt *out)
{
	static const struct nb_chat_tmpl none = { .family = NB_CHAT_DEFAULT };
	int err;

	if (!t)
		t = &none;
	for (size_t i = 0; i < n; i++) {
		if (msgs[i].role < NB_ROLE_SYSTEM || msgs[i].role > NB_ROLE_ASSISTANT ||
		    (!msgs[i].content && msgs[i].len))
			return -NB_EINVAL;
	}
	switch (t->family) {
	case NB_CHAT_LLAMA2: err = render_llama2(t, msgs, n, out); break;
	case NB_CHAT_LLAMA3: err = render_llama3(t, msgs, n, out); break;
	case NB_CHAT_CHATML: err = render_chatml(t, msgs, n, out); break;
	case NB_CHAT_ZEPHYR:
	case NB_CHAT_PHI3: err = render_zephyr(t, msgs, n, out); break;
	default: err = render_default(t, msgs, n, out); break;
	}
	/* An empty conversation still leaves text; keep "" valid either way. */
	if (!err && !out->text)
		err = put(out, "", 0);
	return err;
}

/* ---- tokenizing a rendered prompt ------------------------------------------------- */

int32_t nb_chat_token_id(const struct nb_tok *t, const char *s)
{
	return t && s && *s ? nb_tok_lookup(t, s, strlen(s)) : -1;
}

/* Appends the ids of text[0..len) (BOS first if bos) to ids[*n..max);
 * counts what does not fit. */
static int encode_part(const struct nb_tok *t, const char *text, size_t len, bool bos,
		       int32_t *ids, size_t max, size_t *n)
{
	size_t got = 0, room = *n < max ? max - *n : 0;
	int err = nb_tok_encode(t, text, len, bos, room ? ids + *n : NULL, room, &got);

	if (err && err != -NB_ERANGE)
		return err;
	*n += got;
	return 0;
}

int nb_chat_encode(const struct nb_tok *t, const char *text, size_t len,
		   const struct nb_chat_span *spans, size_t n_spans, int32_t *ids, size_t max,
		   size_t *n)
{
	bool bos = t && (t->spec.flags & NB_TOK_FLAG_ADD_BOS);
	size_t pos = 0, count = 0;
	int err = 0;

	if (n)
		*n = 0;
	if (!t || !n || (!text && len) || (!ids && max) || (n_spans && !spans))
		return -NB_EINVAL;
	for (size_t i = 0; i <= n_spans && !err; i++) {
		size_t at = i < n_spans ? spans[i].off : len;
		int32_t id;

		if (at < pos || at > len || (i < n_spans && spans[i].len > len - at)) {
			nb_err("chat: special-token span %zu outside the prompt", i);
			return -NB_EINVAL;
		}
		if (at > pos || bos)
			err = encode_part(t, text + pos, at - pos, bos, ids, max, &count);
		bos = false;
		if (err || i == n_spans)
			break;
		pos = at + spans[i].len;
		id = nb_tok_lookup(t, text + at, spans[i].len);
		if (id < 0) {
			err = encode_part(t, text + at, spans[i].len, false, ids, max, &count);
		} else {
			if (count < max)
				ids[count] = id;
			count++;
		}
	}
	if (err)
		return err;
	*n = count;
	return count > max ? -NB_ERANGE : 0;
}
