#include "firmware/https.h"
#include "firmware/tls.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


#define MAX_HEAD 16384
#define BUF_SIZE 65536
#define MAX_BODY (1ull << 40)

struct conn {
	struct nb_tls_ctx ctx;
	struct nb_tls_conn tls;
	const char *url;
	double timeout;
};

int nb_https_parse_url(const char *url, char *host, size_t host_cap, char *port, size_t port_cap,
		       const char **path)
{
	const char *h, *end, *colon;
	size_t hlen;

	if (strncmp(url, "https://", 8) != 0)
		return -NB_EINVAL;
	h = url + 8;
	end = h + strcspn(h, "/?#");
	colon = memchr(h, ':', (size_t)(end - h));
	hlen = (size_t)((colon ? colon : end) - h);
	if (hlen == 0 || hlen >= host_cap)
		return -NB_EINVAL;
	for (size_t i = 0; i < hlen; i++)
		if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.')
			return -NB_EINVAL;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (colon) {
		size_t plen = (size_t)(end - colon - 1);
		if (plen == 0 || plen >= port_cap || plen > 5)
			return -NB_EINVAL;
		for (size_t i = 0; i < plen; i++)
			if (!isdigit((unsigned char)colon[1 + i]))
				return -NB_EINVAL;
		memcpy(port, colon + 1, plen);
		port[plen] = '\0';
		if (atoi(port) < 1 || atoi(port) > 65535)
			return -NB_EINVAL;
	} else {
		snprintf(port, port_cap, "443");
	}
	*path = *end == '/' ? end : "/";
	if (*end == '?' || *end == '#')
		return -NB_EINVAL; /* a query without a path: not an image URL */
	for (const char *p = *path; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return -NB_EINVAL;
	return 0;
}

static int send_all(struct conn *c, const char *buf, size_t len)
{
	if (nb_tls_send(&c->tls, buf, len)) {
		nb_err("update: %s: sending the request failed", c->url);
		return -NB_EIO;
	}
	return 0;
}

/* Some bytes, 0 at the end of the stream, or a negative error. */
static int recv_some(struct conn *c, uint8_t *buf, size_t cap)
{
	return nb_tls_recv(&c->tls, buf, cap, c->timeout);
}

/* Status 200 and a Content-Length are required; no redirects, no chunks. */
static int parse_head(struct conn *c, char *head, uint64_t *length)
{
	char *line, *save = NULL;
	int status = 0;
	bool have_len = false;

	line = strtok_r(head, "\r\n", &save);
	if (!line || sscanf(line, "HTTP/1.%*1[01] %3d", &status) != 1) {
		nb_err("update: %s: not an HTTP response", c->url);
		return -NB_EIO;
	}
	if (status != 200) {
		nb_err("update: %s: the server answered \"%.80s\"", c->url, line + 9);
		return -NB_EIO;
	}
	while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
		char *v = strchr(line, ':');
		if (!v)
			continue;
		*v++ = '\0';
		v += strspn(v, " \t");
		if (strcasecmp(line, "Content-Length") == 0) {
			uint64_t n;
			char *end;
			errno = 0;
			n = strtoull(v, &end, 10);
			if (!isdigit((unsigned char)*v) || (*end && *end != ' ') || errno ||
			    n > MAX_BODY || (have_len && n != *length)) {
				nb_err("update: %s: bad Content-Length '%s'", c->url, v);
				return -NB_EIO;
			}
			*length = n;
			have_len = true;
		} else if (strcasecmp(line, "Transfer-Encoding") == 0) {
			nb_err("update: %s: chunked transfers are not supported (serve the file as is)",
			       c->url);
			return -NB_ENOTSUP;
		}
	}
	if (!have_len) {
		nb_err("update: %s: the server sent no Content-Length: a cut download could not "
		       "be told from a whole one", c->url);
		return -NB_EIO;
	}
	return 0;
}

static int read_head(struct conn *c, uint8_t *buf, size_t *got, size_t *head_len)
{
	*got = 0;
	for (;;) {
		uint8_t *end;
		int n = recv_some(c, buf + *got, BUF_SIZE - *got);

		if (n <= 0) {
			nb_err("update: %s: %s before the response", c->url,
			       n == -NB_ETIMEDOUT ? "timed out" : "connection closed");
			return n == -NB_ETIMEDOUT ? n : -NB_EIO;
		}
		*got += (size_t)n;
		end = memmem(buf, *got, "\r\n\r\n", 4);
		if (end) {
			*head_len = (size_t)(end - buf) + 4;
			return 0;
		}
		if (*got >= MAX_HEAD) {
			nb_err("update: %s: response headers too long", c->url);
			return -NB_EIO;
		}
	}
}

static int transfer(struct conn *c, const char *host, const char *port, const char *path,
		    nb_https_sink sink, void *arg)
{
	uint8_t *buf = malloc(BUF_SIZE + 1);
	char req[2048];
	size_t got = 0, head_len = 0;
	uint64_t length = 0, done;
	int n, ret;

	if (!buf)
		return -NB_ENOMEM;
	n = snprintf(req, sizeof(req),
		     "GET %s HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: nibble-update\r\n"
		     "Accept: */*\r\nConnection: close\r\n\r\n",
		     path, host, strcmp(port, "443") ? ":" : "", strcmp(port, "443") ? port : "");
	ret = n < 0 || (size_t)n >= sizeof(req) ? -NB_EINVAL : send_all(c, req, (size_t)n);
	if (!ret)
		ret = read_head(c, buf, &got, &head_len);
	if (!ret) {
		char save = (char)buf[head_len];
		buf[head_len] = '\0';
		ret = parse_head(c, (char *)buf, &length);
		buf[head_len] = (uint8_t)save;
	}
	done = got - head_len;
	if (!ret && done > length) {
		nb_err("update: %s: more bytes than Content-Length", c->url);
		ret = -NB_EIO;
	}
	if (!ret && done)
		ret = sink(arg, buf + head_len, (size_t)done);
	while (!ret && done < length) {
		size_t want = length - done < BUF_SIZE ? (size_t)(length - done) : BUF_SIZE;
		n = recv_some(c, buf, want);
		if (n <= 0) {
			nb_err("update: %s: %s after %llu of %llu bytes", c->url,
			       n == -NB_ETIMEDOUT ? "timed out" : "connection closed",
			       (unsigned long long)done, (unsigned long long)length);
			ret = n == -NB_ETIMEDOUT ? n : -NB_EIO;
			break;
		}
		done += (uint64_t)n;
		ret = sink(arg, buf, (size_t)n);
	}
	free(buf);
	return ret;
}

int nb_https_get(const struct nb_https_opts *o, nb_https_sink sink, void *arg)
{
	char host[256], port[8];
	const char *path;
	struct conn c = { .url = o->url, .timeout = o->timeout > 0 ? o->timeout : 30 };
	int ret;

	if (nb_https_parse_url(o->url, host, sizeof(host), port, sizeof(port), &path)) {
		nb_err("update: '%s' is not an https://host[:port]/path URL", o->url);
		return -NB_EINVAL;
	}
	ret = nb_tls_ctx_open(&c.ctx, &(struct nb_tls_opts){ .who = "update", .host = host,
							    .port = port, .ca_file = o->ca_file,
							    .connect_timeout = c.timeout });
	if (ret)
		return ret;
	ret = nb_tls_connect(&c.tls, &c.ctx);
	if (!ret) {
		ret = transfer(&c, host, port, path, sink, arg);
		nb_tls_close(&c.tls);
	}
	nb_tls_ctx_close(&c.ctx);
	return ret == -NB_EPERM ? -NB_EIO : ret;
}
