"""Evaluation: arena statistics with 95% intervals, a length-controlled win rate, automatic evaluation.

Arena statistics (`arena_stats`), from model A's side, over the judged votes (skips left out):
  * win, tie, both-bad and loss rates, each with a 95% Wilson score interval (better than the normal
    approximation at small n and near 0 or 1);
  * `win_rate` = (wins + (ties + both_bad) / 2) / n, AlpacaEval's convention of a tie as half a win;
    its interval is Wilson's with the fractional count (an approximation: a tie is less variable than
    a coin flip, so the interval is slightly conservative);
  * `decisive_win_rate` = wins / (wins + losses), Wilson interval: A beats B when its low end is above 0.5.

Length-controlled win rate (`length_controlled_win_rate`), after AlpacaEval 2's LC idea: a logistic
regression of the outcome y (1 = A wins, 1/2 = tie or both bad, 0 = B wins) on the length difference,
    P(A wins) = sigmoid(b0 + b1 * tanh((len_a - len_b) / sd(len_a - len_b))),
fit by Newton's method (IRLS) with numpy and a tiny ridge penalty (1e-4) that keeps a separable set
finite. The LC win rate is the predicted win probability at zero length difference, sigmoid(b0); its
interval is sigmoid(b0 +- 1.96 se(b0)), se from the inverse of the penalised Fisher information.
Lengths are whatever the caller counts (characters here and in the arena).

Automatic evaluation (`automatic_evaluation`) of one model's answers to held-out prompts: the reward
model's mean score, the KL from the reference as the mean per-token log-probability difference of the
model's own samples under the model and under the reference (log pi(y_t) - log pi_ref(y_t), the k1
estimator; an unbiased KL estimate when the samples were drawn at temperature 1, otherwise the
log-ratio on the answers actually shown), and the mean response length in tokens and characters.
Answers are re-tokenized from their text, which can differ from the sampled tokens in rare cases.

Arena sessions live in the project: their settings under the project setting `arena_sessions`; each
answer is a response (origin "arena", gen_config {"arena": session, "side": "a"|"b"}); each vote a
comparison with source "arena" (strategy "arena") as shown (left/right), so votes on train prompts
feed the next reward model like any label (the reward-model stage trains on train prompts and
measures on held-out ones).
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Any, Sequence

import numpy as np

from rlhf_desktop.core.stats import Z95, wilson_interval  # noqa: F401 (re-exported)

ARENA_SOURCE = "arena"
SESSIONS_KEY = "arena_sessions"
VOTES = ("a", "b", "tie", "both_bad")  # a vote from model A's side


# -- rates with intervals --------------------------------------------------------------------
def _rate(k: float, n: int) -> dict[str, Any]:
    low, high = wilson_interval(k, n)
    return {"rate": (k / n) if n else None, "ci_low": low, "ci_high": high, "count": k}


def arena_stats(votes: Sequence[str]) -> dict[str, Any]:
    """Rates with 95% Wilson intervals for votes "a", "b", "tie", "both_bad" (others are ignored)."""
    counts = {v: sum(1 for x in votes if x == v) for v in VOTES}
    n = sum(counts.values())
    wins, losses = counts["a"], counts["b"]
    half = counts["tie"] + counts["both_bad"]
    return {
        "n": n,
        "win": _rate(wins, n), "tie": _rate(counts["tie"], n), "both_bad": _rate(counts["both_bad"], n),
        "loss": _rate(losses, n),
        "win_rate": _rate(wins + 0.5 * half, n),
        "decisive_win_rate": _rate(wins, wins + losses),
    }


# -- length-controlled win rate --------------------------------------------------------------
def _sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -500, 500)))


def length_controlled_win_rate(votes: Sequence[str], len_a: Sequence[float], len_b: Sequence[float],
                               ridge: float = 1e-4, max_iter: int = 100) -> dict[str, Any]:
    """sigmoid(b0) of the logistic fit of the outcome on tanh(length difference / its sd); see the module doc."""
    rows = [(v, a, b) for v, a, b in zip(votes, len_a, len_b) if v in VOTES]
    n = len(rows)
    if n == 0:
        return {"lc_win_rate": None, "ci_low": 0.0, "ci_high": 1.0, "length_coef": 0.0, "scale": 0.0, "n": 0,
                "converged": True}
    y = np.array([{"a": 1.0, "b": 0.0}.get(v, 0.5) for v, _, _ in rows])
    diff = np.array([float(a) - float(b) for _, a, b in rows])
    scale = float(diff.std())
    x = np.tanh(diff / scale) if scale > 0 else np.zeros(n)
    X = np.stack([np.ones(n), x], axis=1)  # (n, 2)
    penalty = np.diag([ridge, ridge])
    beta = np.zeros(2)
    converged = False
    for _ in range(max_iter):
        p = _sigmoid(X @ beta)
        grad = X.T @ (y - p) - penalty @ beta
        hess = (X * (p * (1 - p))[:, None]).T @ X + penalty  # Fisher information (2, 2)
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if float(np.max(np.abs(step))) < 1e-10:
            converged = True
            break
    p = _sigmoid(X @ beta)
    hess = (X * (p * (1 - p))[:, None]).T @ X + penalty
    se = float(math.sqrt(max(np.linalg.inv(hess)[0, 0], 0.0)))
    b0 = float(beta[0])
    return {"lc_win_rate": float(_sigmoid(b0)), "ci_low": float(_sigmoid(b0 - Z95 * se)),
            "ci_high": float(_sigmoid(b0 + Z95 * se)), "length_coef": float(beta[1]), "scale": scale, "n": n,
            "converged": converged}


# -- automatic evaluation --------------------------------------------------------------------
def response_logprobs(model, tokenizer, prompts: Sequence[str], responses: Sequence[str],
                      batch_size: int = 8) -> list[np.ndarray]:
    """Per-token log-probabilities of each response after its chat-formatted prompt, under `model`."""
    import torch

    from rlhf_desktop.modeling.generation import format_prompt

    chat = bool(getattr(tokenizer, "chat_template", None))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            rows = []
            for prompt, response in zip(prompts[start:start + batch_size], responses[start:start + batch_size]):
                head = tokenizer(format_prompt(tokenizer, prompt), add_special_tokens=not chat)["input_ids"]
                tail = tokenizer(response, add_special_tokens=False)["input_ids"]
                rows.append((list(head), list(tail)))
            width = max(len(h) + len(t) for h, t in rows)
            # Right padding keeps every real token at its natural position (no position_ids needed).
            ids = torch.tensor([h + t + [pad] * (width - len(h) - len(t)) for h, t in rows], device=device)  # (B, T)
            mask = torch.tensor([[1] * (len(h) + len(t)) + [0] * (width - len(h) - len(t)) for h, t in rows],
                                device=device)  # (B, T)
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)  # (B, T, V)
            for i, (h, t) in enumerate(rows):
                if not t:
                    out.append(np.zeros(0))
                    continue
                positions = torch.arange(len(h) - 1, len(h) + len(t) - 1, device=device)  # predict token p+1
                targets = ids[i, len(h):len(h) + len(t)]
                out.append(logp[i, positions, targets].cpu().numpy())  # host sync
    return out


def mean_kl(model, reference, tokenizer, prompts: Sequence[str], responses: Sequence[str]) -> float:
    """Mean over all response tokens of log pi(y_t) - log pi_ref(y_t) (reference None: the model's adapters off)."""
    ours = response_logprobs(model, tokenizer, prompts, responses)
    if reference is None:
        if not hasattr(model, "disable_adapter"):
            raise ValueError("reference is None but the model has no adapter to disable")
        with model.disable_adapter():
            ref = response_logprobs(model, tokenizer, prompts, responses)
    else:
        ref = response_logprobs(reference, tokenizer, prompts, responses)
    diffs = [a - b for a, b in zip(ours, ref) if len(a)]
    return float(np.concatenate(diffs).mean()) if diffs else 0.0


def automatic_evaluation(model, tokenizer, prompts: Sequence[str], responses: Sequence[str], *,
                         reference: Any = None, reward: tuple[Any, Any] | None = None,
                         kl: bool = True) -> dict[str, Any]:
    """{n, reward_mean, reward_std, kl_mean, length_tokens, length_chars} for one model's answers.

    reference: the reference causal LM (same tokenizer), or None to switch the model's adapters off;
    kl=False skips it (the model is the reference: 0). reward: (reward model, its tokenizer) or None.
    """
    from rlhf_desktop.training.reward import score

    prompts, responses = list(prompts), list(responses)
    result: dict[str, Any] = {"n": len(responses), "reward_mean": None, "reward_std": None, "kl_mean": 0.0}
    if reward is not None and responses:
        scores = np.array(score(reward[0], reward[1], prompts, responses))
        result["reward_mean"], result["reward_std"] = float(scores.mean()), float(scores.std())
    if kl and responses:
        result["kl_mean"] = mean_kl(model, reference, tokenizer, prompts, responses)
    lengths = [len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses]
    result["length_tokens"] = float(np.mean(lengths)) if lengths else 0.0
    result["length_chars"] = float(np.mean([len(r) for r in responses])) if responses else 0.0
    return result


# -- arena sessions in the project -----------------------------------------------------------
def create_session(project, a: dict[str, Any], b: dict[str, Any], split: str | None,
                   sampling: dict[str, Any] | None = None) -> str:
    """Record a new arena session (contestants {label, spec, checkpoint_id}); returns its id."""
    sessions = dict(project.get_setting(SESSIONS_KEY, {}) or {})
    session_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    sessions[session_id] = {"id": session_id, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "a": dict(a),
                            "b": dict(b), "split": split, "sampling": dict(sampling or {}), "auto": {}}
    project.set_setting(SESSIONS_KEY, sessions)
    return session_id


def get_session(project, session_id: str) -> dict[str, Any]:
    from rlhf_desktop.core.errors import DataError

    sessions = project.get_setting(SESSIONS_KEY, {}) or {}
    if session_id not in sessions:
        raise DataError(f"no arena session {session_id!r} in this project", where=str(project.folder),
                        hint="list them with `rlhf-desktop arena-stats --project DIR`")
    return sessions[session_id]


def list_sessions(project) -> list[dict[str, Any]]:
    """Arena sessions, oldest first."""
    return sorted((project.get_setting(SESSIONS_KEY, {}) or {}).values(), key=lambda s: s["id"])


def update_session(project, session_id: str, **fields: Any) -> None:
    sessions = dict(project.get_setting(SESSIONS_KEY, {}) or {})
    get_session(project, session_id)
    sessions[session_id] = {**sessions[session_id], **fields}
    project.set_setting(SESSIONS_KEY, sessions)


def store_answers(project, session: dict[str, Any], prompt_id: int, text_a: str, text_b: str) -> tuple[int, int]:
    """Both contestants' answers to one prompt as arena responses, in one transaction; (id_a, id_b)."""
    from rlhf_desktop.store.labels import add_response

    ids = []
    with project.transaction():
        for side, text in (("a", text_a), ("b", text_b)):
            who = session[side]
            ids.append(add_response(project, prompt_id, text, model=str(who.get("label", side)),
                                    gen_config={**session.get("sampling", {}), "arena": session["id"], "side": side},
                                    origin="arena", checkpoint_id=who.get("checkpoint_id")))
    return ids[0], ids[1]


def record_vote(project, prompt_id: int, left_id: int, right_id: int, outcome: str,
                duration_ms: int | None = None) -> int:
    """One arena vote as shown (outcome: left, right, tie, both_bad, skipped); the comparison id."""
    from rlhf_desktop.store.labels import record_label

    return record_label(project, prompt_id, left_id, right_id, outcome, duration_ms=duration_ms,
                        source=ARENA_SOURCE, strategy=ARENA_SOURCE)


def session_votes(project, session_id: str) -> list[dict[str, Any]]:
    """The session's votes from A's side: [{vote, len_a, len_b, prompt_id, comparison_id, a_left}]."""
    rows = project.query(
        "SELECT c.id, c.prompt_id, c.outcome, l.text AS left_text, r.text AS right_text, "
        "json_extract(l.gen_config, '$.side') AS left_side FROM comparisons c "
        "JOIN responses l ON l.id = c.left_id JOIN responses r ON r.id = c.right_id "
        "WHERE c.source = ? AND json_extract(l.gen_config, '$.arena') = ? ORDER BY c.id",
        (ARENA_SOURCE, session_id))
    votes = []
    for row in rows:
        a_left = row["left_side"] == "a"
        text_a, text_b = (row["left_text"], row["right_text"]) if a_left else (row["right_text"], row["left_text"])
        outcome = row["outcome"]
        if outcome in ("left", "right"):
            vote = "a" if (outcome == "left") == a_left else "b"
        else:
            vote = outcome  # tie, both_bad, skipped
        votes.append({"vote": vote, "len_a": len(text_a), "len_b": len(text_b), "prompt_id": row["prompt_id"],
                      "comparison_id": row["id"], "a_left": a_left})
    return votes


def session_results(project, session_id: str) -> dict[str, Any]:
    """{session, stats, length_controlled, votes, skipped}: everything the results page and the CLI show."""
    session = get_session(project, session_id)
    votes = session_votes(project, session_id)
    judged = [v for v in votes if v["vote"] in VOTES]
    return {
        "session": session,
        "votes": len(judged),
        "skipped": len(votes) - len(judged),
        "a_shown_left": sum(1 for v in judged if v["a_left"]),
        "stats": arena_stats([v["vote"] for v in judged]),
        "length_controlled": length_controlled_win_rate([v["vote"] for v in judged], [v["len_a"] for v in judged],
                                                        [v["len_b"] for v in judged]),
    }


# -- running an arena: contestants answer, automatic evaluation ------------------------------
def contestants(project) -> list[dict[str, Any]]:
    """What can enter the arena: the base models of the project's runs (or the default model) and every
    checkpoint of a policy run (sft, dpo, ppo); each {label, spec, checkpoint_id, base}."""
    from rlhf_desktop.store import runs as store

    found: list[dict[str, Any]] = []
    bases = []
    all_runs = store.list_runs(project)
    for run in all_runs:
        if run["base_model"] and run["base_model"] not in bases:
            bases.append(run["base_model"])
    for base in bases or ["default"]:
        name = "default model" if base == "default" else base.rstrip("/").rsplit("/", 1)[-1]
        found.append({"label": f"base: {name}", "spec": f"model:{base}", "checkpoint_id": None, "base": base})
    for run in all_runs:
        if run["stage"] == "rm":
            continue
        for ckpt in store.list_checkpoints(project, run["id"]):
            found.append({"label": f"run {run['id']} {run['stage'].upper()} step {ckpt['step']}",
                          "spec": f"checkpoint:{ckpt['id']}", "checkpoint_id": ckpt["id"], "base": run["base_model"]})
    return found


def reward_checkpoints(project) -> list[dict[str, Any]]:
    """The latest checkpoint of every reward-model run: [{label, path, run_id}]."""
    from rlhf_desktop.store import runs as store

    out = []
    for run in store.list_runs(project, "rm"):
        ckpt = store.latest_checkpoint(project, run["id"])
        if ckpt is not None:
            out.append({"label": f"run {run['id']} RM step {ckpt['step']}", "path": ckpt["abs_path"],
                        "run_id": run["id"]})
    return out


def load_contestant(project, spec: str):
    """A LoadedModel for "model:<spec>" or "checkpoint:<id>" (a LoRA checkpoint is merged for speed).

    Any checkpoint can so become the model that generates new candidate pairs (its `checkpoint_id`
    attribute is what the candidate queue stores with each response).
    """
    from rlhf_desktop.modeling.device import choose_device
    from rlhf_desktop.modeling.loading import LoadedModel, load_model
    from rlhf_desktop.modeling.tokens import align_generation_config
    from rlhf_desktop.store import runs as store
    from rlhf_desktop.training.checkpoints import load_checkpoint

    kind, _, value = spec.partition(":")
    if kind == "model":
        return load_model(value)
    ckpt = store.get_checkpoint(project, int(value))
    model, tokenizer = load_checkpoint(ckpt["abs_path"], task="causal")
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    device = choose_device("auto")
    model.to(device).eval()
    model.config.use_cache = True
    align_generation_config(model, tokenizer)
    loaded = LoadedModel(model, tokenizer, f"run {ckpt['run_id']} step {ckpt['step']} (checkpoint {ckpt['id']})",
                         ckpt["abs_path"], "checkpoint", device, "float32")
    loaded.checkpoint_id = ckpt["id"]  # the candidate queue records it with every generated response
    return loaded


def arena_prompts(project, split: str | None, limit: int, seed: int = 0) -> list[dict[str, Any]]:
    """Up to `limit` prompts of `split` ("heldout", "train" or None for all), a seeded random sample in id order."""
    import random

    from rlhf_desktop.store.prompts import list_prompts

    rows = list_prompts(project, split=split)
    if len(rows) > limit:
        rows = sorted(random.Random(seed).sample(rows, limit), key=lambda r: r["id"])
    return [{"id": r["id"], "text": r["text"]} for r in rows]


def run_arena(project_dir, session_id: str, prompts: list[dict[str, Any]], ctx, *,
              reward_checkpoint: str | None = None, batch_size: int = 4) -> dict[str, Any]:
    """Both contestants answer every prompt (stored as arena responses), then the automatic evaluation.

    Returns {"items": [{prompt_id, prompt, id_a, id_b, text_a, text_b}], "auto": {"a": {...}, "b": {...}}};
    the automatic evaluation is also saved with the session. KL is measured against each contestant's
    base model (the lineage root). Raises Cancelled when ctx asks to stop.
    """
    import gc

    from rlhf_desktop.modeling.generation import SamplingConfig, generate
    from rlhf_desktop.store.project import Project

    with Project.open(project_dir) as project:
        session = get_session(project, session_id)
        sampling = SamplingConfig(**session.get("sampling", {}))
        answers: dict[str, list[str]] = {}
        models: dict[str, Any] = {}
        texts = [p["text"] for p in prompts]
        total = 2 * len(prompts)
        for n_side, side in enumerate(("a", "b")):
            ctx.status(f"loading model {side.upper()}")
            models[side] = load_contestant(project, session[side]["spec"])
            answers[side] = []
            for start in range(0, len(texts), batch_size):
                ctx.check()
                ctx.status(f"model {side.upper()} answering")
                out = generate(models[side], texts[start:start + batch_size], sampling, ctx=ctx)
                answers[side].extend(o[0] for o in out)
                ctx.progress(n_side * len(prompts) + len(answers[side]), total)
        items = []
        for prompt, text_a, text_b in zip(prompts, answers["a"], answers["b"]):
            id_a, id_b = store_answers(project, session, prompt["id"], text_a, text_b)
            items.append({"prompt_id": prompt["id"], "prompt": prompt["text"], "id_a": id_a, "id_b": id_b,
                          "text_a": text_a, "text_b": text_b})
        ctx.status("automatic evaluation")
        auto = _auto_both(project, session, models, texts, answers, reward_checkpoint, ctx)
        update_session(project, session_id, auto=auto, reward_checkpoint=reward_checkpoint)
    models.clear()
    gc.collect()
    return {"items": items, "auto": auto}


def _auto_both(project, session, models, texts, answers, reward_checkpoint, ctx) -> dict[str, Any]:
    reward = None
    if reward_checkpoint:
        from rlhf_desktop.training.reward import load_reward_model

        reward = load_reward_model(reward_checkpoint)
    references: dict[str, Any] = {}
    auto = {}
    for side in ("a", "b"):
        ctx.check()
        who = session[side]
        loaded = models[side]
        base = who.get("base") or "default"
        is_base = who["spec"].startswith("model:")
        if not is_base and base not in references:
            from rlhf_desktop.modeling.loading import load_model

            references[base] = load_model(base).model
        reference = None if is_base else references[base]
        auto[side] = automatic_evaluation(loaded.model, loaded.tokenizer, texts, answers[side], reference=reference,
                                          reward=reward, kl=not is_base)
    return auto
