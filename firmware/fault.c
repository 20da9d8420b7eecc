#include "firmware/fault.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void nb_fault_init(struct nb_fault *f)
{
	const char *s = getenv("NIBBLE_FAULT");

	f->target = s && *s ? s : NULL;
	f->step = 0;
}

void nb_fault_point(struct nb_fault *f, const char *name)
{
	char num[16];

	if (!f || !f->target)
		return;
	f->step++;
	if (strcmp(f->target, "list") == 0) {
		fprintf(stderr, "nibble: fault point %u: %s\n", f->step, name);
		return;
	}
	if (strncmp(f->target, "hang:", 5) == 0 && strcmp(f->target + 5, name) == 0) {
		fprintf(stderr, "nibble: fault injected at point %u (%s): hanging\n", f->step, name);
		for (;;)
			pause();
	}
	snprintf(num, sizeof(num), "%u", f->step);
	if (strcmp(f->target, num) == 0 || strcmp(f->target, name) == 0) {
		fprintf(stderr, "nibble: fault injected at point %u (%s): SIGKILL\n", f->step, name);
		fflush(stderr);
		kill(getpid(), SIGKILL);
		pause();
	}
}
