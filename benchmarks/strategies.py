"""Benchmark: the strategies (fx, export, hooks, auto), their creation and forward costs.

(a) Creation time of ``fxtract.create_feature_extractor(model, nodes, strategy=S,
    example_inputs=x)`` for S in fx / export / hooks / auto, as a ratio of one plain
    forward of the model on the same inputs (eval mode, ``torch.no_grad()``), plus export
    creation over FX creation. Models: torchvision resnet50 and vit_b_16 (batch 8 at
    224x224), a tiny Hugging Face BERT built from a config (skipped when transformers is
    not installed) and a toy model with data-dependent control flow (``if h.sum() > 0``:
    only hooks can follow it). A strategy that cannot build the extractor is "n/a"
    with the reason; the auto cell says which strategy auto ended up with.
(b) Early stop: resnet50, batch 8 at 224x224, one extractor per node (``layer1``,
    ``layer2``, ``layer3``) and per strategy (hooks, FX's pruned graph, export), forward
    time as a ratio of the full forward, and hooks over FX.
    Goal: hooks at most 1.10x FX's pruned graph (``layer1`` is the case the goal is about).
    The three extractors' outputs are checked against each other.

Every contender of a part runs in one process, round-robin; ratios are medians of
per-repetition ratios against the forward / the full model / FX measured in the same run.

Run: ``python benchmarks/strategies.py [--quick] [--models resnet50,bert_tiny] [--parts a,b]``.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, also when loaded by path
from _common import (
    build_model,
    exit_status,
    fmt_ms,
    fmt_ratio,
    header,
    markdown_table,
    paired_ratio,
    quiet,
    report_medians,
    round_robin,
    round_robin_after_warmup,
    setup_threads,
    timed,
)

CREATION_MODELS = ["resnet50", "vit_b_16", "bert_tiny", "toy_branch"]
QUICK_MODELS = {"resnet50": "resnet18", "vit_b_16": "vit_b_32"}  # --quick: smaller stand-ins
STRATEGIES = ("fx", "export", "hooks", "auto")
EARLY_NODES = ["layer1", "layer2", "layer3"]
EARLY_KINDS = ("hooks", "fx", "export")
HOOKS_GOAL = 1.10

failures: list[str] = []


def _report_failure(what: str) -> str:
    text = f"{what}:\n{traceback.format_exc()}"
    failures.append(text)
    print(f"FAILED {text}", file=sys.stderr, flush=True)
    return "error"


def _reason(e: BaseException) -> str:
    """A short reason for an "n/a" cell: the underlying error's type and first words."""
    cause = getattr(e, "cause", None) or e  # fxtract's TraceError keeps FX's / export's error
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    first = first.replace("|", "/").replace("`", "")
    if len(first) > 48:
        first = first[:45].rstrip() + "..."
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


# ---------------------------------------------------------------------------------------------
# Models: (model, return nodes, example inputs, a label for the inputs)


class BranchNet(nn.Module):
    """Data-dependent control flow: FX and torch.export cannot follow it, hooks can."""

    def __init__(self, dim: int = 512, depth: int = 4) -> None:
        super().__init__()
        self.stem = nn.Linear(dim, dim)
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(dim, dim), nn.GELU()) for _ in range(depth)])
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        if h.sum() > 0:  # a Python branch on a tensor's value
            h = self.blocks(h)
        else:
            h = -self.blocks(-h)
        return self.head(h)


def _present(model: nn.Module, *paths: str) -> str:
    """The first of ``paths`` that names a submodule (transformers renames them across releases)."""
    modules = dict(model.named_modules())
    return next(p for p in paths if p in modules)


def build(name: str, batch: int) -> tuple[nn.Module, list[str], Any, str]:
    torch.manual_seed(0)
    if name == "toy_branch":
        model: nn.Module = BranchNet().eval()
        x = torch.randn(batch * 64, 512)
        return model, ["stem", "blocks.1", "head"], (x,), f"{tuple(x.shape)}"
    if name == "bert_tiny":
        import transformers  # ImportError: the row is skipped

        cfg = transformers.BertConfig(
            vocab_size=1000,
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=256,
        )
        model = transformers.BertModel(cfg).eval()
        seq = 128
        inputs = {
            "input_ids": torch.randint(0, 1000, (batch, seq)),
            "attention_mask": torch.ones(batch, seq, dtype=torch.long),
        }
        nodes = ["encoder.layer.0", _present(model, "encoder.layer.1.output", "encoder.layer.1.mlp")]
        return model, nodes, inputs, f"ids ({batch}, {seq})"
    model = build_model(name)
    x = torch.randn(batch, 3, 224, 224)
    if name.startswith("resnet"):
        nodes = ["layer1", "layer2", "layer3"]
    else:  # torchvision ViT
        n = len(model.encoder.layers)
        nodes = [f"encoder.layers.encoder_layer_{i}" for i in (1, n // 2)] + ["encoder.ln"]
    return model, nodes, (x,), f"{tuple(x.shape)}"


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(*inputs)


# ---------------------------------------------------------------------------------------------
# (a) creation


def bench_creation(name: str, args: argparse.Namespace) -> list[Any] | None:
    import fxtract

    try:
        model, nodes, inputs, shape = build(name, args.batch)
    except ImportError as e:
        print(f"  (a) {name}: skipped ({e})", file=sys.stderr, flush=True)
        return None

    def forward() -> Any:
        with torch.no_grad():
            return _call(model, inputs)

    def creator(strategy: str) -> Callable[[], Any]:
        def create() -> Any:
            with quiet():  # the fallback warnings of "auto", train/eval difference notes
                return fxtract.create_feature_extractor(
                    model, nodes, strategy=strategy, example_inputs=inputs, suppress_diff_warning=True
                )

        return create

    contenders: dict[str, Callable[[], Any]] = {"forward": forward}
    contenders.update({s: creator(s) for s in STRATEGIES})
    first: dict[str, float] = {}
    na: dict[str, str] = {}
    auto_used = "?"
    for key, fn in list(contenders.items()):
        try:
            result, first[key] = timed(fn)  # also the warm-up call
        except Exception as e:
            if key == "forward":
                raise
            na[key] = f"n/a ({_reason(e)})"
            contenders.pop(key)
            print(f"  (a) {name}: {key}: {na[key]}", file=sys.stderr, flush=True)
            continue
        if key == "auto":
            auto_used = getattr(result, "strategy", "?")
        del result
    times = round_robin_after_warmup(contenders, first, args)
    med = report_medians(f"(a) {name}", times)

    def vs_forward(s: str) -> str:
        if s in na:
            return na[s]
        ratio = paired_ratio(times, s, "forward")
        cell = f"{ratio:.2f}x" if ratio >= 0.01 else f"{ratio:.4f}x"
        return f"{cell} ({auto_used})" if s == "auto" else cell

    export_fx = (
        f"{paired_ratio(times, 'export', 'fx'):.1f}x" if "export" in times and "fx" in times else "n/a"
    )
    return [
        name,
        shape,
        ", ".join(f"`{n}`" for n in nodes),
        fmt_ms(med["forward"]),
        *(vs_forward(s) for s in STRATEGIES),
        export_fx,
    ]


# ---------------------------------------------------------------------------------------------
# (b) early stop


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.allclose(a, b, atol=1e-4)


def bench_early_stop(args: argparse.Namespace) -> list[list[Any]]:
    import fxtract

    name = args.early_model
    model = build_model(name)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)

    extractors: dict[tuple[str, str], nn.Module] = {}
    for node in EARLY_NODES:
        for kind in EARLY_KINDS:
            try:
                with quiet():
                    extractors[(node, kind)] = fxtract.create_feature_extractor(
                        model, [node], strategy=kind, example_inputs=x, suppress_diff_warning=True
                    ).eval()
            except Exception:
                _report_failure(f"(b) {name}: strategy={kind!r} extractor of `{node}`")

    with torch.no_grad():
        for node in EARLY_NODES:
            outs = {}
            for kind in EARLY_KINDS:
                if (node, kind) not in extractors:
                    continue
                try:
                    outs[kind] = extractors[(node, kind)](x)[node]
                except Exception:
                    _report_failure(f"(b) {name}: strategy={kind!r} extractor of `{node}`, forward")
                    extractors.pop((node, kind))
            ref = outs.get("fx")
            for kind, out in outs.items():
                if ref is not None and not _same(out, ref):
                    failures.append(f"(b) {name}: strategy={kind!r} `{node}` differs from strategy='fx'")
            del outs, ref

        contenders: dict[str, Callable[[], Any]] = {"full": lambda: model(x)}
        for (node, kind), ex in extractors.items():
            contenders[f"{kind} {node}"] = lambda e=ex: e(x)
        times = round_robin(
            contenders, args.early_reps, warmup=1, budget_s=args.early_budget, min_reps=args.early_min_reps
        )
    med = report_medians(f"(b) {name}", times)

    def vs(a: str, b: str, goal: float | None = None) -> str:
        return fmt_ratio(paired_ratio(times, a, b), goal) if a in times and b in times else "error"

    rows = []
    for node in EARLY_NODES:
        rows.append(
            [
                f"`{node}`",
                *(vs(f"{kind} {node}", "full") for kind in EARLY_KINDS),
                vs(f"hooks {node}", f"fx {node}", HOOKS_GOAL),
                vs(f"export {node}", f"fx {node}"),
            ]
        )
    args.full_ms = fmt_ms(med["full"])
    return rows


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 2, smaller models, few repetitions")
    parser.add_argument(
        "--models", default=",".join(CREATION_MODELS), help=f"(a) comma-separated, from {CREATION_MODELS}"
    )
    parser.add_argument("--parts", default="a,b", help="comma-separated, from a,b")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 8, quick 2)")
    args = parser.parse_args(argv)
    args.reps = 3 if args.quick else 7
    args.min_reps = 3 if args.quick else 5
    args.budget = 10.0 if args.quick else 30.0  # (a) seconds of timing per model
    args.early_reps = 5 if args.quick else 15
    args.early_min_reps = 3 if args.quick else 7
    args.early_budget = 20.0 if args.quick else 90.0  # (b) seconds of timing
    args.batch = args.batch or (2 if args.quick else 8)
    args.early_model = "resnet18" if args.quick else "resnet50"
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.quick:
        models = [QUICK_MODELS.get(m, m) for m in models]
    parts = {p.strip() for p in args.parts.split(",")}

    setup_threads()
    print(header("Strategies: creation and early-stop forward of fx / export / hooks / auto", args))
    if "a" in parts:
        rows = []
        for name in models:
            try:
                row = bench_creation(name, args)
            except Exception:
                _report_failure(f"(a) {name}: benchmark")
                continue
            if row is not None:
                rows.append(row)
        print()
        print("### (a) Creation, as a ratio of one plain forward\n")
        print(
            markdown_table(
                [
                    "model",
                    "inputs",
                    "nodes",
                    "forward ms",
                    *(f"{s} / fwd" for s in STRATEGIES),
                    "export / fx",
                ],
                rows,
            )
        )
        print()
        print(
            "`create_feature_extractor(model, nodes, strategy=S, example_inputs=inputs)` over one forward of "
            "the model on the same inputs (eval, no_grad); auto's cell says which strategy it used. "
            "With example_inputs, every strategy also fills `extractor.feature_info` (fx and hooks: "
            "shapes from fake tensors; export: from its own trace), included in these times."
        )
    if "b" in parts:
        try:
            rows = bench_early_stop(args)
        except Exception:
            _report_failure("(b) benchmark")
        else:
            print()
            print(
                f"### (b) Early stop: {args.early_model}, batch {args.batch}, 224x224, "
                f"full forward {args.full_ms} ms\n"
            )
            print(
                markdown_table(
                    ["node", "hooks / full", "fx / full", "export / full", "hooks / fx", "export / fx"], rows
                )
            )
            print()
            print(
                "Forward of a one-node extractor per strategy over the full model's forward (eval, no_grad, "
                f"same input, round-robin). Goal hooks / fx <= {HOOKS_GOAL:.2f}x; fx is FX's pruned graph."
            )
    return exit_status(failures)


if __name__ == "__main__":
    sys.exit(main())
