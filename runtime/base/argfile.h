/* Options from a file (`--config FILE`), so that a service's settings live
 * in /etc rather than in its unit's command line. One option a line, its
 * long name without the dashes, then its value after '=' or blanks:
 *     # /etc/nibble/serve.conf
 *     socket = /run/nibble/nibble.sock
 *     uplink = https://cloud.example/v1
 *     local-only
 * Blank lines and lines starting with '#' are skipped; a value may be in
 * double quotes (kept as written inside them). An option that takes no
 * argument stands alone, or says true/yes/on (false/no/off leaves it out).
 * The file's options come first and the command line's after them, so a
 * flag given on the command line wins. */
#ifndef NB_ARGFILE_H
#define NB_ARGFILE_H

#include <getopt.h>

#define NB_ARGFILE_MAX_BYTES (64u << 10)

struct nb_argfile {
	int argc;
	char **argv;  /* argv[0], the file's options as --name=value, the rest */
	char **words; /* the file's words (owned; NULL without --config) */
	int n_words;
};

/* Finds `--config FILE` (or --config=FILE) in argv; without one, af->argv is
 * argv itself. Otherwise reads FILE and builds af's argv; a line that is not
 * an option of longopts, lacks a value it needs, or a file that cannot be
 * read is an error naming FILE:LINE (-NB_EINVAL / -NB_EIO, logged). The
 * config option itself must be in longopts (getopt then skips it). */
int nb_argfile_open(struct nb_argfile *af, const char *applet, int argc, char **argv,
		    const struct option *longopts);
void nb_argfile_close(struct nb_argfile *af);

#endif
