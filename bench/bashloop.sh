#!/bin/bash
# The peer of `proctor run`: a research loop the way published autoresearch scripts write it, on
# the same workspace and with the same python work. Usage: bashloop.sh WORKSPACE ITERATIONS [SEED]
#
# Per iteration: perturb X (a python one-liner, as the mutate agent does: N(0, 0.15) on 0..1,
# clamped, 4 significant digits), check the diff with git, run the experiment under
# `timeout 60 bwrap`, score with `python3 prepare.py`, keep (`git commit -am`) or revert
# (`git checkout -- . && git clean -fd`), append a TSV line. Iteration 0 is the baseline, as in
# `proctor run` (which also measures a baseline before its N iterations).
set -u
ws=$1 n=$2 seed=${3:-42}
cd "$ws" || exit 1
best=""
printf 'iteration\tcommit\tscore\tstatus\tdescription\n' >results.tsv

for ((i = 0; i <= n; i++)); do
    desc=baseline
    if ((i > 0)); then
        # 1. Propose.
        desc=$(python3 -c "
import random, re
random.seed($seed * 100003 + $i)
s = open('train.py').read()
m = re.search(r'^X = ([0-9.eE+-]+)', s, re.M)
x = float(m.group(1))
y = '%.4g' % min(1.0, max(0.0, x + random.gauss(0, 0.15)))
open('train.py', 'w').write(s[:m.start(1)] + y + s[m.end(1):])
print('X %s -> %s' % (m.group(1), y))")
        # 2. Only train.py may change; no new files.
        git diff --stat >/dev/null
        if [ "$(git status --porcelain --untracked-files=all)" != " M train.py" ]; then
            git checkout -- . && git clean -fdq
            printf '%d\t\t\trejected\t%s\n' "$i" "$desc" >>results.tsv
            continue
        fi
    fi
    # 3. Experiment, sandboxed, with a wall-clock limit.
    rm -rf outputs && mkdir outputs
    if ! timeout 60 bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp \
        --bind "$ws/outputs" "$ws/outputs" --die-with-parent --new-session python3 train.py >run.log 2>&1; then
        git checkout -- . && git clean -fdq
        printf '%d\t\t\tcrash\t%s\n' "$i" "$desc" >>results.tsv
        continue
    fi
    # 4. Score: the last line of the evaluator's stdout.
    score=$(python3 prepare.py | tail -n 1 | sed -n 's/.*"score": *\([-0-9.eE+]*\).*/\1/p')
    if [ -z "$score" ]; then
        git checkout -- . && git clean -fdq
        printf '%d\t\t\tcrash\t%s\n' "$i" "$desc" >>results.tsv
        continue
    fi
    # 5. Keep or revert.
    commit=""
    if [ -z "$best" ]; then
        status=keep best=$score
    elif awk -v s="$score" -v b="$best" 'BEGIN { exit !(s >= b + 0.001) }'; then
        status=keep best=$score
        git commit -qam "$desc (score $score)"
        commit=$(git rev-parse --short HEAD)
    else
        status=discard
        git checkout -- . && git clean -fdq
    fi
    # 6. Record.
    printf '%d\t%s\t%s\t%s\t%s\n' "$i" "$commit" "$score" "$status" "$desc" >>results.tsv
done
