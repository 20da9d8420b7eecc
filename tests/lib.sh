# TAP helpers for the shell tests: each check prints "ok - ..." or
# "not ok - ..." and tests/run.sh counts them.

# check DESCRIPTION COMMAND...: ok if the command exits 0.
check() {
	_desc=$1
	shift
	if _out=$("$@" 2>&1); then
		echo "ok - $_desc"
	else
		echo "not ok - $_desc"
		printf '%s\n' "$_out" | tail -n 15 | sed 's/^/#   /'
	fi
}

# check_output DESCRIPTION PATTERN COMMAND...: ok if it exits 0 and its
# output (stdout + stderr) matches the extended regex PATTERN.
check_output() {
	_desc=$1 _pat=$2
	shift 2
	if _out=$("$@" 2>&1) && printf '%s\n' "$_out" | grep -Eq -- "$_pat"; then
		echo "ok - $_desc"
	else
		echo "not ok - $_desc (wanted /$_pat/)"
		printf '%s\n' "$_out" | tail -n 15 | sed 's/^/#   /'
	fi
}

# check_fails DESCRIPTION STATUS PATTERN COMMAND...: ok if it exits with
# exactly STATUS and its output matches PATTERN.
check_fails() {
	_desc=$1 _want=$2 _pat=$3
	shift 3
	_out=$("$@" 2>&1)
	_got=$?
	if [ "$_got" = "$_want" ] && printf '%s\n' "$_out" | grep -Eq -- "$_pat"; then
		echo "ok - $_desc"
	else
		echo "not ok - $_desc (exit $_got, wanted $_want and /$_pat/)"
		printf '%s\n' "$_out" | tail -n 15 | sed 's/^/#   /'
	fi
}

# check_usage DESCRIPTION PATTERN COMMAND...: ok if it is a usage error:
# exit status 2 and exactly one line of output (no usage text, nothing
# echoed), "nibble: error: " followed by PATTERN (an extended regex that
# must match the rest of the line).
check_usage() {
	_desc=$1 _pat=$2
	shift 2
	_out=$("$@" 2>&1)
	_got=$?
	if [ "$_got" = 2 ] && [ "$(printf '%s\n' "$_out" | wc -l)" = 1 ] &&
		printf '%s\n' "$_out" | grep -Eq -- "^nibble: error: $_pat\$"; then
		echo "ok - $_desc"
	else
		echo "not ok - $_desc (exit $_got, wanted 2 and one line /nibble: error: $_pat/)"
		printf '%s\n' "$_out" | tail -n 15 | sed 's/^/#   /'
	fi
}

# skip DESCRIPTION REASON: a check that cannot run here; tests/run.sh counts
# it as skipped and shows the reason.
skip() {
	echo "ok - $1 # SKIP $2"
}
