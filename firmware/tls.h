/* Verified TLS client connections (mbedTLS), shared by `nibble update`
 * (firmware/https.c) and the server's cloud uplink (runtime/server/uplink.c).
 *
 * A context holds what every connection to one host shares: the CA chain,
 * an optional pinned public key (SHA-256 of the certificate's
 * SubjectPublicKeyInfo), an optional client certificate, the random
 * generator. The server's certificate must chain to the CA and name the
 * host (also sent as SNI); with a pin it must carry that key too. There is
 * no fallback to an unverified connection. A context may be shared by
 * threads, each with connections of its own. */
#ifndef NB_TLS_H
#define NB_TLS_H

#include "firmware/drbg.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

struct nb_tls_opts {
	const char *who;        /* prefix of messages ("update", "serve: uplink") */
	const char *host, *port;
	const char *ca_file;    /* PEM certificates (required) */
	const uint8_t *pin;     /* 32 bytes: SHA-256 of the server's SPKI, or NULL */
	const char *cert_file;  /* client certificate (mutual TLS), or NULL */
	const char *key_file;   /* its key */
	double connect_timeout; /* seconds for TCP connect + handshake (0: 30) */
};

struct nb_tls_ctx {
	char who[64], host[256], port[8];
	uint8_t pin[32];
	bool has_pin, has_cert;
	double connect_timeout;
	struct nb_drbg rng;
	pthread_mutex_t rng_lock; /* CTR_DRBG is not thread-safe on its own */
	mbedtls_x509_crt ca, cert;
	mbedtls_pk_context key;
	mbedtls_ssl_config conf;
	bool open;
};

struct nb_tls_conn {
	struct nb_tls_ctx *ctx;
	mbedtls_ssl_context ssl;
	mbedtls_net_context net;
	double deadline; /* of the read under way (monotonic seconds) */
	bool tcp_up;     /* the TCP connection was made (a failure after it was TLS's) */
	bool connected;
};

/* 0, -NB_ENOENT (CA, certificate or key file unreadable), -NB_EIO. */
int nb_tls_ctx_open(struct nb_tls_ctx *t, const struct nb_tls_opts *o);
void nb_tls_ctx_close(struct nb_tls_ctx *t);

/* TCP connect and handshake, both within connect_timeout; chain, host name
 * and pin checked. 0, -NB_ETIMEDOUT, -NB_EPERM (certificate or pin refused),
 * -NB_EIO (connection, handshake). On failure c needs no close. */
int nb_tls_connect(struct nb_tls_conn *c, struct nb_tls_ctx *t);
/* 0 or -NB_EIO. */
int nb_tls_send(struct nb_tls_conn *c, const void *buf, size_t len);
/* Bytes (> 0), 0 at the end of the stream, -NB_ETIMEDOUT after timeout
 * seconds without any, -NB_EIO. */
int nb_tls_recv(struct nb_tls_conn *c, void *buf, size_t cap, double timeout);
/* close_notify (if connected), then everything freed. */
void nb_tls_close(struct nb_tls_conn *c);

/* A pin written as 64 hex digits (or base64 of 32 bytes, as curl's
 * sha256//... takes it) into out. 0 or -NB_EINVAL. */
int nb_tls_parse_pin(const char *s, uint8_t out[32]);

#endif
