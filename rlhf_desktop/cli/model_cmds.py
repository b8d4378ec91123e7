"""`generate`: answer a prompt with the default model, an HF folder, a .gguf file or a cached repo id."""

from __future__ import annotations

import argparse

from rlhf_desktop.cli import print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="print a model's answers to a prompt")
    p.add_argument("--model", default="default", help="'default', an HF folder, a .gguf file or a cached repo id")
    p.add_argument("--prompt", required=True, help="the user message")
    p.add_argument("--system-prompt", default=None, help="a system message (default: the model's own)")
    p.add_argument("--n", type=int, default=1, help="answers to sample (one batched call)")
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy and deterministic")
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--top-k", type=int, default=50, help="0 = no limit")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None, help="reproducible sampling")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.add_argument("--allow-pickle", action="store_true", help="allow pickled .bin/.pt weights (runs code in them)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow a model's own Python code to run")
    p.add_argument("--json", action="store_true", help="print the answers as a JSON list")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from rlhf_desktop.core.config import require
    from rlhf_desktop.core.context import ConsoleContext
    from rlhf_desktop.modeling.generation import SamplingConfig, generate

    sampling = SamplingConfig(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                              max_new_tokens=args.max_new_tokens, seed=args.seed,
                              repetition_penalty=args.repetition_penalty)
    sampling.validate()
    require(args.n >= 1, "--n", f"must be at least 1, got {args.n}")
    from rlhf_desktop.modeling.loading import LoadOptions, load_model  # torch: only once the arguments are good

    options = LoadOptions(device=args.device, dtype=args.dtype, allow_pickle=args.allow_pickle,
                          trust_remote_code=args.trust_remote_code)
    ctx = ConsoleContext()
    loaded = load_model(args.model, options, ctx)
    ctx.status(f"model: {loaded.describe()}")
    answers = generate(loaded, [args.prompt], sampling, n=args.n, ctx=ctx, system_prompt=args.system_prompt)[0]
    _print_answers(answers, as_json=args.json)
    return 0


def _print_answers(answers: list[str], as_json: bool) -> None:
    """A JSON list, the bare answer, or numbered answers separated by blank lines."""
    if as_json:
        print_json(answers)
    elif len(answers) == 1:
        print(answers[0].strip(), flush=True)
    else:
        print("\n\n".join(f"[{i}] {text.strip()}" for i, text in enumerate(answers, 1)), flush=True)
