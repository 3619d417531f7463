#!/usr/bin/env bash
# Make the working tree light for one GPU call, then put it back.
#
# The device tool carries the tracked and untracked-not-ignored files (64 MiB a call in all). The
# tracked tree (about 47 MiB: shipped models, checkpoints, pictures) plus a training pack (about
# 48 MiB) do not fit together, and training needs none of those files. `light_tree.sh on` saves
# git's index, untracks them and ignores them in .git/info/exclude (nothing on disk changes and
# nothing is committed); `light_tree.sh off` restores the index and the exclude file exactly.
# Usage: trainer/recipes/light_tree.sh on|off   (from the repository root)
set -euo pipefail
git_dir=$(git rev-parse --git-dir)
heavy=(engine/models/*.onnx trainer/checkpoints docs benchmarks/samples examples tests/data)
case "${1:-}" in
  on)
    [ ! -e "$git_dir/index.light-tree" ] || { echo "already on"; exit 1; }
    cp "$git_dir/index" "$git_dir/index.light-tree"
    touch "$git_dir/info/exclude"
    cp "$git_dir/info/exclude" "$git_dir/info/exclude.light-tree"
    printf '/%s\n' "${heavy[@]}" >> "$git_dir/info/exclude"
    git rm -r -q --cached "${heavy[@]}"
    echo "light: $( (git ls-files; git ls-files --others --exclude-standard) | sort -u \
        | xargs -d '\n' du -cb 2>/dev/null | tail -1 | cut -f1) bytes travel besides the carry"
    ;;
  off)
    mv "$git_dir/index.light-tree" "$git_dir/index"
    mv "$git_dir/info/exclude.light-tree" "$git_dir/info/exclude"
    echo "restored"
    ;;
  *) echo "usage: $0 on|off" >&2; exit 2 ;;
esac
