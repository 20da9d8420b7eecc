#include "firmware/tls.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/base/sys.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <mbedtls/base64.h>
#include <mbedtls/error.h>
#include <mbedtls/sha256.h>

static const char *tls_error(int code, char *buf, size_t cap)
{
	mbedtls_strerror(code, buf, cap);
	return buf;
}

static int locked_random(void *p, unsigned char *out, size_t len)
{
	struct nb_tls_ctx *t = p;
	int ret;

	pthread_mutex_lock(&t->rng_lock);
	ret = nb_drbg_random(&t->rng, out, len);
	pthread_mutex_unlock(&t->rng_lock);
	return ret;
}

int nb_tls_parse_pin(const char *s, uint8_t out[32])
{
	size_t n = strlen(s), olen = 0;

	if (n == 64) {
		for (size_t i = 0; i < 32; i++) {
			unsigned v;
			if (!isxdigit((unsigned char)s[2 * i]) || !isxdigit((unsigned char)s[2 * i + 1]) ||
			    sscanf(s + 2 * i, "%2x", &v) != 1)
				return -NB_EINVAL;
			out[i] = (uint8_t)v;
		}
		return 0;
	}
	if (strncmp(s, "sha256//", 8) == 0)
		s += 8;
	if (mbedtls_base64_decode(out, 32, &olen, (const unsigned char *)s, strlen(s)) || olen != 32)
		return -NB_EINVAL;
	return 0;
}

static int load_client_cert(struct nb_tls_ctx *t, const struct nb_tls_opts *o)
{
	char msg[128];
	int ret;

	if (!o->cert_file)
		return 0;
	ret = mbedtls_x509_crt_parse_file(&t->cert, o->cert_file);
	if (ret) {
		nb_err("%s: client certificate %s: %s", t->who, o->cert_file,
		       tls_error(ret, msg, sizeof(msg)));
		return -NB_ENOENT;
	}
	ret = mbedtls_pk_parse_keyfile(&t->key, o->key_file ? o->key_file : o->cert_file, NULL);
	if (ret) {
		nb_err("%s: client key %s: %s", t->who, o->key_file ? o->key_file : o->cert_file,
		       tls_error(ret, msg, sizeof(msg)));
		return -NB_ENOENT;
	}
	if (mbedtls_ssl_conf_own_cert(&t->conf, &t->cert, &t->key))
		return -NB_EIO;
	t->has_cert = true;
	return 0;
}

int nb_tls_ctx_open(struct nb_tls_ctx *t, const struct nb_tls_opts *o)
{
	char msg[128];
	int ret;

	memset(t, 0, sizeof(*t));
	snprintf(t->who, sizeof(t->who), "%s", o->who);
	if (snprintf(t->host, sizeof(t->host), "%s", o->host) >= (int)sizeof(t->host) ||
	    snprintf(t->port, sizeof(t->port), "%s", o->port) >= (int)sizeof(t->port))
		return -NB_EINVAL;
	t->connect_timeout = o->connect_timeout > 0 ? o->connect_timeout : 30;
	if (o->pin) {
		memcpy(t->pin, o->pin, 32);
		t->has_pin = true;
	}
	mbedtls_x509_crt_init(&t->ca);
	mbedtls_x509_crt_init(&t->cert);
	mbedtls_pk_init(&t->key);
	mbedtls_ssl_config_init(&t->conf);
	pthread_mutex_init(&t->rng_lock, NULL);
	t->open = true;
	ret = nb_drbg_open(&t->rng, "nibble tls");
	if (ret)
		goto fail;
	ret = mbedtls_x509_crt_parse_file(&t->ca, o->ca_file);
	if (ret != 0) {
		nb_err("%s: CA file %s: %s", t->who, o->ca_file, tls_error(ret, msg, sizeof(msg)));
		ret = -NB_ENOENT;
		goto fail;
	}
	ret = -NB_EIO;
	if (mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
					MBEDTLS_SSL_PRESET_DEFAULT))
		goto fail;
	mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
	mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
	mbedtls_ssl_conf_rng(&t->conf, locked_random, t);
	mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
	ret = load_client_cert(t, o);
	if (ret)
		goto fail;
	return 0;
fail:
	nb_tls_ctx_close(t);
	return ret;
}

void nb_tls_ctx_close(struct nb_tls_ctx *t)
{
	if (!t->open)
		return;
	mbedtls_ssl_config_free(&t->conf);
	mbedtls_pk_free(&t->key);
	mbedtls_x509_crt_free(&t->cert);
	mbedtls_x509_crt_free(&t->ca);
	nb_drbg_close(&t->rng);
	pthread_mutex_destroy(&t->rng_lock);
	t->open = false;
}

/* ---- connections ------------------------------------------------------------ */

/* The bio of a connection: reads wait at most until c->deadline. */
static int bio_send(void *p, const unsigned char *buf, size_t len)
{
	struct nb_tls_conn *c = p;
	ssize_t n = send(c->net.fd, buf, len, MSG_NOSIGNAL);

	if (n >= 0)
		return (int)n;
	return errno == EINTR ? MBEDTLS_ERR_SSL_WANT_WRITE : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv_deadline(struct nb_tls_conn *c, unsigned char *buf, size_t len, double deadline)
{
	for (;;) {
		double left = deadline - nb_sys_now();
		struct pollfd p = { .fd = c->net.fd, .events = POLLIN };
		int r;
		ssize_t n;

		if (left <= 0)
			return MBEDTLS_ERR_SSL_TIMEOUT;
		r = poll(&p, 1, (int)(left * 1000) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			return MBEDTLS_ERR_SSL_TIMEOUT;
		n = recv(c->net.fd, buf, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
		return (int)n;
	}
}

static int bio_recv(void *p, unsigned char *buf, size_t len)
{
	struct nb_tls_conn *c = p;

	return bio_recv_deadline(c, buf, len, c->deadline);
}

/* Non-blocking connect, waited for until the deadline. */
static int tcp_connect(struct nb_tls_ctx *t, double deadline)
{
	const struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *a;
	int fd = -1, err = 0;

	if (getaddrinfo(t->host, t->port, &hints, &res) != 0) {
		nb_err("%s: cannot resolve %s", t->who, t->host);
		return -NB_EIO;
	}
	for (a = res; a; a = a->ai_next) {
		struct pollfd p;
		socklen_t len = sizeof(err);
		int r;

		fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
			break;
		err = errno;
		if (errno == EINPROGRESS) {
			p = (struct pollfd){ .fd = fd, .events = POLLOUT };
			do
				r = poll(&p, 1, (int)((deadline - nb_sys_now()) * 1000) + 1);
			while (r < 0 && errno == EINTR);
			err = r == 0 ? ETIMEDOUT : r < 0 ? errno : 0;
			if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
				err = errno;
			if (!err)
				break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		nb_err("%s: cannot connect to %s:%s (%s)", t->who, t->host, t->port,
		       err == ETIMEDOUT ? "timed out" : strerror(err));
		return err == ETIMEDOUT ? -NB_ETIMEDOUT : -NB_EIO;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	/* a request is one write; an answer's small records must not wait for
	 * ACKs (Nagle against delayed ACKs costs 40 ms a round trip) */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	/* a peer that stops reading cannot hold a writer forever */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO,
		   &(struct timeval){ .tv_sec = (time_t)t->connect_timeout,
				      .tv_usec = (suseconds_t)((t->connect_timeout -
								(double)(time_t)t->connect_timeout) * 1e6) },
		   sizeof(struct timeval));
	return fd;
}

static int check_pin(struct nb_tls_conn *c)
{
	struct nb_tls_ctx *t = c->ctx;
	const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&c->ssl);
	unsigned char der[1024], hash[32];
	int n;

	if (!t->has_pin)
		return 0;
	n = peer ? mbedtls_pk_write_pubkey_der((mbedtls_pk_context *)&peer->pk, der, sizeof(der)) : -1;
	if (n <= 0 || mbedtls_sha256_ret(der + sizeof(der) - n, (size_t)n, hash, 0) ||
	    memcmp(hash, t->pin, 32) != 0) {
		nb_err("%s: %s: the server's public key does not match the pinned SHA-256", t->who,
		       t->host);
		return -NB_EPERM;
	}
	return 0;
}

static int handshake_failed(struct nb_tls_conn *c, int ret)
{
	struct nb_tls_ctx *t = c->ctx;
	char msg[256];

	if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
		uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
		mbedtls_x509_crt_verify_info(msg, sizeof(msg), "", flags);
		msg[strcspn(msg, "\n")] = '\0';
		nb_err("%s: %s: the server's certificate is not trusted: %s", t->who, t->host, msg);
		return -NB_EPERM;
	}
	if (ret == MBEDTLS_ERR_SSL_TIMEOUT) {
		nb_err("%s: %s: TLS handshake timed out", t->who, t->host);
		return -NB_ETIMEDOUT;
	}
	nb_err("%s: %s: TLS handshake failed: %s", t->who, t->host, tls_error(ret, msg, sizeof(msg)));
	return -NB_EIO;
}

int nb_tls_connect(struct nb_tls_conn *c, struct nb_tls_ctx *t)
{
	double deadline = nb_sys_now() + t->connect_timeout;
	int fd, ret;

	memset(c, 0, sizeof(*c));
	c->ctx = t;
	mbedtls_ssl_init(&c->ssl);
	mbedtls_net_init(&c->net);
	fd = tcp_connect(t, deadline);
	if (fd < 0) {
		ret = fd;
		goto fail;
	}
	c->net.fd = fd;
	c->tcp_up = true;
	ret = -NB_EIO;
	if (mbedtls_ssl_setup(&c->ssl, &t->conf) ||
	    mbedtls_ssl_set_hostname(&c->ssl, t->host)) /* SNI and the name checked */
		goto fail;
	mbedtls_ssl_set_bio(&c->ssl, c, bio_send, bio_recv, NULL);
	c->deadline = deadline;
	while ((ret = mbedtls_ssl_handshake(&c->ssl)) != 0) {
		if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		ret = handshake_failed(c, ret);
		goto fail;
	}
	ret = check_pin(c);
	if (ret)
		goto fail;
	c->connected = true;
	return 0;
fail:
	mbedtls_net_free(&c->net);
	mbedtls_ssl_free(&c->ssl);
	return ret;
}

int nb_tls_send(struct nb_tls_conn *c, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	c->deadline = nb_sys_now() + c->ctx->connect_timeout;
	while (len) {
		int n = mbedtls_ssl_write(&c->ssl, p, len);
		if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		if (n <= 0)
			return -NB_EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int nb_tls_recv(struct nb_tls_conn *c, void *buf, size_t cap, double timeout)
{
	c->deadline = nb_sys_now() + timeout;
	for (;;) {
		int n = mbedtls_ssl_read(&c->ssl, buf, cap);
		if (n == MBEDTLS_ERR_SSL_WANT_READ || n == MBEDTLS_ERR_SSL_WANT_WRITE)
			continue;
		if (n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || n == 0)
			return 0;
		if (n == MBEDTLS_ERR_SSL_TIMEOUT)
			return -NB_ETIMEDOUT;
		return n < 0 ? -NB_EIO : n;
	}
}

void nb_tls_close(struct nb_tls_conn *c)
{
	if (!c->ctx)
		return;
	if (c->connected) {
		c->deadline = nb_sys_now() + 0.1;
		mbedtls_ssl_close_notify(&c->ssl);
	}
	mbedtls_net_free(&c->net);
	mbedtls_ssl_free(&c->ssl);
	c->connected = false;
	c->ctx = NULL;
}
