"""Choosing which candidate pairs are worth labeling, once a reward model exists (issue 7, item 5).

Strategies (the name is recorded with each pair and each label, so the labeling counters show how
many labels every strategy produced: store label_stats()["by_strategy"]):

    uncertainty   the reward model's predicted preference P(a > b) = sigmoid(r_a - r_b) closest to 0.5:
                  rank by |sigmoid(r_a - r_b) - 0.5|, smallest first.
    disagreement  two reward models (e.g. two checkpoints, or two runs) disagree the most: rank by
                  |P1(a > b) - P2(a > b)|, largest first (a pair they order differently comes first).

`rank_pairs` orders scored pairs; `RewardScorer` wraps a reward-model checkpoint; `fill_ranked_pairs`
is what the candidate queue calls instead of `modeling.pairs.fill_pairs` for these strategies: it
generates `pool_factor` times more pairs than asked (prompts chosen by the project's prompt strategy),
scores them, and stores only the best `count` with their strategy name. The pairs not kept are not
stored (that generation is the price of choosing).
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.errors import ConfigError

RANKED_STRATEGIES = ("uncertainty", "disagreement")


def preference_probability(r_a: float, r_b: float) -> float:
    """The reward model's P(a preferred over b): sigmoid(r_a - r_b) (Bradley-Terry)."""
    d = r_a - r_b
    return 1.0 / (1.0 + math.exp(-d)) if d >= 0 else math.exp(d) / (1.0 + math.exp(d))


def uncertainty(r_a: float, r_b: float) -> float:
    """|sigmoid(r_a - r_b) - 0.5|: 0 is a coin flip for the reward model, 0.5 is certainty."""
    return abs(preference_probability(r_a, r_b) - 0.5)


def disagreement(first: tuple[float, float], second: tuple[float, float]) -> float:
    """|P1(a > b) - P2(a > b)| for two reward models' scores (r_a, r_b) of the same pair."""
    return abs(preference_probability(*first) - preference_probability(*second))


def rank_by_uncertainty(scores_a: Sequence[float], scores_b: Sequence[float]) -> list[int]:
    """Pair indices, most uncertain first (ties keep their order)."""
    values = [uncertainty(a, b) for a, b in zip(scores_a, scores_b, strict=True)]
    return sorted(range(len(values)), key=lambda i: values[i])


def rank_by_disagreement(first: Sequence[tuple[float, float]], second: Sequence[tuple[float, float]]) -> list[int]:
    """Pair indices, largest disagreement between the two reward models first (ties keep their order)."""
    values = [disagreement(x, y) for x, y in zip(first, second, strict=True)]
    return sorted(range(len(values)), key=lambda i: -values[i])


class RewardScorer:
    """A reward-model checkpoint loaded once: scores (prompt, response) pairs."""

    def __init__(self, checkpoint_dir: str | Path):
        from rlhf_desktop.training.reward import load_reward_model

        self.checkpoint_dir = str(checkpoint_dir)
        self.model, self.tokenizer = load_reward_model(checkpoint_dir)

    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        from rlhf_desktop.training.reward import score

        return score(self.model, self.tokenizer, list(prompts), list(responses))

    def pair_scores(self, pairs: Sequence[tuple[str, str, str]]) -> list[tuple[float, float]]:
        """(r_a, r_b) for each (prompt, a, b), in one batched pass."""
        prompts = [p for p, _, _ in pairs] * 2
        texts = [a for _, a, _ in pairs] + [b for _, _, b in pairs]
        flat = self.scores(prompts, texts)
        n = len(pairs)
        return list(zip(flat[:n], flat[n:]))


def rank_pairs(pairs: Sequence[tuple[str, str, str]], strategy: str, scorers: Sequence[Any]) -> list[tuple[int, float]]:
    """[(pair index, value)] best first for (prompt, a, b) pairs; value = uncertainty or disagreement.

    scorers: objects with pair_scores(pairs) -> [(r_a, r_b)] (RewardScorer): one for uncertainty,
    two for disagreement.
    """
    if strategy == "uncertainty":
        if len(scorers) < 1:
            raise ConfigError("uncertainty sampling needs a reward model", where="strategy",
                              hint="train a reward model first, or use the random strategy")
        scored = scorers[0].pair_scores(pairs)
        order = rank_by_uncertainty([a for a, _ in scored], [b for _, b in scored])
        return [(i, uncertainty(*scored[i])) for i in order]
    if strategy == "disagreement":
        if len(scorers) < 2:
            raise ConfigError("disagreement sampling needs two reward models", where="strategy",
                              hint="choose two reward-model checkpoints (two runs, or two steps of one run)")
        first, second = scorers[0].pair_scores(pairs), scorers[1].pair_scores(pairs)
        order = rank_by_disagreement(first, second)
        return [(i, disagreement(first[i], second[i])) for i in order]
    raise ConfigError(f"unknown ranking strategy {strategy!r}", where="strategy",
                      hint=f"one of {', '.join(RANKED_STRATEGIES)}")


def ranking_checkpoints(project, strategy: str) -> list[dict[str, Any]]:
    """The reward-model checkpoints a ranking uses, newest first: [{label, path, run_id, step}].

    uncertainty: the latest checkpoint of the newest reward-model run. disagreement: the latest
    checkpoints of the two newest reward-model runs, or, with a single run, its two latest checkpoints.
    Runs whose checkpoint folders were deleted are skipped. ConfigError (with what to do) when there
    are not enough.
    """
    from rlhf_desktop.store import runs as store

    found: list[dict[str, Any]] = []
    per_run: list[list[dict[str, Any]]] = []
    for run in sorted(store.list_runs(project, "rm"), key=lambda r: r["id"], reverse=True):
        ckpts = [c for c in reversed(store.list_checkpoints(project, run["id"])) if Path(c["abs_path"]).is_dir()]
        if ckpts:
            per_run.append([{"label": f"run {run['id']} RM step {c['step']}", "path": c["abs_path"],
                             "run_id": run["id"], "step": c["step"]} for c in ckpts])
    if strategy == "uncertainty":
        found = [per_run[0][0]] if per_run else []
        if not found:
            raise ConfigError("uncertainty ranking needs a trained reward model", where="ranking",
                              hint="train a reward model (Train > Reward model), or set the ranking to none")
    elif strategy == "disagreement":
        if len(per_run) >= 2:
            found = [per_run[0][0], per_run[1][0]]
        elif per_run and len(per_run[0]) >= 2:
            found = per_run[0][:2]
        if len(found) < 2:
            raise ConfigError("disagreement ranking needs two reward models", where="ranking",
                              hint="train a second reward model, or save two checkpoints in one run "
                                   "(save_every below max_steps); or use the uncertainty ranking")
    else:
        raise ConfigError(f"unknown ranking strategy {strategy!r}", where="ranking",
                          hint=f"one of: {', '.join(RANKED_STRATEGIES)}")
    return found


def load_scorers(project, strategy: str, ctx: JobContext | None = None) -> list[RewardScorer]:
    """RewardScorers for `strategy` (see ranking_checkpoints), loaded once for many batches."""
    scorers = []
    for ckpt in ranking_checkpoints(project, strategy):
        if ctx is not None:
            ctx.check()
            ctx.status(f"loading reward model {ckpt['label']} for {strategy} ranking")
        scorers.append(RewardScorer(ckpt["path"]))
    return scorers


def fill_for_settings(project, loaded, count: int, settings, *, scorers: Sequence[Any] = (),
                      checkpoint_id: int | None = None, seed: int | None = None, ctx: JobContext | None = None,
                      on_pair: Callable[[Any], None] | None = None, exclude: set | None = None):
    """`count` new pairs as the settings ask: every pair (ranking "none", `modeling.pairs.fill_pairs`) or
    the best of ranking_pool x count by the settings' ranking (`fill_ranked_pairs`, with `scorers` from
    `load_scorers`). What the candidate queue and `generate-pairs` call."""
    from rlhf_desktop.modeling.pairs import fill_pairs

    if settings.ranking == "none":
        return fill_pairs(project, loaded, count, settings, checkpoint_id=checkpoint_id, seed=seed, ctx=ctx,
                          on_pair=on_pair, exclude=exclude)
    return fill_ranked_pairs(project, loaded, count, settings, strategy=settings.ranking, scorers=scorers,
                             pool_factor=settings.ranking_pool, checkpoint_id=checkpoint_id, seed=seed, ctx=ctx,
                             on_pair=on_pair, exclude=exclude)


def fill_ranked_pairs(project, loaded, count: int, settings=None, *, strategy: str = "uncertainty",
                      scorers: Sequence[Any] = (), pool_factor: int = 3, checkpoint_id: int | None = None,
                      seed: int | None = None, ctx: JobContext | None = None,
                      on_pair: Callable[[Any], None] | None = None, exclude: set | None = None):
    """Like `modeling.pairs.fill_pairs`, but keep the `count` best of `pool_factor * count` pairs by `strategy`.

    Prompts come from the settings' prompt strategy (random by default); the kept pairs are stored with
    `strategy` as their strategy, so the labels they get count under it. Returns a FillReport.
    """
    from rlhf_desktop.modeling.pairs import STRATEGIES, FillReport, PairSettings, make_pairs, store_pair

    settings = settings or PairSettings()
    settings.validate()
    if pool_factor < 1:
        raise ConfigError("pool_factor must be at least 1", where="pool_factor")
    ctx = ctx or JobContext()
    rng = random.Random(seed)
    exclude = exclude if exclude is not None else set()
    report = FillReport()
    start = time.perf_counter()
    picked = STRATEGIES[settings.strategy](project, count * pool_factor, rng, exclude)
    pool: list[tuple[int, str, Any]] = []
    for offset in range(0, len(picked), settings.prompts_per_batch):
        ctx.check()
        chunk = picked[offset:offset + settings.prompts_per_batch]
        ctx.status(f"generating candidate pairs {offset + len(chunk)}/{len(picked)}")
        made = make_pairs(loaded, [t for _, t in chunk], settings, seed=rng.randrange(2**31), ctx=ctx)
        for (pid, text), pair in zip(chunk, made):
            if pair is None:
                exclude.add(pid)
                report.skipped_prompts.append(pid)
            else:
                pool.append((pid, text, pair))
        ctx.progress(len(pool), len(picked))
    if not pool:
        report.seconds = time.perf_counter() - start
        return report
    ctx.status(f"ranking {len(pool)} pairs by {strategy}")
    ranked = rank_pairs([(text, pair.texts[0], pair.texts[1]) for _, text, pair in pool], strategy, scorers)
    model = getattr(loaded, "name", "") or ""
    per_pair = (time.perf_counter() - start) / max(1, len(pool))
    for index, value in ranked[:count]:
        pid, text, pair = pool[index]
        ready = store_pair(project, pid, text, pair, model=model, strategy=strategy, checkpoint_id=checkpoint_id,
                           rng=rng, gen_seconds=per_pair)
        report.pairs += 1
        report.responses += 2
        report.regenerated += pair.tries - 1
        if on_pair is not None:
            on_pair(ready)
    report.seconds = time.perf_counter() - start
    return report
