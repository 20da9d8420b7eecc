#include "firmware/sig.h"
#include "firmware/image.h"
#include "firmware/trust.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/base/sys.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/pk.h>
#include <mbedtls/sha256.h>

#define MAX_THREADS 64

void nb_sig_id_short(const uint8_t id[NB_SIG_ID_LEN], char out[17])
{
	for (int i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

int nb_sig_key_id(void *pk, uint8_t id[NB_SIG_ID_LEN])
{
	unsigned char der[256];
	/* mbedTLS writes DER backwards, at the end of the buffer. */
	int n = mbedtls_pk_write_pubkey_der(pk, der, sizeof(der));

	if (n <= 0)
		return -NB_EFORMAT;
	return mbedtls_sha256_ret(der + sizeof(der) - n, (size_t)n, id, 0) ? -NB_EIO : 0;
}

/* ---- digests ------------------------------------------------------------ */

struct chunks {
	const uint8_t *data;
	uint64_t size, n;
	uint8_t *out; /* n SHA-256s */
	atomic_uint_fast64_t next;
	atomic_int failed;
};

/* Chunks are taken in order from one counter, so the threads together
 * read the file front to back (one stream for readahead and the disk). */
static void *hash_chunks(void *arg)
{
	struct chunks *c = arg;
	uint64_t i;

	while ((i = atomic_fetch_add(&c->next, 1)) < c->n) {
		uint64_t off = i * NB_SIG_CHUNK;
		uint64_t len = c->size - off < NB_SIG_CHUNK ? c->size - off : NB_SIG_CHUNK;

		if (mbedtls_sha256_ret(c->data + off, (size_t)len, c->out + i * 32, 0))
			atomic_store(&c->failed, 1);
	}
	return NULL;
}

static int data_digest(const uint8_t *data, uint64_t size, unsigned threads, uint8_t out[32])
{
	struct chunks c = { .data = data, .size = size, .n = (size + NB_SIG_CHUNK - 1) / NB_SIG_CHUNK };
	pthread_t tid[MAX_THREADS];
	unsigned started = 0;
	int ret = 0;

	atomic_init(&c.next, 0);
	atomic_init(&c.failed, 0);
	c.out = malloc(c.n ? c.n * 32 : 1);
	if (!c.out)
		return -NB_ENOMEM;
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	if (threads > c.n)
		threads = (unsigned)c.n;
	/* Fewer threads than asked for only costs time. */
	for (unsigned i = 1; i < threads; i++)
		if (pthread_create(&tid[started], NULL, hash_chunks, &c) == 0)
			started++;
	hash_chunks(&c);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	if (atomic_load(&c.failed) || mbedtls_sha256_ret(c.out, c.n * 32, out, 0))
		ret = -NB_EIO;
	free(c.out);
	return ret;
}

int nb_sig_digests(const uint8_t *map, size_t size, uint64_t data_off, uint64_t data_size,
		   unsigned threads, uint8_t head[NB_SIG_ID_LEN], uint8_t data[NB_SIG_ID_LEN])
{
	uint64_t body = size - NB_IMAGE_TRAILER_SIZE, data_end;
	mbedtls_sha256_context ctx;
	int ret;

	if (size < NB_IMAGE_TRAILER_SIZE || __builtin_add_overflow(data_off, data_size, &data_end) ||
	    data_end > body)
		return -NB_ERANGE;
	mbedtls_sha256_init(&ctx);
	ret = mbedtls_sha256_starts_ret(&ctx, 0) ||
	      mbedtls_sha256_update_ret(&ctx, map, (size_t)data_off) ||
	      mbedtls_sha256_update_ret(&ctx, map + data_end, (size_t)(body - data_end)) ||
	      mbedtls_sha256_finish_ret(&ctx, head);
	mbedtls_sha256_free(&ctx);
	if (ret)
		return -NB_EIO;
	return data ? data_digest(map + data_off, data_size, threads ? threads : 1, data) : 0;
}

/* ---- the trailer ------------------------------------------------------- */

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* A header that disagrees with the file's size explains a bad trailer
 * better than the trailer can: the file was cut or padded. */
static bool size_mismatch(const uint8_t *map, size_t size, const char *what)
{
	struct nb_image_header h;

	if (size < sizeof(h))
		return false;
	memcpy(&h, map, sizeof(h));
	if (memcmp(h.magic, NB_IMAGE_MAGIC, 8) != 0 || h.file_size == size)
		return false;
	nb_err("%s: the file has %zu bytes, its header says %llu: truncated or padded", what, size,
	       (unsigned long long)h.file_size);
	return true;
}

static int parse_trailer(const uint8_t *map, size_t size, const char *what,
			 struct nb_sig_trailer *tr)
{
	const uint8_t *p = map + size - NB_IMAGE_TRAILER_SIZE;
	const struct nb_sig_statement *st = &tr->st;
	uint64_t end;

	memcpy(tr, p, sizeof(*tr));
	if (memcmp(st->magic, NB_TRAILER_MAGIC, 8) != 0) {
		nb_err("%s: malformed signature trailer (bad magic)", what);
		return -NB_ESIG;
	}
	if (st->version != NB_SIG_VERSION || st->algorithm != NB_SIG_ALG_ECDSA_P256_SHA256 ||
	    st->chunk_size != NB_SIG_CHUNK || st->reserved != 0) {
		nb_err("%s: signature trailer version %u, algorithm %u, chunk %u: not understood", what,
		       st->version, st->algorithm, st->chunk_size);
		return -NB_ESIG;
	}
	if (st->file_size != size) {
		nb_err("%s: signed for %llu bytes, the file has %zu: truncated or padded", what,
		       (unsigned long long)st->file_size, size);
		return -NB_ESIG;
	}
	if (__builtin_add_overflow(st->data_offset, st->data_size, &end) ||
	    end > size - NB_IMAGE_TRAILER_SIZE) {
		nb_err("%s: malformed signature trailer (data range outside the file)", what);
		return -NB_ESIG;
	}
	if (tr->sig_len < 8 || tr->sig_len > NB_SIG_MAX_LEN) {
		nb_err("%s: malformed signature trailer (signature of %u bytes)", what, tr->sig_len);
		return -NB_ESIG;
	}
	if (!all_zero(p + offsetof(struct nb_sig_trailer, sig) + tr->sig_len,
		      NB_IMAGE_TRAILER_SIZE - offsetof(struct nb_sig_trailer, sig) - tr->sig_len)) {
		nb_err("%s: malformed signature trailer (stray bytes after the signature)", what);
		return -NB_ESIG;
	}
	return 0;
}

static int check_signature(const struct nb_sig_trailer *tr, const struct nb_trust *t,
			   bool recorded, const char *what, struct nb_sig_info *info)
{
	const struct nb_trust_key *k = nb_trust_find(t, tr->st.key_id);
	char id[17];

	nb_sig_id_short(tr->st.key_id, id);
	if (!k) {
		nb_err("%s: signed by key %s, which is not trusted here (%u trusted key%s)", what, id,
		       t->n_keys, t->n_keys == 1 ? "" : "s");
		return -NB_ESIG;
	}
	if (mbedtls_sha256_ret((const void *)&tr->st, sizeof(tr->st), info->digest, 0))
		return -NB_EIO;
	info->key_name = k->origin;
	if (recorded)
		return 0;
	if (mbedtls_pk_verify(k->pk, MBEDTLS_MD_SHA256, info->digest, NB_SIG_ID_LEN, tr->sig,
			      tr->sig_len) != 0) {
		nb_err("%s: bad signature: the signature trailer was altered", what);
		return -NB_ESIG;
	}
	return 0;
}

int nb_sig_verify(const uint8_t *map, size_t size, const struct nb_trust *t, unsigned flags,
		  const char *what, struct nb_sig_info *info)
{
	double t0 = nb_sys_now();
	struct nb_sig_trailer tr;
	uint8_t head[NB_SIG_ID_LEN], data[NB_SIG_ID_LEN];
	int ret;

	/* Anything but an intact image with an all-zero trailer counts as
	 * signed, so that no policy mistakes a damaged image for an unsigned one. */
	memset(info, 0, sizeof(*info));
	info->is_signed = true;
	if (size < 2 * NB_IMAGE_TRAILER_SIZE) {
		nb_err("%s: %zu bytes is too short for a signed image", what, size);
		return -NB_ESIG;
	}
	if (size_mismatch(map, size, what))
		return -NB_ESIG;
	if (all_zero(map + size - NB_IMAGE_TRAILER_SIZE, NB_IMAGE_TRAILER_SIZE)) {
		info->is_signed = false;
		return -NB_ESIG; /* the caller's policy decides what to say */
	}
	ret = parse_trailer(map, size, what, &tr);
	if (!ret)
		ret = check_signature(&tr, t, flags & NB_SIG_RECORDED, what, info);
	if (ret)
		return ret;
	info->st = tr.st;
	if (flags & NB_SIG_RECORDED) {
		info->recorded = true;
		info->seconds = nb_sys_now() - t0;
		return 0;
	}
	ret = nb_sig_digests(map, size, tr.st.data_offset, tr.st.data_size, t->threads, head, data);
	if (ret)
		return ret;
	if (memcmp(head, tr.st.head_digest, NB_SIG_ID_LEN) != 0) {
		nb_err("%s: the header, manifest, tokenizer or tensor table was altered after signing",
		       what);
		return -NB_ESIG;
	}
	if (memcmp(data, tr.st.data_digest, NB_SIG_ID_LEN) != 0) {
		nb_err("%s: the tensor data was altered after signing", what);
		return -NB_ESIG;
	}
	info->seconds = nb_sys_now() - t0;
	return 0;
}
