/* The release and the source revision this binary was built from; the
 * build writes both into generated/version.h, which changes only when they
 * do, so that nothing else is rebuilt for a new commit. */
#ifndef NB_VERSION_H
#define NB_VERSION_H

/* The release, "0.1.0". */
const char *nb_version_string(void);
/* `git describe --always --dirty` of the source tree, or "unknown". */
const char *nb_version_revision(void);

#endif
