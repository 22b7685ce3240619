# Shared by the bench/ scripts; source it after setting root to the
# repository's top directory.

# workdir NAME [DIR]: sets dir to DIR (created if missing), or else to a
# fresh directory bench/tmp/NAME.XXXXXX on the repository's disk that is
# removed when the script exits; either way as an absolute path.
workdir() {
	if [[ $# -ge 2 ]]; then
		dir=$2
		mkdir -p "$dir"
	else
		mkdir -p "$root/bench/tmp"
		dir=$(mktemp -d "$root/bench/tmp/$1.XXXXXX")
		trap 'rm -rf "$dir"' EXIT
	fi
	dir=$(cd "$dir" && pwd)
}
