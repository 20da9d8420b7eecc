/* Options from a file: the file is read once and cut into lines in place;
 * each option line becomes one allocated "--name=value" (or "--name") word,
 * which getopt_long reads like the command line's. */
#include "runtime/base/argfile.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *config_path(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--config"))
			return i + 1 < argc ? argv[i + 1] : NULL;
		if (!strncmp(argv[i], "--config=", 9))
			return argv[i] + 9;
	}
	return NULL;
}

static int read_all(const char *applet, const char *path, char **out)
{
	FILE *f = fopen(path, "rb");
	char *text = NULL;
	size_t n;

	if (!f) {
		nb_err("%s: --config %s: %s", applet, path, strerror(errno));
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	}
	text = malloc(NB_ARGFILE_MAX_BYTES + 1);
	if (!text) {
		fclose(f);
		return -NB_ENOMEM;
	}
	n = fread(text, 1, NB_ARGFILE_MAX_BYTES + 1, f);
	if (ferror(f) || n > NB_ARGFILE_MAX_BYTES || memchr(text, '\0', n)) {
		nb_err("%s: --config %s: %s", applet, path,
		       ferror(f) ? "read error" : n > NB_ARGFILE_MAX_BYTES ? "larger than 64 KiB"
									 : "not a text file");
		fclose(f);
		free(text);
		return -NB_EFORMAT;
	}
	fclose(f);
	text[n] = '\0';
	*out = text;
	return 0;
}

static const struct option *find_option(const struct option *longopts, const char *name)
{
	for (; longopts->name; longopts++)
		if (!strcmp(longopts->name, name))
			return longopts;
	return NULL;
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t' || *s == '\r')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		*--end = '\0';
	return s;
}

/* Splits "name = value", "name value" or "name" in place. */
static void split(char *line, char **name, char **value)
{
	size_t k = strcspn(line, " \t=");
	char *v = line + k;

	*name = line;
	if (*v == '\0') {
		*value = NULL;
		return;
	}
	*v++ = '\0';
	v = trim(v);
	if (*v == '=')
		v = trim(v + 1);
	*value = v;
}

static int unquote(char **value)
{
	size_t n = strlen(*value);

	if (n == 0 || (*value)[0] != '"')
		return 0;
	if (n < 2 || (*value)[n - 1] != '"')
		return -1;
	(*value)[n - 1] = '\0';
	(*value)++;
	return 0;
}

static bool word_in(const char *s, const char *const *words)
{
	for (; *words; words++)
		if (!strcmp(s, *words))
			return true;
	return false;
}

/* One option line as a word, in *word (NULL: left out). */
static int option_word(const char *applet, const char *path, unsigned line_no, char *line,
		       const struct option *longopts, char **word)
{
	static const char *const yes[] = { "true", "yes", "on", "1", NULL };
	static const char *const no[] = { "false", "no", "off", "0", NULL };
	const struct option *opt;
	char *name, *value;

	split(line, &name, &value);
	if (!strncmp(name, "--", 2))
		name += 2;
	opt = find_option(longopts, name);
	if (!opt || !strcmp(name, "config")) {
		nb_err("%s: %s:%u: unknown option '%s'", applet, path, line_no, name);
		return -NB_EINVAL;
	}
	if (value && *value && unquote(&value)) {
		nb_err("%s: %s:%u: %s: unterminated quote", applet, path, line_no, name);
		return -NB_EINVAL;
	}
	*word = NULL;
	if (opt->has_arg == no_argument) {
		if (value && *value && !word_in(value, yes) && !word_in(value, no)) {
			nb_err("%s: %s:%u: %s takes no value (or true/false), not '%s'", applet, path,
			       line_no, name, value);
			return -NB_EINVAL;
		}
		if (value && *value && word_in(value, no))
			return 0;
		value = NULL;
	} else if (!value || (!*value && opt->has_arg == required_argument)) {
		nb_err("%s: %s:%u: %s needs a value", applet, path, line_no, name);
		return -NB_EINVAL;
	}
	if (asprintf(word, value ? "--%s=%s" : "--%s", name, value) < 0) {
		*word = NULL;
		return -NB_ENOMEM;
	}
	return 0;
}

void nb_argfile_close(struct nb_argfile *af)
{
	if (af->words) {
		for (int i = 0; i < af->n_words; i++)
			free(af->words[i]);
		free(af->words);
		free(af->argv);
	}
	memset(af, 0, sizeof(*af));
}

/* The file's option words, in af->words. */
static int read_words(struct nb_argfile *af, const char *applet, const char *path,
		      const struct option *longopts)
{
	char *text, *line, *next;
	unsigned line_no = 0;
	int ret = read_all(applet, path, &text);

	if (ret)
		return ret;
	af->words = calloc(NB_ARGFILE_MAX_BYTES / 2 + 1, sizeof(*af->words));
	if (!af->words) {
		ret = -NB_ENOMEM;
		goto out;
	}
	for (line = text; line; line = next) {
		char *word;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		line_no++;
		line = trim(line);
		if (*line == '\0' || *line == '#')
			continue;
		ret = option_word(applet, path, line_no, line, longopts, &word);
		if (ret)
			goto out;
		if (word)
			af->words[af->n_words++] = word;
	}
out:
	free(text);
	return ret;
}

int nb_argfile_open(struct nb_argfile *af, const char *applet, int argc, char **argv,
		    const struct option *longopts)
{
	const char *path = config_path(argc, argv);
	int ret;

	memset(af, 0, sizeof(*af));
	af->argc = argc;
	af->argv = argv;
	if (!path)
		return 0; /* a --config without its FILE is getopt's to report */
	ret = read_words(af, applet, path, longopts);
	if (ret)
		goto fail;
	af->argv = calloc((size_t)argc + (size_t)af->n_words + 1, sizeof(*af->argv));
	if (!af->argv) {
		ret = -NB_ENOMEM;
		goto fail;
	}
	af->argv[0] = argv[0];
	memcpy(af->argv + 1, af->words, (size_t)af->n_words * sizeof(*af->argv));
	memcpy(af->argv + 1 + af->n_words, argv + 1, (size_t)(argc - 1) * sizeof(*argv));
	af->argc = argc + af->n_words;
	nb_dbg("%s: %d options from %s", applet, af->n_words, path);
	return 0;
fail:
	if (af->argv == argv)
		af->argv = NULL;
	nb_argfile_close(af);
	return ret;
}
