#!/bin/sh
# The source tree's layering: every #include "..." points down the layers
# (tests/tools/layers.sh lists them), e.g. no host tool includes an applet.
set -u
. tests/lib.sh
check "every #include points down the layers" sh tests/tools/layers.sh
