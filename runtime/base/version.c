#include "runtime/base/version.h"

#include "generated/version.h"

const char *nb_version_string(void)
{
	return NB_VERSION;
}

const char *nb_version_revision(void)
{
	return NB_GIT_REV;
}
