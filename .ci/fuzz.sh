#!/usr/bin/env bash
# Runs every fuzz target of the module (func FuzzXxx in a _test.go file,
# found by grepping) for a short, bounded time each.
#
#   .ci/fuzz.sh                 # the whole list within about FUZZ_BUDGET seconds
#   FUZZTIME=10s .ci/fuzz.sh    # a fixed time per target
#   .ci/fuzz.sh ./reward ./openai   # only the targets under these directories
#
# FUZZ_BUDGET (default 150) is the wall time the whole list should take;
# each target gets an equal share of it, after an allowance for building the
# instrumented test binary, between 1s and 5s. A failing input is saved under
# the package's testdata/fuzz/ by go test; the script goes on with the other
# targets and exits 1 at the end if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

budget="${FUZZ_BUDGET:-150}"
build_allowance=2 # seconds per target, for go test's build and start-up
dirs=("$@")
[ ${#dirs[@]} -eq 0 ] && dirs=(.)

# "dir name" per target, sorted.
mapfile -t targets < <(
  grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]+\(' "${dirs[@]}" \
    | grep -v -e '/testdata/' -e '/vendor/' -e '/node_modules/' \
    | sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($#\1 \2#' \
    | sort -u
)
n=${#targets[@]}
if [ "$n" -eq 0 ]; then
  echo "fuzz: no fuzz targets found under ${dirs[*]}" >&2
  exit 1
fi

if [ -n "${FUZZTIME:-}" ]; then
  fuzztime="$FUZZTIME"
else
  per=$(( (budget - build_allowance * n) / n ))
  (( per > 5 )) && per=5
  (( per < 1 )) && per=1
  fuzztime="${per}s"
fi
echo "fuzz: $n targets, $fuzztime each"

failed=()
start=$SECONDS
for t in "${targets[@]}"; do
  dir="${t% *}"
  name="${t#* }"
  pkg="./${dir#./}"
  [ "$dir" = "." ] && pkg="."
  echo "== $pkg $name"
  # The timeout bounds a target that hangs while building or minimizing.
  # Go's fuzzer sometimes ends a short run with "context deadline exceeded"
  # and no failing input (a worker still busy when the time is up, on a
  # loaded machine): such a run is tried again, up to three times. A failure that wrote a
  # failing input, or that happens three times, counts.
  for try in 1 2 3; do
    log=$(mktemp)
    if timeout --kill-after=10s 120s go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$pkg" 2>&1 | tee "$log"; [ "${PIPESTATUS[0]}" -eq 0 ]; then
      rm -f "$log"
      break
    fi
    if [ "$try" -lt 3 ] && ! grep -q "Failing input written" "$log" && grep -q "context deadline exceeded" "$log"; then
      echo "fuzz: $pkg $name ended with a deadline error and no failing input; trying again"
      rm -f "$log"
      continue
    fi
    rm -f "$log"
    failed+=("$pkg $name")
    break
  done
done
echo "fuzz: $n targets in $(( SECONDS - start ))s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed:"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
