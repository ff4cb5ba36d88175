#!/usr/bin/env bash
# usage: run_git.sh LIBHAKMEM [NFILES]
# In a fresh directory, under glibc and then with hakmem preloaded (so every
# git subprocess, gc's pack-objects and repack included, runs on hakmem):
# init, add and commit NFILES generated files, log, modify a tenth of them and
# commit again, gc, fsck. Authors, committers and dates are fixed, so commit
# and tree ids must be identical under both allocators.
source "$(dirname "$0")/common.sh"
HAKMEM_LIB=$1; NFILES=${2:-3000}
check_lib "$HAKMEM_LIB"
need git
make_tmp

export GIT_AUTHOR_NAME="Hakmem Test" GIT_AUTHOR_EMAIL="test@hakmem.invalid"
export GIT_COMMITTER_NAME="Hakmem Test" GIT_COMMITTER_EMAIL="test@hakmem.invalid"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0 LC_ALL=C TZ=UTC
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE

generate() {  # generate DIR ROUND: NFILES files in 30 folders; round 2 rewrites every tenth
  local dir=$1 round=$2
  awk -v dir="$dir" -v n="$NFILES" -v round="$round" 'BEGIN {
    for (i = 0; i < n; i++) {
      if (round == 2 && i % 10 != 3) continue
      f = sprintf("%s/d%02d/file%05d.txt", dir, i % 30, i)
      lines = 3 + (i * 7) % 40
      for (l = 0; l < lines; l++)
        printf "round %d file %d line %d %s\n", (round == 2 ? 2 : 1), i, l, \
               substr("the quick brown fox jumps over the lazy dog", 1 + (i + l) % 40) > f
      close(f)
    }
  }'
}

# The git session: stdout must be identical under both allocators.
session() {
  local repo=$1
  git init -q -b main "$repo"
  cd "$repo"
  git config gc.auto 0
  git config core.fsync none 2>/dev/null || true
  for d in $(seq -f 'd%02g' 0 29); do mkdir -p "$d"; done
  generate . 1
  git add .
  GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z" \
    git commit -q -m "initial: $NFILES files"
  echo "files in HEAD: $(git ls-files | wc -l)"
  generate . 2
  git rm -q d00/file00000.txt d01/file00001.txt
  git mv d02/file00002.txt d02/renamed.txt
  git add -A
  GIT_AUTHOR_DATE="2024-01-02T00:00:00Z" GIT_COMMITTER_DATE="2024-01-02T00:00:00Z" \
    git commit -q -m "second: rewrite every tenth file"
  echo "log: $(git log --oneline | wc -l) commits"
  git log --format='%H %T %s'
  git diff --stat HEAD~1 HEAD | tail -n 1
  git diff HEAD~1 HEAD | git hash-object --stdin
  git ls-tree -r HEAD | git hash-object --stdin
  git grep -c 'round 2' HEAD -- d13 | tail -n 2
  git gc -q --aggressive
  git fsck --full --strict --no-progress
  echo "fsck: rc=$?"
  git count-objects -v | grep -E '^(count|in-pack|packs|prune-packable|garbage):'
  git cat-file -p HEAD:d05/file00005.txt | git hash-object --stdin
  git log --format=%H -1 HEAD~1
}

for mode in glibc hakmem; do
  mkdir -p "$TMP/$mode"
  export -f session generate
  export NFILES
  stats=(); [ "$mode" = hakmem ] && stats=(env HAKMEM_STATS=1)
  run_mode "$mode" 200 "$TMP/$mode.out" "$TMP/$mode.err" "${stats[@]}" bash -euo pipefail -c 'session "$1"' _ "$TMP/$mode/repo"
  [ "$RC" -eq 0 ] || { tail -n 30 "$TMP/$mode.err" >&2; fail "$mode: git session failed (rc=$RC)"; }
done
same_file "$TMP/glibc.out" "$TMP/hakmem.out" "git session output (commit ids, trees, fsck)"
# bash, awk and every git process (gc's repack and pack-objects too) report.
check_reports "$TMP/hakmem.err" 20
strip_reports "$TMP/hakmem.err" >"$TMP/hakmem.err2"
same_file "$TMP/glibc.err" "$TMP/hakmem.err2" "git session stderr"
[ "$(grep -c '^[0-9a-f]\{40\} [0-9a-f]\{40\} ' "$TMP/hakmem.out")" -eq 2 ] || fail "expected two commits in the log"
echo "git session output (identical under both):"; cat "$TMP/hakmem.out"
echo PASS
