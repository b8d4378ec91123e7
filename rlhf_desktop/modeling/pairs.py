"""Candidate pairs for labeling: two responses to one prompt, generated headless and written to the store.

`make_pairs` generates both candidates of each prompt in one batched `generate` call (n=2) and
regenerates the second one, with a fresh seed and a little more temperature, when both came out
identical. `fill_pairs` picks prompts with a named strategy, generates, and writes each pair's two
responses to the store in one transaction; the responses carry a `pair` key in their gen_config,
so pairs generated but never labeled (the app was closed, the CLI pre-generated them) are found
again by `pending_pairs` and shown before anything new is generated.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from rlhf_desktop.core.config import require
from rlhf_desktop.core.context import JobContext
from rlhf_desktop.core.errors import ConfigError, DataError

SETTING_KEY = "sampling"  # the project setting holding PairSettings as JSON
RANKINGS = ("none", "uncertainty", "disagreement")  # see training/sampling_strategies.py


# -- settings ---------------------------------------------------------------------------------
@dataclass
class PairSettings:
    """How candidate pairs are sampled and how deep the labeling queue runs (per project)."""

    temperature: float = field(default=0.8, metadata={"help": "sampling temperature of both candidates"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling threshold"})
    top_k: int = field(default=50, metadata={"help": "sample among the k most likely tokens (0: all)"})
    max_new_tokens: int = field(default=96, metadata={
        "help": "length cap of each candidate; short keeps the queue ahead of the operator on a CPU"})
    repetition_penalty: float = field(default=1.1, metadata={"help": "1.0 disables; small models loop without it"})
    temperature_b: float | None = field(default=None, metadata={
        "help": "a different temperature for the second candidate (None: the same as the first)"})
    system_prompt: str = field(default="", metadata={"help": "system message given to the model, if any"})
    strategy: str = field(default="random", metadata={"help": "how prompts are chosen (see STRATEGIES)"})
    queue_depth: int = field(default=8, metadata={
        "help": "the worker generates another batch whenever fewer pairs than this are ready"})
    prompts_per_batch: int = field(default=8, metadata={
        "help": "prompts generated together in one call (2 rows each); on a CPU a batch of 8 takes about "
                "twice as long as 1, so pairs come about 4x faster"})
    idle_stop_s: float = field(default=120.0, metadata={
        "help": "the worker stops generating after this many seconds without a label"})
    max_tries: int = field(default=3, metadata={"help": "attempts before a prompt with identical candidates is skipped"})
    ranking: str = field(default="none", metadata={
        "choices": RANKINGS, "help": "once a reward model exists, which pairs to keep: none (every pair generated), uncertainty "
                "(the latest reward model's P(a > b) closest to 0.5) or disagreement (the two latest reward "
                "models disagree most)"})
    ranking_pool: int = field(default=3, metadata={
        "help": "with a ranking, generate this many times more pairs than kept and keep the best (on a CPU "
                "this slows the queue about as many times: lower it if you wait for pairs)"})

    def validate(self) -> None:
        require(self.temperature >= 0, "temperature", "must be >= 0")
        require(self.temperature_b is None or self.temperature_b >= 0, "temperature_b", "must be >= 0")
        require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        require(self.top_k >= 0, "top_k", "must be >= 0")
        require(1 <= self.max_new_tokens <= 8192, "max_new_tokens", "must be between 1 and 8192")
        require(self.repetition_penalty > 0, "repetition_penalty", "must be > 0")
        require(self.strategy in STRATEGIES, "strategy", f"unknown strategy {self.strategy!r}",
                hint=f"one of: {', '.join(sorted(STRATEGIES))}")
        require(1 <= self.queue_depth <= 100, "queue_depth", "must be between 1 and 100")
        require(1 <= self.prompts_per_batch <= 32, "prompts_per_batch", "must be between 1 and 32")
        require(self.idle_stop_s > 0, "idle_stop_s", "must be > 0")
        require(1 <= self.max_tries <= 20, "max_tries", "must be between 1 and 20")
        require(self.ranking in RANKINGS, "ranking", f"unknown ranking {self.ranking!r}",
                hint=f"one of: {', '.join(RANKINGS)}")
        require(1 <= self.ranking_pool <= 10, "ranking_pool", "must be between 1 and 10")

    def sampling(self, *, second: bool = False, seed: int | None = None):
        """The modeling SamplingConfig of the first (or second) candidate."""
        from rlhf_desktop.modeling.generation import SamplingConfig

        temperature = self.temperature_b if second and self.temperature_b is not None else self.temperature
        return SamplingConfig(temperature=temperature, top_p=self.top_p, top_k=self.top_k,
                              max_new_tokens=self.max_new_tokens, seed=seed,
                              repetition_penalty=self.repetition_penalty)


def load_pair_settings(project) -> PairSettings:
    """The project's PairSettings; keys written by a newer version are ignored."""
    stored = project.get_setting(SETTING_KEY, {}) or {}
    if not isinstance(stored, dict):
        raise ConfigError("the stored pair settings are not an object", where=f"setting {SETTING_KEY}",
                          hint="reset them in the labeling view's settings")
    names = {f.name for f in dataclasses.fields(PairSettings)}
    settings = PairSettings(**{k: v for k, v in stored.items() if k in names})
    try:
        settings.validate()
    except ConfigError as exc:
        raise ConfigError(exc.message, where=f"setting {SETTING_KEY}.{exc.where}", hint=exc.hint) from None
    return settings


def save_pair_settings(project, settings: PairSettings) -> None:
    settings.validate()
    project.set_setting(SETTING_KEY, dataclasses.asdict(settings))


# -- prompt strategies ------------------------------------------------------------------------
Strategy = Callable[[Any, int, random.Random, set], list[tuple[int, str]]]
STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, fn: Strategy) -> None:
    """Add a prompt strategy: fn(project, k, rng, exclude_prompt_ids) -> [(prompt_id, text)]."""
    STRATEGIES[name] = fn


def fewest_labels_random(project, k: int, rng: random.Random, exclude: set) -> list[tuple[int, str]]:
    """Train prompts with the fewest labels (pending unlabeled pairs count too), random among ties."""
    rows = project.query(
        "SELECT p.id, (SELECT count(*) FROM comparisons c WHERE c.prompt_id = p.id) AS n "
        "FROM prompts p WHERE p.split = 'train'")
    if not rows:
        raise DataError("the project has no train prompts", where=str(project.folder),
                        hint="import prompts or load the starter set first")
    load = {r["id"]: r["n"] for r in rows if r["id"] not in exclude}
    for r in _pending_rows(project):
        if r["prompt_id"] in load:
            load[r["prompt_id"]] += 0.5  # two rows per pending pair: it weighs as one label
    by_count: dict[float, list[int]] = {}
    for pid, n in load.items():
        by_count.setdefault(n, []).append(pid)
    chosen: list[int] = []
    for n in sorted(by_count):
        ids = sorted(by_count[n])
        rng.shuffle(ids)
        chosen.extend(ids[: k - len(chosen)])
        if len(chosen) >= k:
            break
    if not chosen:
        return []
    marks = ",".join("?" * len(chosen))
    texts = {r["id"]: r["text"] for r in project.query(f"SELECT id, text FROM prompts WHERE id IN ({marks})", chosen)}
    return [(pid, texts[pid]) for pid in chosen]


register_strategy("random", fewest_labels_random)


# -- generating pairs -------------------------------------------------------------------------
@dataclass(frozen=True)
class GeneratedPair:
    """Two candidate texts for one prompt and the settings that produced each."""

    texts: tuple[str, str]
    configs: tuple[dict, dict]
    tries: int


def same_text(a: str, b: str) -> bool:
    """Identical for a labeler: equal after collapsing whitespace."""
    return " ".join(a.split()) == " ".join(b.split())


def _config_dict(sampling, **extra) -> dict:
    values = {k: getattr(sampling, k) for k in ("temperature", "top_p", "top_k", "max_new_tokens",
                                                "seed", "repetition_penalty")}
    values.update(extra)
    return values


def _retry_temperature(base: float, attempt: int) -> float:
    """The second candidate's temperature on retry `attempt` (1, 2, ...): a greedy pair gets sampling."""
    return round(max(base, 0.5) + 0.25 * (attempt - 1), 3)


def make_pairs(loaded, prompts: list[str], settings: PairSettings, *, seed: int | None = None,
               ctx: JobContext | None = None) -> list[GeneratedPair | None]:
    """Two candidates per prompt; None for a prompt whose candidates stayed identical after max_tries.

    With one sampling setting for both sides the candidates come from one generate call with n=2;
    with temperature_b set, each side gets its own call.
    """
    from rlhf_desktop.modeling.generation import generate

    seed = random.randrange(2**31) if seed is None else seed
    system = settings.system_prompt or None
    first = settings.sampling(seed=seed)
    if settings.temperature_b is None or settings.temperature_b == settings.temperature:
        outs = generate(loaded, prompts, first, n=2, ctx=ctx, system_prompt=system)
        cfg = _config_dict(first)
        pairs = [[o[0], o[1], cfg, cfg] for o in outs]
    else:
        second = settings.sampling(second=True, seed=seed + 1)
        a = generate(loaded, prompts, first, n=1, ctx=ctx, system_prompt=system)
        b = generate(loaded, prompts, second, n=1, ctx=ctx, system_prompt=system)
        pairs = [[x[0], y[0], _config_dict(first), _config_dict(second)] for x, y in zip(a, b)]
    tries = [1] * len(prompts)
    for attempt in range(1, settings.max_tries):
        todo = [i for i, p in enumerate(pairs) if same_text(p[0], p[1])]
        if not todo:
            break
        base = settings.temperature_b if settings.temperature_b is not None else settings.temperature
        retry = dataclasses.replace(settings.sampling(second=True, seed=seed + 1000 * attempt),
                                    temperature=_retry_temperature(base, attempt))
        outs = generate(loaded, [prompts[i] for i in todo], retry, n=1, ctx=ctx, system_prompt=system)
        for i, out in zip(todo, outs):
            pairs[i][1], pairs[i][3] = out[0], _config_dict(retry, regenerated=attempt)
            tries[i] = attempt + 1
    return [None if same_text(p[0], p[1]) else GeneratedPair((p[0], p[1]), (p[2], p[3]), t)
            for p, t in zip(pairs, tries)]


def make_pair(loaded, prompt: str, settings: PairSettings | None = None, *, seed: int | None = None,
              ctx: JobContext | None = None) -> GeneratedPair:
    """Two different candidates for one prompt; DataError when they stay identical."""
    settings = settings or PairSettings()
    pair = make_pairs(loaded, [prompt], settings, seed=seed, ctx=ctx)[0]
    if pair is None:
        raise DataError(f"the two candidates stayed identical after {settings.max_tries} tries",
                        where="temperature", hint="raise the temperature or set temperature_b")
    return pair


# -- ready pairs in the store -----------------------------------------------------------------
@dataclass(frozen=True)
class ReadyPair:
    """A pair ready to label, already stored, with its side placement chosen (left as shown)."""

    prompt_id: int
    prompt: str
    left_id: int
    left_text: str
    right_id: int
    right_text: str
    pair_key: str = ""
    model: str = ""
    strategy: str = "random"
    gen_seconds: float = 0.0

    def swapped(self) -> "ReadyPair":
        return dataclasses.replace(self, left_id=self.right_id, left_text=self.right_text,
                                   right_id=self.left_id, right_text=self.left_text)


def _pending_rows(project, model: str | None = None) -> list[dict]:
    """Stored generated responses with a pair key that no comparison uses yet."""
    sql = ("SELECT r.id, r.prompt_id, r.text, r.model, json_extract(r.gen_config, '$.pair') AS pair_key, "
           "json_extract(r.gen_config, '$.strategy') AS strategy "
           "FROM responses r WHERE r.origin = 'generated' AND json_extract(r.gen_config, '$.pair') IS NOT NULL "
           "AND r.id NOT IN (SELECT left_id FROM comparisons UNION ALL SELECT right_id FROM comparisons)")
    params: list = []
    if model is not None:
        sql += " AND r.model = ?"
        params.append(model)
    return project.query(sql + " ORDER BY r.id", params)


def pending_pairs(project, model: str | None = None, *, limit: int | None = None,
                  exclude_keys: set | None = None, rng: random.Random | None = None) -> list[ReadyPair]:
    """Pairs generated earlier (by `model`, or any) and never labeled, oldest first, sides randomized."""
    rng = rng or random.Random()
    groups: dict[str, list[dict]] = {}
    for row in _pending_rows(project, model):
        if not exclude_keys or row["pair_key"] not in exclude_keys:
            groups.setdefault(row["pair_key"], []).append(row)
    prompt_ids = sorted({rows[0]["prompt_id"] for rows in groups.values() if len(rows) == 2})
    texts: dict[int, str] = {}
    for start in range(0, len(prompt_ids), 500):
        chunk = prompt_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        texts.update((r["id"], r["text"]) for r in project.query(
            f"SELECT id, text FROM prompts WHERE id IN ({marks})", chunk))
    out: list[ReadyPair] = []
    for key, rows in groups.items():
        if len(rows) != 2:
            continue
        a, b = rows
        pair = ReadyPair(a["prompt_id"], texts[a["prompt_id"]], a["id"], a["text"], b["id"], b["text"],
                         pair_key=key, model=a["model"], strategy=a["strategy"] or "random")
        out.append(pair.swapped() if rng.random() < 0.5 else pair)
        if limit is not None and len(out) >= limit:
            break
    return out


def store_pair(project, prompt_id: int, prompt: str, pair: GeneratedPair, *, model: str, strategy: str,
               checkpoint_id: int | None = None, rng: random.Random | None = None,
               gen_seconds: float = 0.0) -> ReadyPair:
    """Write both candidates in one transaction and return the pair with randomized sides."""
    from rlhf_desktop.store.labels import add_response

    rng = rng or random.Random()
    key = uuid.uuid4().hex
    ids = []
    with project.transaction():
        for text, cfg in zip(pair.texts, pair.configs):
            gen = dict(cfg, pair=key, strategy=strategy, tries=pair.tries)
            ids.append(add_response(project, prompt_id, text, model=model, gen_config=gen,
                                    origin="generated", checkpoint_id=checkpoint_id))
    ready = ReadyPair(prompt_id, prompt, ids[0], pair.texts[0], ids[1], pair.texts[1], pair_key=key,
                      model=model, strategy=strategy, gen_seconds=gen_seconds)
    return ready.swapped() if rng.random() < 0.5 else ready


@dataclass
class FillReport:
    """What `fill_pairs` did."""

    pairs: int = 0
    responses: int = 0
    regenerated: int = 0
    skipped_prompts: list[int] = field(default_factory=list)  # candidates stayed identical
    seconds: float = 0.0


def fill_pairs(project, loaded, count: int, settings: PairSettings | None = None, *,
               checkpoint_id: int | None = None, seed: int | None = None, ctx: JobContext | None = None,
               on_pair: Callable[[ReadyPair], None] | None = None,
               exclude: set | None = None) -> FillReport:
    """Generate and store `count` new pairs for prompts the strategy picks; call on_pair for each.

    Prompts in `exclude` are never chosen; a prompt whose candidates stay identical is added to it.
    Stops early (without error) when the strategy runs out of prompts or ctx asks to stop.
    """
    settings = settings or PairSettings()
    settings.validate()
    ctx = ctx or JobContext()
    rng = random.Random(seed)
    exclude = exclude if exclude is not None else set()
    report = FillReport()
    start = time.perf_counter()
    model = getattr(loaded, "name", "") or ""
    while report.pairs < count and not ctx.should_stop():
        k = min(settings.prompts_per_batch, count - report.pairs)
        picked = STRATEGIES[settings.strategy](project, k, rng, exclude)
        if not picked:
            break
        ctx.status(f"generating {len(picked)} pair(s)")
        t0 = time.perf_counter()
        made = make_pairs(loaded, [t for _, t in picked], settings, seed=rng.randrange(2**31), ctx=ctx)
        per_pair = (time.perf_counter() - t0) / len(picked)
        for (pid, text), pair in zip(picked, made):
            if pair is None:
                exclude.add(pid)
                report.skipped_prompts.append(pid)
                continue
            ready = store_pair(project, pid, text, pair, model=model, strategy=settings.strategy,
                               checkpoint_id=checkpoint_id, rng=rng, gen_seconds=per_pair)
            report.pairs += 1
            report.responses += 2
            report.regenerated += pair.tries - 1
            ctx.progress(report.pairs, count)
            if on_pair is not None:
                on_pair(ready)
    report.seconds = time.perf_counter() - start
    return report
