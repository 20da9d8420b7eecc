/* Image signatures: keygen, sign, verify; every region of a signed image
 * altered, truncation, untrusted keys; the trust policy (key directory
 * ownership, built-in PEM blocks, unsigned images), per-boot records. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "firmware/manifest.h"
#include "firmware/sig.h"
#include "firmware/sign.h"
#include "firmware/trust.h"
#include "firmware/verify.h"
#include "kernels/check.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/model/llm.h"
#include "tools/import/image_write.h"
#include "testutil.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Big enough for 4 data chunks of 1 MiB: the chunked digest and its threads. */
#define DIM 256
#define HIDDEN 1024
#define HEADS 4
#define HEAD_DIM 64
#define VOCAB 8

struct fixture {
	char dir[64], img[128], key[128], pub[128], key2[128], pub2[128];
	uint8_t *file; /* the signed image, 64-byte aligned copy */
	size_t size;
	struct nb_trust trust; /* key 1 only */
};

static float *random_floats(uint64_t n, struct nb_rng *rng)
{
	float *d = malloc(n * sizeof(float));

	assert_non_null(d);
	for (uint64_t i = 0; i < n; i++)
		d[i] = (float)((int64_t)(nb_rng_next(rng) % 2001) - 1000) / 8000.0f;
	return d;
}

static void make_tokenizer(struct nb_tok_spec *s)
{
	static const char *const pieces[VOCAB] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81",
						   "a", "b", "\xe2\x96\x81" "a", "ab" };
	uint32_t off = 0;

	nb_tok_spec_init(s);
	s->kind = NB_TOK_SPM;
	s->flags = NB_TOK_FLAG_ADD_BOS | NB_TOK_FLAG_ADD_SPACE_PREFIX;
	s->n_vocab = VOCAB;
	s->bos_id = 1;
	s->eos_id = 2;
	s->pad_id = -1;
	s->text = malloc(64);
	s->offsets = malloc((VOCAB + 1) * sizeof(uint32_t));
	s->scores = malloc(VOCAB * sizeof(float));
	s->types = malloc(VOCAB);
	assert_true(s->text && s->offsets && s->scores && s->types);
	for (int i = 0; i < VOCAB; i++) {
		s->offsets[i] = off;
		memcpy(s->text + off, pieces[i], strlen(pieces[i]));
		off += (uint32_t)strlen(pieces[i]);
		s->scores[i] = (float)-i;
		s->types[i] = i < 3 ? NB_PIECE_CONTROL : NB_PIECE_NORMAL;
	}
	s->offsets[VOCAB] = off;
	s->types[0] = NB_PIECE_UNKNOWN;
}

/* A one-layer Llama of 3.3 MB with a golden vector. */
static void write_image_license(const char *path, const char *license)
{
	static const char *const names[] = { "token_embd.weight", "blk.0.attn_norm.weight",
					     "blk.0.attn_q.weight", "blk.0.attn_k.weight",
					     "blk.0.attn_v.weight", "blk.0.attn_output.weight",
					     "blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight",
					     "blk.0.ffn_up.weight", "blk.0.ffn_down.weight",
					     "output_norm.weight" };
	static const uint64_t shapes[][2] = { { VOCAB, DIM }, { DIM, 0 }, { HEADS * HEAD_DIM, DIM },
					      { HEAD_DIM, DIM }, { HEAD_DIM, DIM },
					      { DIM, HEADS * HEAD_DIM }, { DIM, 0 }, { HIDDEN, DIM },
					      { HIDDEN, DIM }, { DIM, HIDDEN }, { DIM, 0 } };
	const struct nb_image_kv meta[] = { { "name", "sigtest" }, { "license", license } };
	const size_t n = sizeof(names) / sizeof(names[0]);
	struct nb_hparams hp = { .arch = NB_ARCH_LLAMA, .dim = DIM, .hidden_dim = HIDDEN,
				 .n_layers = 1, .n_heads = HEADS, .n_kv_heads = 1,
				 .head_dim = HEAD_DIM, .vocab_size = VOCAB, .seq_len = 32,
				 .tied_embeddings = 1, .norm_eps = 1e-5f, .rope_theta = 10000.0f };
	struct nb_tensor t[16];
	struct nb_rng rng = { 7 };
	struct nb_tok_spec tok;
	struct nb_model m;
	int32_t golden[6] = { 1, 6 };

	for (size_t i = 0; i < n; i++) {
		uint64_t count = shapes[i][0] * (shapes[i][1] ? shapes[i][1] : 1);
		t[i] = (struct nb_tensor){ .name = names[i], .type = NB_DTYPE_F32,
					   .ndim = shapes[i][1] ? 2 : 1,
					   .shape = { shapes[i][0], shapes[i][1] },
					   .data = random_floats(count, &rng),
					   .size = count * sizeof(float) };
	}
	make_tokenizer(&tok);
	nb_model_init(&m);
	assert_int_equal(nb_model_bind(&m, &hp, t, n), 0);
	assert_int_equal(nb_llm_greedy(&m, golden, 2, 4, golden + 2), 0);
	nb_model_free(&m);
	assert_int_equal(nb_image_write(path, &(struct nb_image_spec){
				 .hp = &hp, .tok = &tok, .model_version = 3, .meta = meta,
				 .n_meta = 2, .tensors = t, .n_tensors = n, .golden_prompt = golden,
				 .n_golden_prompt = 2, .golden_expected = golden + 2,
				 .n_golden_expected = 4 }),
			 0);
	for (size_t i = 0; i < n; i++)
		free((void *)t[i].data);
	nb_tok_spec_free(&tok);
}

static void write_image(const char *path)
{
	write_image_license(path, "MIT");
}

static uint8_t *load(const char *path, size_t *size)
{
	char *s = test_slurp(path, size);
	uint8_t *buf = aligned_alloc(64, (*size + 64) & ~(size_t)63);

	assert_non_null(buf);
	memcpy(buf, s, *size);
	free(s);
	return buf;
}

static void store(const char *path, const void *buf, size_t size)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(buf, 1, size, f), size);
	assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct nb_sig_info info;

	assert_non_null(f);
	strcpy(f->dir, "/tmp/nb-sig-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->img, sizeof(f->img), "%s/m.nib", f->dir);
	snprintf(f->key, sizeof(f->key), "%s/one.pem", f->dir);
	snprintf(f->key2, sizeof(f->key2), "%s/two.pem", f->dir);
	assert_int_equal(nb_sign_keygen(f->key, false, f->pub, sizeof(f->pub)), 0);
	assert_int_equal(nb_sign_keygen(f->key2, false, f->pub2, sizeof(f->pub2)), 0);
	write_image(f->img);
	assert_int_equal(nb_sign_file(f->img, f->key, 3, &info), 0);
	f->file = load(f->img, &f->size);
	nb_trust_init(&f->trust);
	f->trust.threads = 2;
	assert_int_equal(nb_trust_add_file(&f->trust, f->pub, false), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	nb_trust_free(&f->trust);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f->file);
	free(f);
	return 0;
}

static int verify_buf(struct fixture *f, const uint8_t *buf, size_t size, struct nb_sig_info *info)
{
	int saved = test_quiet();
	int ret = nb_sig_verify(buf, size, &f->trust, 0, "test", info);

	test_loud(saved);
	return ret;
}

static void test_keygen(void **state)
{
	struct fixture *f = *state;
	char pub[PATH_MAX], path[128];
	struct stat st;

	assert_string_equal(f->pub + strlen(f->dir), "/one.pub.pem");
	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(f->pub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	/* Never replaced by accident; --force does. */
	int saved = test_quiet();
	assert_int_equal(nb_sign_keygen(f->key, false, pub, sizeof(pub)), -NB_EBUSY);
	test_loud(saved);
	snprintf(path, sizeof(path), "%s/one.pem.tmp", f->dir);
	assert_int_not_equal(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/three", f->dir);
	assert_int_equal(nb_sign_keygen(path, false, pub, sizeof(pub)), 0);
	assert_string_equal(pub + strlen(f->dir), "/three.pub.pem");
	assert_int_equal(nb_sign_keygen(path, true, pub, sizeof(pub)), 0);
}

static void test_good_signature(void **state)
{
	struct fixture *f = *state;
	struct nb_sig_info info;
	void *pk = f->trust.keys[0].pk;
	uint8_t id[NB_SIG_ID_LEN];

	assert_int_equal(verify_buf(f, f->file, f->size, &info), 0);
	assert_true(info.is_signed);
	assert_false(info.recorded);
	assert_int_equal(info.st.file_size, f->size);
	assert_true(info.st.data_size > 3 * NB_SIG_CHUNK);
	assert_int_equal(nb_sig_key_id(pk, id), 0);
	assert_memory_equal(info.st.key_id, id, NB_SIG_ID_LEN);
	struct nb_verified v;
	assert_int_equal(nb_verify_file(f->img, &f->trust, &v), 0);
	assert_int_equal(v.model_version, 3);
	assert_string_equal(v.name, "sigtest");
	assert_string_equal(v.compat, "");
}

/* The digest is the same whatever the number of threads. */
static void test_digest_threads(void **state)
{
	struct fixture *f = *state;
	struct nb_sig_statement st;
	uint8_t head[32], d1[32], d5[32];

	memcpy(&st, f->file + f->size - NB_IMAGE_TRAILER_SIZE, sizeof(st));
	assert_int_equal(nb_sig_digests(f->file, f->size, st.data_offset, st.data_size, 1, head, d1), 0);
	assert_int_equal(nb_sig_digests(f->file, f->size, st.data_offset, st.data_size, 5, head, d5), 0);
	assert_memory_equal(d1, d5, 32);
	assert_memory_equal(d1, st.data_digest, 32);
	assert_memory_equal(head, st.head_digest, 32);
}

static void expect_rejected(struct fixture *f, size_t off, const char *what)
{
	uint8_t *buf = aligned_alloc(64, (f->size + 64) & ~(size_t)63);
	struct nb_sig_info info;
	int ret;

	assert_non_null(buf);
	memcpy(buf, f->file, f->size);
	buf[off] ^= 0x01;
	ret = verify_buf(f, buf, f->size, &info);
	if (ret != -NB_ESIG || !info.is_signed)
		fail_msg("a byte flipped at %zu (%s) was accepted (%d)", off, what, ret);
	free(buf);
}

/* One byte changed in each region of the image, and across the trailer. */
static void test_tamper_regions(void **state)
{
	struct fixture *f = *state;
	const struct nb_image_header *h = (const void *)f->file;
	struct nb_sig_statement st;

	memcpy(&st, f->file + f->size - NB_IMAGE_TRAILER_SIZE, sizeof(st));
	expect_rejected(f, 0, "magic");
	expect_rejected(f, 24, "model_version");
	expect_rejected(f, 40, "header reserved");
	expect_rejected(f, 1000, "header padding");
	for (uint32_t i = 0; i < h->n_sections; i++) {
		const struct nb_image_section *s = &h->sections[i];
		if (s->kind == NB_SECTION_TRAILER)
			continue;
		expect_rejected(f, s->offset, "section start");
		expect_rejected(f, s->offset + s->size - 1, "section end");
		expect_rejected(f, s->offset + s->size / 2, "section middle");
		if ((s->offset + s->size) % NB_IMAGE_PAGE)
			expect_rejected(f, s->offset + s->size, "gap after section");
	}
	/* Every chunk of the data. */
	for (uint64_t off = 0; off < st.data_size; off += NB_SIG_CHUNK / 2)
		expect_rejected(f, st.data_offset + off, "data");
	/* Every byte of the statement and the signature, then the padding. */
	for (size_t i = 0; i < sizeof(struct nb_sig_trailer); i++)
		expect_rejected(f, f->size - NB_IMAGE_TRAILER_SIZE + i, "trailer");
	for (size_t i = sizeof(struct nb_sig_trailer); i < NB_IMAGE_TRAILER_SIZE; i += 97)
		expect_rejected(f, f->size - NB_IMAGE_TRAILER_SIZE + i, "trailer padding");
	expect_rejected(f, f->size - 1, "last byte");
}

static void test_truncated(void **state)
{
	struct fixture *f = *state;
	struct nb_sig_info info;
	static const size_t cuts[] = { 1, 4095, 4096, 4097, 1 << 20 };

	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		assert_int_equal(verify_buf(f, f->file, f->size - cuts[i], &info), -NB_ESIG);
		assert_true(info.is_signed);
	}
	assert_int_equal(verify_buf(f, f->file, 100, &info), -NB_ESIG);
}

static void test_untrusted_and_unsigned(void **state)
{
	struct fixture *f = *state;
	struct nb_sig_info info;
	struct nb_trust other;
	uint8_t *buf = aligned_alloc(64, (f->size + 64) & ~(size_t)63);
	int saved;

	/* Signed with key one, trusting only key two. */
	nb_trust_init(&other);
	assert_int_equal(nb_trust_add_file(&other, f->pub2, false), 0);
	saved = test_quiet();
	assert_int_equal(nb_sig_verify(f->file, f->size, &other, 0, "t", &info),
			 -NB_ESIG);
	test_loud(saved);
	assert_true(info.is_signed);
	/* Key rotation: trusting both keys accepts it. */
	assert_int_equal(nb_trust_add_file(&other, f->pub, false), 0);
	assert_int_equal(other.n_keys, 2);
	assert_int_equal(nb_sig_verify(f->file, f->size, &other, 0, "t", &info), 0);
	nb_trust_free(&other);

	/* All-zero trailer: unsigned, told apart from damaged. */
	assert_non_null(buf);
	memcpy(buf, f->file, f->size);
	memset(buf + f->size - NB_IMAGE_TRAILER_SIZE, 0, NB_IMAGE_TRAILER_SIZE);
	assert_int_equal(verify_buf(f, buf, f->size, &info), -NB_ESIG);
	assert_false(info.is_signed);
	free(buf);
}

static void test_resign_with_other_key(void **state)
{
	struct fixture *f = *state;
	struct nb_sig_info info;
	char path[128];

	snprintf(path, sizeof(path), "%s/other.nib", f->dir);
	store(path, f->file, f->size);
	assert_int_equal(nb_sign_file(path, f->key2, 1, &info), 0);
	int saved = test_quiet();
	struct nb_verified v;
	assert_int_equal(nb_verify_file(path, &f->trust, &v), -NB_ESIG);
	/* A public key is no private key. */
	assert_int_equal(nb_sign_file(path, f->pub, 1, &info), -NB_EFORMAT);
	test_loud(saved);
	unlink(path);
}

static void test_trust_pem_blocks(void **state)
{
	struct fixture *f = *state;
	size_t n1, n2;
	char *a = test_slurp(f->pub, &n1), *b = test_slurp(f->pub2, &n2);
	char *both = malloc(n1 + n2 + 1);
	struct nb_trust t;
	int saved;

	assert_non_null(both);
	memcpy(both, a, n1);
	memcpy(both + n1, b, n2);
	nb_trust_init(&t);
	assert_int_equal(nb_trust_add_pem(&t, both, n1 + n2, "built-in"), 0);
	assert_int_equal(t.n_keys, 2);
	/* The same keys again count once. */
	assert_int_equal(nb_trust_add_pem(&t, both, n1 + n2, "built-in"), 0);
	assert_int_equal(t.n_keys, 2);
	saved = test_quiet();
	assert_int_equal(nb_trust_add_pem(&t, "junk", 4, "x"), -NB_EFORMAT);
	both[n1 + 40] ^= 0x10; /* damage the second key's base64 */
	assert_int_equal(nb_trust_add_pem(&t, both + n1, n2, "y"), -NB_EFORMAT);
	test_loud(saved);
	nb_trust_free(&t);
	free(both);
	free(a);
	free(b);
}

/* Only a root-owned directory and root-owned files nobody else can write. */
static void test_trust_dir_ownership(void **state)
{
	struct fixture *f = *state;
	char dir[128], key[192], link[192], cmd[1024];
	struct nb_trust t;
	int saved;

	if (geteuid() != 0)
		skip();
	snprintf(dir, sizeof(dir), "%s/keys", f->dir);
	snprintf(key, sizeof(key), "%s/one.pub.pem", dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	snprintf(cmd, sizeof(cmd), "cp %s %s && cp %s %s/two.pub.pem && cp %s %s/ignored.pem", f->pub,
		 key, f->pub2, dir, f->pub2, dir);
	assert_int_equal(system(cmd), 0);
	nb_trust_init(&t);
	assert_int_equal(nb_trust_add_dir(&t, dir), 0);
	assert_int_equal(t.n_keys, 2);
	nb_trust_free(&t);

	saved = test_quiet();
	assert_int_equal(chmod(key, 0666), 0); /* anyone could swap it */
	nb_trust_init(&t);
	assert_int_equal(nb_trust_add_dir(&t, dir), 0);
	assert_int_equal(t.n_keys, 1);
	nb_trust_free(&t);
	assert_int_equal(chmod(key, 0644), 0);
	assert_int_equal(chown(key, 1, 1), 0); /* not root's */
	nb_trust_init(&t);
	assert_int_equal(nb_trust_add_dir(&t, dir), 0);
	assert_int_equal(t.n_keys, 1);
	nb_trust_free(&t);
	assert_int_equal(unlink(key), 0);
	snprintf(link, sizeof(link), "%s", f->pub);
	assert_int_equal(symlink(link, key), 0); /* a link could point anywhere */
	nb_trust_init(&t);
	assert_int_equal(nb_trust_add_dir(&t, dir), 0);
	assert_int_equal(t.n_keys, 1);
	nb_trust_free(&t);
	assert_int_equal(chmod(dir, 0777), 0); /* the directory itself */
	nb_trust_init(&t);
	assert_int_equal(nb_trust_add_dir(&t, dir), -NB_EPERM);
	assert_int_equal(t.n_keys, 0);
	nb_trust_free(&t);
	test_loud(saved);
	snprintf(cmd, sizeof(cmd), "%s/none", f->dir);
	assert_int_equal(nb_trust_add_dir(&t, cmd), -NB_ENOENT);
}

static int open_verified(struct fixture *f, const char *path, const struct nb_trust *t,
			 struct nb_sig_info *info)
{
	struct nb_image img;
	int saved = test_quiet();
	int ret = nb_image_open(&img, path, 0);

	if (!ret) {
		ret = nb_verify_image(&img, path, t, info);
		nb_image_close(&img);
	}
	test_loud(saved);
	(void)f;
	return ret;
}

/* Wait out the file system's timestamp tick, as a board does between
 * installing an image and loading it. */
static void settle(void)
{
	struct timespec ts = { 0, 30 * 1000 * 1000 };
	nanosleep(&ts, NULL);
}

static void test_policy_and_records(void **state)
{
	struct fixture *f = *state;
	struct nb_trust t = f->trust;
	struct nb_sig_info info;
	char path[128], records[128];
	uint8_t *buf;
	int fd;

	snprintf(records, sizeof(records), "%s/records", f->dir);
	snprintf(path, sizeof(path), "%s/p.nib", f->dir);
	t.record_dir = records;

	/* Unsigned: refused when required, loaded (with the warning) when not. */
	buf = malloc(f->size);
	assert_non_null(buf);
	memcpy(buf, f->file, f->size);
	memset(buf + f->size - NB_IMAGE_TRAILER_SIZE, 0, NB_IMAGE_TRAILER_SIZE);
	store(path, buf, f->size);
	t.require_signature = true;
	assert_int_equal(open_verified(f, path, &t, &info), -NB_ESIG);
	t.require_signature = false;
	assert_int_equal(open_verified(f, path, &t, &info), 0);
	assert_false(info.is_signed);

	/* Signed: the first load hashes everything and leaves a record. */
	t.require_signature = true;
	store(path, f->file, f->size);
	settle();
	assert_int_equal(open_verified(f, path, &t, &info), 0);
	assert_true(info.is_signed && !info.recorded);
	assert_int_equal(open_verified(f, path, &t, &info), 0);
	assert_true(info.recorded);

	/* A byte of tensor data changed in place: ctime moves, hashed again, refused. */
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "\x55", 1, (off_t)(f->size / 2)), 1);
	close(fd);
	assert_int_equal(open_verified(f, path, &t, &info), -NB_ESIG);
	/* A damaged image is never taken for an unsigned one, even in a development build. */
	t.require_signature = false;
	assert_int_equal(open_verified(f, path, &t, &info), -NB_ESIG);
	free(buf);
}

/* A record written by someone else (another user, a writable directory) is not believed. */
static void test_records_not_trusted_from_others(void **state)
{
	struct fixture *f = *state;
	struct nb_trust t = f->trust;
	struct nb_sig_info info;
	char path[128], records[128], cmd[320];

	if (geteuid() != 0)
		skip();
	snprintf(records, sizeof(records), "%s/rec2", f->dir);
	snprintf(path, sizeof(path), "%s/q.nib", f->dir);
	t.record_dir = records;
	store(path, f->file, f->size);
	settle();
	assert_int_equal(open_verified(f, path, &t, &info), 0);
	assert_false(info.recorded);
	snprintf(cmd, sizeof(cmd), "chown 1 %s/*", records);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(open_verified(f, path, &t, &info), 0);
	assert_false(info.recorded);
}

static void test_compat_strings(void **state)
{
	(void)state;
	assert_true(nb_manifest_compat_matches("rpi4/1 rpi5/1", 13, "rpi5", 1));
	assert_true(nb_manifest_compat_matches("rpi4/1  rpi5/1 ", 15, "rpi4", 1));
	assert_false(nb_manifest_compat_matches("rpi4/1 rpi5/1", 13, "rpi", 1));
	assert_false(nb_manifest_compat_matches("rpi4/1 rpi5/1", 13, "jetson-orin-nano", 1));
	assert_false(nb_manifest_compat_matches("rpi5/2", 6, "rpi5", 1));
	assert_false(nb_manifest_compat_matches("rpi5/12", 7, "rpi5", 1));
	assert_true(nb_manifest_compat_matches("*/1", 3, "x86_64", 1));
	assert_true(nb_manifest_compat_matches("rpi5/1", 6, NULL, 1));
	assert_false(nb_manifest_compat_matches("rpi5/2", 6, NULL, 1));
	assert_false(nb_manifest_compat_matches("rpi5/1", 4, "rpi5", 1)); /* length, not NUL */
	assert_true(nb_manifest_compat_valid("rpi4/1 rpi5/1"));
	assert_true(nb_manifest_compat_valid("*/1"));
	assert_false(nb_manifest_compat_valid(""));
	assert_false(nb_manifest_compat_valid("rpi5"));
	assert_false(nb_manifest_compat_valid("rpi5/"));
	assert_false(nb_manifest_compat_valid("rpi5/x"));
	assert_false(nb_manifest_compat_valid("rp i5/1"));
	assert_false(nb_manifest_compat_valid("rpi5/1,rpi4/1"));
	assert_false(nb_manifest_compat_valid("a\"b/1"));
}

/* Stamping keeps every tensor byte; a META that outgrows its page moves
 * the sections after it; the stamped image signs and verifies. */
static void test_stamp(void **state)
{
	struct fixture *f = *state;
	char path[128], license[4041];
	struct nb_image a, b;
	struct nb_sig_info info;
	struct nb_verified v;
	const char *val;
	size_t len;

	snprintf(path, sizeof(path), "%s/s.nib", f->dir);
	memset(license, 'L', sizeof(license) - 1);
	license[sizeof(license) - 1] = '\0';
	for (int grow = 0; grow < 2; grow++) {
		char ref[160];

		snprintf(ref, sizeof(ref), "%s/ref.nib", f->dir);
		write_image_license(path, grow ? license : "MIT");
		write_image_license(ref, grow ? license : "MIT");
		assert_int_equal(nb_sign_file(path, f->key, 2, &info), 0);
		assert_int_equal(nb_sign_stamp(path, 9, "x86_64/1 rpi5/1"), 0);
		assert_int_equal(nb_image_open(&a, path, 0), 0);
		assert_int_equal(nb_image_open(&b, ref, 0), 0);
		assert_int_equal(a.hdr->model_version, 9);
		assert_int_equal(nb_image_meta(&a, "compatible", &val, &len), 0);
		assert_int_equal(len, 15);
		assert_memory_equal(val, "x86_64/1 rpi5/1", 15);
		assert_int_equal(nb_image_meta(&a, "license", &val, &len), 0);
		assert_int_equal(len, grow ? sizeof(license) - 1 : 3);
		assert_int_equal(a.hdr->file_size, b.hdr->file_size + (grow ? NB_IMAGE_PAGE : 0));
		for (uint32_t i = 0; i < a.n_tensors; i++)
			assert_memory_equal(a.tensors[i].data, b.tensors[i].data, a.tensors[i].size);
		assert_int_equal(nb_manifest_check_compat(&a, "t", "rpi5", true), 0);
		int saved = test_quiet();
		assert_int_equal(nb_manifest_check_compat(&a, "t", "rpi4", true), -NB_ENOTSUP);
		assert_int_equal(nb_manifest_check_compat(&b, "t", "rpi4", true), -NB_ENOENT);
		test_loud(saved);
		nb_image_close(&a);
		nb_image_close(&b);
		/* The old signature is gone; a new one verifies. */
		saved = test_quiet();
		assert_int_equal(nb_verify_file(path, &f->trust, &v), -NB_ESIG);
		test_loud(saved);
		assert_false(v.sig.is_signed);
		assert_int_equal(nb_sign_file(path, f->key, 2, &info), 0);
		assert_int_equal(nb_verify_file(path, &f->trust, &v), 0);
		assert_int_equal(v.model_version, 9);
		assert_string_equal(v.compat, "x86_64/1 rpi5/1");
		/* Stamped again: replaced, not added. */
		assert_int_equal(nb_sign_stamp(path, 0, "*/1"), 0);
		saved = test_quiet();
		assert_int_equal(nb_verify_file(path, &f->trust, &v), -NB_ESIG);
		test_loud(saved);
		assert_int_equal(nb_image_open(&a, path, 0), 0);
		assert_int_equal(a.hdr->model_version, 9);
		assert_int_equal(nb_image_meta(&a, "compatible", &val, &len), 0);
		assert_int_equal(len, 3);
		nb_image_close(&a);
		unlink(ref);
	}
	int saved = test_quiet();
	assert_int_equal(nb_sign_stamp(path, 0, "bad compat"), -NB_EINVAL);
	test_loud(saved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keygen),
		cmocka_unit_test(test_good_signature),
		cmocka_unit_test(test_digest_threads),
		cmocka_unit_test(test_tamper_regions),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_untrusted_and_unsigned),
		cmocka_unit_test(test_resign_with_other_key),
		cmocka_unit_test(test_trust_pem_blocks),
		cmocka_unit_test(test_trust_dir_ownership),
		cmocka_unit_test(test_policy_and_records),
		cmocka_unit_test(test_records_not_trusted_from_others),
		cmocka_unit_test(test_compat_strings),
		cmocka_unit_test(test_stamp),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
