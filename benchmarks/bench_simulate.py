"""The vectorised section 3.3 experiment against a per-label Python loop of the same experiment.

Run:  .venv/bin/python benchmarks/bench_simulate.py [--trials 100] [--loop-trials 100]
          [--library-trials 1]

Vectorised: ``gtx-stream simulate threshold --trials 100`` (both cohorts, the 15-tau sweep
for GTX and SV, k = 1..5 for MV and WMV, B = 15000) as a fresh process, start-up, imports and
draws included, output discarded; with one thread and with two (one cohort each).

Baselines, same run, each over every setting of its trials of each cohort; both read the same
draws as the vectorised simulator and their counts (examples labeled, labels, errors) are
checked against it:

* plain loop: the loop with the posterior and the rule written out in Python floats
  (``plain_trial`` below), the fastest a straightforward per-label loop gets; over
  ``--loop-trials`` trials (default 100: the same trials as the vectorised run, measured, not
  extrapolated; about 3 minutes here);
* library loop: :mod:`tests.offline.simulate_reference`, which asks one labeler at a time and
  calls ``core.models.aggregate`` and ``core.decision.decide`` on that one example after every
  label, as the aggregator does per frame; about a minute per trial and cohort, so over
  ``--library-trials`` trials (default 1) and its time *extrapolated* to ``--trials``.

A loop's time is scaled to ``--trials`` only when it ran fewer; the output says which.
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gtx_stream.core.models import ACCURACY_EPS, Method  # noqa: E402
from gtx_stream.offline import simulate as sim  # noqa: E402
from tests.offline import simulate_reference as ref  # noqa: E402


def time_vectorised(trials: int, jobs: int) -> tuple[float, float]:
    """Wall and CPU seconds of the whole command in a fresh process (imports included)."""
    argv = [sys.executable, "-m", "gtx_stream", "simulate", "threshold"]
    argv += ["--trials", str(trials), "--jobs", str(jobs)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def plain_trial(
    method: Method,
    draws: sim.Draws,
    trial: int,
    tau: float | None,
    k: int | None,
    kappa: int,
    budget: int,
) -> tuple[int, int, int, float]:
    """Section 3.3, one trial, one setting, in Python floats: (labeled, labels, errors, |err|)."""
    acc_of = [min(max(float(a), ACCURACY_EPS), 1.0 - ACCURACY_EPS) for a in draws.accuracy[trial]]
    weight = [math.log(a) - math.log1p(-a) for a in acc_of]
    who_rows, said_rows = draws.labeler[trial].tolist(), draws.label[trial].tolist()
    truths = draws.truth[trial].tolist()
    cap = kappa if method.uses_threshold else int(k or 0)
    threshold = tau if tau is not None else 1.0
    spent = n_labeled = errors = 0
    abs_error = 0.0
    i = 0
    while spent < budget:
        n, p1 = 0, 0.5
        votes = ones = wsum = wones = soft = 0.0
        while spent < budget and n < cap:
            if method.uses_threshold and n >= 1 and max(p1, 1.0 - p1) >= threshold:
                break
            j, label = who_rows[i][n], said_rows[i][n]
            a = acc_of[j]
            n += 1
            spent += 1
            if method is Method.GTX:
                votes += weight[j] if label else -weight[j]
                p1 = 1.0 / (1.0 + math.exp(-votes))
            elif method is Method.MV:
                ones += label
                p1 = ones / n
            elif method is Method.WMV:
                wsum += a
                wones += a * label
                p1 = wones / wsum
            else:
                soft += a if label else 1.0 - a
                p1 = soft / n
        hard = 1 if p1 > 0.5 else 0 if p1 < 0.5 else 1
        n_labeled += 1
        errors += hard != truths[i]
        abs_error += abs(truths[i] - p1)
        i += 1
    return n_labeled, spent, errors, abs_error


def time_loop(loop_trials: int, budget: int, kappa: int, plain: bool) -> tuple[float, float, int]:
    """Wall and CPU seconds of a per-label loop over every setting, and settings checked."""
    wall_total = cpu_total = 0.0
    checked = 0
    for cohort in sim.COHORTS:
        wall, cpu = time.perf_counter(), time.process_time()
        draws = sim.draw(cohort, trials=loop_trials, examples=budget, slots=kappa, seed=0)
        looped = []
        for method in sim.TABLE_ORDER:
            settings = (
                [(tau, None) for tau in sim.PAPER_TAUS]
                if method.uses_threshold
                else [(None, k) for k in range(1, kappa + 1)]
            )
            for tau, k in settings:
                for t in range(loop_trials):
                    if plain:
                        got = plain_trial(method, draws, t, tau, k, kappa, budget)
                    else:
                        got = ref.threshold_trial(
                            method,
                            draws,
                            draws.accuracy,
                            t,
                            tau=tau,
                            k=k,
                            kappa=kappa,
                            budget=budget,
                        )
                    looped.append((method, tau, k, t, got))
        wall_total += time.perf_counter() - wall
        cpu_total += time.process_time() - cpu
        # the vectorised simulator on the same draws gives the same counts
        outcomes = sim.simulate_threshold(cohort, draws, draws.accuracy, budget=budget)
        index = {(o.method, o.tau, o.k): o for o in outcomes}
        for method, tau, k, t, (n, used, errors, _) in looped:
            o = index[(method, tau, k)]
            mine = (int(o.n_labeled[t]), int(o.labels_used[t]), int(o.errors[t]))
            assert mine == (n, used, errors), (cohort.name, method, tau, k, t, mine)
            checked += 1
    return wall_total, cpu_total, checked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--loop-trials", type=int, default=100, help="plain loop's trials")
    parser.add_argument("--library-trials", type=int, default=1, help="library loop's trials")
    parser.add_argument("--repeat", type=int, default=3, help="vectorised runs; best is kept")
    args = parser.parse_args()

    runs = {
        jobs: [time_vectorised(args.trials, jobs) for _ in range(args.repeat)] for jobs in (1, 2)
    }
    best = {jobs: min(r) for jobs, r in runs.items()}
    print(f"simulate threshold --trials {args.trials} (2 cohorts x 40 settings, B = 15000)")
    for jobs, (wall, cpu) in best.items():
        print(
            f"  vectorised, {jobs} thread(s): {wall:6.2f} s wall, {cpu:6.2f} s CPU "
            f"(best of {args.repeat})"
        )
    loops = (("plain loop", True, args.loop_trials), ("library loop", False, args.library_trials))
    for name, plain, trials in loops:
        scale = args.trials / trials
        wall, cpu, checked = time_loop(trials, budget=15000, kappa=5, plain=plain)
        how = (
            "measured, not extrapolated"
            if scale == 1
            else f"EXTRAPOLATED from {trials} to {args.trials} trials: x {scale:g} = "
            f"{wall * scale:,.0f} s wall, {cpu * scale:,.0f} s CPU"
        )
        print(
            f"  {name}: {wall:.1f} s wall, {cpu:.1f} s CPU for {trials} trial(s) per cohort "
            f"({checked} trial-settings, counts equal to the vectorised ones); {how}"
        )
        for jobs, (v_wall, v_cpu) in best.items():
            print(
                f"    ratio to vectorised, {jobs} thread(s): {wall * scale / v_wall:,.0f}x wall, "
                f"{cpu * scale / v_cpu:,.0f}x CPU{'' if scale == 1 else ' (extrapolated)'}"
            )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
