/* A minimal HTTPS client for updates (mbedTLS): GET one URL, hand the body
 * to a callback as it arrives. The server's certificate must chain to the
 * CA file given and name the URL's host (also sent as SNI); there is no
 * fallback to an unverified connection. The body must be exactly as long
 * as the server's Content-Length says: a connection that ends early is an
 * error, never a short image. */
#ifndef NB_HTTPS_H
#define NB_HTTPS_H

#include <stddef.h>
#include <stdint.h>

struct nb_https_opts {
	const char *url;     /* https://host[:port]/path */
	const char *ca_file; /* PEM certificates */
	double timeout;      /* seconds without progress (0: 30) */
};

/* sink gets the body in pieces as it arrives; a non-zero return stops the transfer. */
typedef int (*nb_https_sink)(void *arg, const void *buf, size_t len);

/* 0, or -NB_EINVAL (URL), -NB_ENOENT (CA file), -NB_EIO (network, TLS,
 * HTTP status, short body), -NB_ETIMEDOUT, or the sink's error. */
int nb_https_get(const struct nb_https_opts *o, nb_https_sink sink, void *arg);

/* Splits https://host[:port]/path (exposed for tests). */
int nb_https_parse_url(const char *url, char *host, size_t host_cap, char *port, size_t port_cap,
		       const char **path);

#endif
