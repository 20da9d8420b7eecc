#include "runtime/server/upresp.h"
#include "runtime/base/err.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

void nb_upresp_init(struct nb_upresp *p, nb_upresp_event_fn on_event, void *arg)
{
	memset(p, 0, sizeof(*p));
	p->on_event = on_event;
	p->arg = arg;
}

void nb_upresp_free(struct nb_upresp *p)
{
	free(p->line);
	free(p->data);
	p->line = p->data = NULL;
	p->line_cap = p->data_cap = p->line_len = p->data_len = 0;
}

static int grow(char **buf, size_t *cap, size_t need)
{
	size_t c = *cap ? *cap : 256;
	char *n;

	if (need > NB_UPRESP_MAX_EVENT + 2)
		return -NB_EFORMAT;
	if (need <= *cap)
		return 0;
	while (c < need)
		c *= 2;
	n = realloc(*buf, c);
	if (!n)
		return -NB_ENOMEM;
	*buf = n;
	*cap = c;
	return 0;
}

/* ---- the head ------------------------------------------------------------- */

static bool token_has(const char *v, const char *word)
{
	size_t n = strlen(word);

	for (const char *s = v; (s = strcasestr(s, word)) != NULL; s += n)
		if ((s == v || s[-1] == ' ' || s[-1] == ',') && (!s[n] || s[n] == ' ' || s[n] == ','))
			return true;
	return false;
}

static int parse_length(const char *v, uint64_t *out)
{
	char *end;

	if (!isdigit((unsigned char)*v))
		return -NB_EFORMAT;
	errno = 0;
	*out = strtoull(v, &end, 10);
	end += strspn(end, " \t");
	return errno || *end ? -NB_EFORMAT : 0;
}

static int parse_head(struct nb_upresp *p)
{
	char *line, *save = NULL;
	bool have_len = false, http10;
	int minor;

	p->head[p->head_len] = '\0';
	line = strtok_r(p->head, "\r\n", &save);
	if (!line || sscanf(line, "HTTP/1.%1d %3d", &minor, &p->status) != 2 || minor > 1 ||
	    p->status < 100 || p->status > 599 || (line[12] && line[12] != ' '))
		return -NB_EFORMAT;
	http10 = minor == 0;
	p->keep_alive = !http10;
	while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
		char *v = strchr(line, ':');
		if (!v)
			return -NB_EFORMAT;
		*v++ = '\0';
		v += strspn(v, " \t");
		if (strcasecmp(line, "Content-Length") == 0) {
			uint64_t n;
			if (parse_length(v, &n) || (have_len && n != p->left))
				return -NB_EFORMAT;
			p->left = n;
			have_len = true;
		} else if (strcasecmp(line, "Transfer-Encoding") == 0) {
			if (!token_has(v, "chunked"))
				return -NB_EFORMAT;
			p->chunked = true;
		} else if (strcasecmp(line, "Connection") == 0) {
			if (token_has(v, "close"))
				p->keep_alive = false;
			else if (token_has(v, "keep-alive"))
				p->keep_alive = true;
		}
	}
	if (p->chunked)
		p->state = NB_UPRESP_CHUNK_SIZE;
	else if (have_len)
		p->state = p->left ? NB_UPRESP_LENGTH : NB_UPRESP_DONE;
	else {
		p->state = NB_UPRESP_UNTIL_CLOSE;
		p->keep_alive = false;
	}
	if (p->status == 204 || p->status == 304)
		p->state = NB_UPRESP_DONE;
	return 0;
}

/* Head bytes; returns how many of buf it took. */
static int feed_head(struct nb_upresp *p, const char *buf, size_t len, size_t *used)
{
	for (size_t i = 0; i < len; i++) {
		if (p->head_len >= NB_UPRESP_MAX_HEAD - 1)
			return -NB_EFORMAT;
		p->head[p->head_len++] = buf[i];
		if (p->head_len >= 4 && memcmp(p->head + p->head_len - 4, "\r\n\r\n", 4) == 0) {
			int ret;
			*used = i + 1;
			p->head_len -= 4;
			ret = parse_head(p);
			/* an interim 1xx answer: the real one follows */
			if (!ret && p->status < 200) {
				p->head_len = 0;
				p->state = NB_UPRESP_HEAD;
				p->chunked = false;
			}
			return ret;
		}
	}
	*used = len;
	return 0;
}

/* ---- the events ------------------------------------------------------------ */

static int end_event(struct nb_upresp *p)
{
	int ret = 0;

	if (p->have_data && p->on_event) {
		p->data[p->data_len] = '\0';
		ret = p->on_event(p->arg, p->data, p->data_len);
	}
	p->data_len = 0;
	p->have_data = false;
	return ret;
}

/* One SSE line (without its end): "data:" lines join, a blank line ends the event. */
static int sse_line(struct nb_upresp *p, const char *l, size_t n)
{
	int ret;

	if (n == 0)
		return end_event(p);
	if (n < 5 || memcmp(l, "data:", 5) != 0)
		return 0; /* comments, event:, id:, retry: */
	l += 5;
	n -= 5;
	if (n && *l == ' ') {
		l++;
		n--;
	}
	ret = grow(&p->data, &p->data_cap, p->data_len + n + 2);
	if (ret)
		return ret;
	if (p->have_data)
		p->data[p->data_len++] = '\n';
	memcpy(p->data + p->data_len, l, n);
	p->data_len += n;
	p->have_data = true;
	return 0;
}

static int body_bytes(struct nb_upresp *p, const char *buf, size_t len)
{
	if (p->status < 200 || p->status >= 300) {
		size_t take = NB_UPRESP_ERR_BODY - p->err_len < len ? NB_UPRESP_ERR_BODY - p->err_len : len;
		memcpy(p->err_body + p->err_len, buf, take);
		p->err_len += take;
		p->err_body[p->err_len] = '\0';
		return 0;
	}
	for (size_t i = 0; i < len; i++) {
		int ret;
		if (buf[i] == '\n') {
			size_t n = p->line_len;
			if (n && p->line[n - 1] == '\r')
				n--;
			ret = sse_line(p, p->line ? p->line : "", n);
			p->line_len = 0;
			if (ret)
				return ret;
			continue;
		}
		ret = grow(&p->line, &p->line_cap, p->line_len + 2);
		if (ret)
			return ret;
		p->line[p->line_len++] = buf[i];
	}
	return 0;
}

/* A line of the chunked framing (size, CRLF after data, trailer). */
static int framing_line(struct nb_upresp *p, const char *buf, size_t len, size_t *used, bool *whole)
{
	*whole = false;
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\n') {
			*used = i + 1;
			*whole = true;
			if (p->size_len && p->size_line[p->size_len - 1] == '\r')
				p->size_len--;
			p->size_line[p->size_len] = '\0';
			return 0;
		}
		if (p->size_len >= sizeof(p->size_line) - 1)
			return -NB_EFORMAT;
		p->size_line[p->size_len++] = buf[i];
	}
	*used = len;
	return 0;
}

static int chunk_size(struct nb_upresp *p)
{
	char *end;
	unsigned long long n;

	if (!isxdigit((unsigned char)p->size_line[0]))
		return -NB_EFORMAT;
	errno = 0;
	n = strtoull(p->size_line, &end, 16);
	if (errno || (*end && *end != ';' && *end != ' ') || n > NB_UPRESP_MAX_EVENT * 64ull)
		return -NB_EFORMAT;
	p->left = n;
	p->state = n ? NB_UPRESP_CHUNK_DATA : NB_UPRESP_TRAILER;
	return 0;
}

/* The body has ended: a last event without its blank line still counts. */
static int body_end(struct nb_upresp *p)
{
	int ret = 0;

	if (p->line_len)
		ret = body_bytes(p, "\n", 1);
	if (!ret)
		ret = end_event(p);
	p->state = NB_UPRESP_DONE;
	return ret;
}

static int feed_body(struct nb_upresp *p, const char *buf, size_t len, size_t *used)
{
	size_t take;
	bool whole;
	int ret = 0;

	switch (p->state) {
	case NB_UPRESP_CHUNK_SIZE:
	case NB_UPRESP_CHUNK_END:
	case NB_UPRESP_TRAILER:
		ret = framing_line(p, buf, len, used, &whole);
		if (ret || !whole)
			return ret;
		if (p->state == NB_UPRESP_CHUNK_SIZE)
			ret = chunk_size(p);
		else if (p->state == NB_UPRESP_CHUNK_END)
			ret = p->size_len ? -NB_EFORMAT : (p->state = NB_UPRESP_CHUNK_SIZE, 0);
		else if (!p->size_len)
			ret = body_end(p);
		p->size_len = 0;
		return ret;
	case NB_UPRESP_CHUNK_DATA:
	case NB_UPRESP_LENGTH:
		take = p->left < len ? (size_t)p->left : len;
		*used = take;
		p->left -= take;
		ret = body_bytes(p, buf, take);
		if (!ret && !p->left)
			ret = p->state == NB_UPRESP_LENGTH ? body_end(p)
							   : (p->state = NB_UPRESP_CHUNK_END, 0);
		return ret;
	case NB_UPRESP_UNTIL_CLOSE:
		*used = len;
		return body_bytes(p, buf, len);
	default:
		return -NB_EFORMAT; /* bytes after the end */
	}
}

int nb_upresp_feed(struct nb_upresp *p, const char *buf, size_t len)
{
	while (len) {
		size_t used = 0;
		int ret = p->state == NB_UPRESP_HEAD ? feed_head(p, buf, len, &used)
						     : feed_body(p, buf, len, &used);
		if (ret)
			return ret;
		buf += used;
		len -= used;
	}
	return 0;
}

int nb_upresp_eof(struct nb_upresp *p)
{
	if (p->state == NB_UPRESP_UNTIL_CLOSE)
		return body_end(p);
	return p->state == NB_UPRESP_DONE ? 0 : -NB_EIO;
}

/* ---- chunk objects ----------------------------------------------------------- */

static enum nb_finish finish_of(const char *s)
{
	if (strcmp(s, "stop") == 0)
		return NB_FINISH_STOP;
	if (strcmp(s, "length") == 0)
		return NB_FINISH_LENGTH;
	return NB_FINISH_STOP; /* content_filter, tool_calls: the answer ended */
}

static uint32_t count_of(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	double d = cJSON_IsNumber(v) ? v->valuedouble : 0;

	return d > 0 && d < 4e9 ? (uint32_t)d : 0;
}

static int take_text(struct nb_upresp_chunk *c, const cJSON *choice)
{
	const cJSON *delta = cJSON_GetObjectItemCaseSensitive(choice, "delta");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(delta ? delta : choice,
							  delta ? "content" : "text");
	const cJSON *fr = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");

	if (cJSON_IsString(fr))
		c->finish = finish_of(fr->valuestring);
	if (!cJSON_IsString(t) || !t->valuestring[0])
		return 0;
	c->text_len = strlen(t->valuestring);
	c->text = strdup(t->valuestring);
	return c->text ? 0 : -NB_ENOMEM;
}

int nb_upresp_chunk(const char *data, size_t len, struct nb_upresp_chunk *c)
{
	const cJSON *choices, *usage, *err;
	cJSON *root;
	int ret = 0;

	memset(c, 0, sizeof(*c));
	if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
		c->done = true;
		return 0;
	}
	root = cJSON_ParseWithLength(data, len);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return -NB_EFORMAT;
	}
	err = cJSON_GetObjectItemCaseSensitive(root, "error");
	if (err) {
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(err, "message");
		c->error = true;
		c->text = strdup(cJSON_IsString(m) ? m->valuestring : "the cloud reported an error");
		c->text_len = c->text ? strlen(c->text) : 0;
		cJSON_Delete(root);
		return c->text ? 0 : -NB_ENOMEM;
	}
	choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
	if (cJSON_IsArray(choices) && cJSON_GetArraySize(choices) > 0)
		ret = take_text(c, cJSON_GetArrayItem(choices, 0));
	usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
	if (cJSON_IsObject(usage)) {
		c->has_usage = true;
		c->prompt_tokens = count_of(usage, "prompt_tokens");
		c->completion_tokens = count_of(usage, "completion_tokens");
	}
	cJSON_Delete(root);
	return ret;
}
