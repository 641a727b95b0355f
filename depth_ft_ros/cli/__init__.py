"""`depth-ft-ros` command line: one verb per module (cli/ for the verbs, bench/ for
the benchmarks).

Each verb module exposes `add_arguments(parser)` and `run(args) -> int`; modules are imported only when
their verb runs, so `depth-ft-ros --help` stays fast and needs neither torch nor rclpy.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# verb -> (module under depth_ft_ros, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "make-tiny-model": ("cli.tiny_model", "write a tiny randomly initialised checkpoint with the real file layout"),
    "fetch-model": ("cli.fetch_model", "download a real checkpoint into the Hugging Face cache for offline use"),
    "bench": ("bench.predictor", "per-stage predictor timings, and the ratio to diffusers' pipeline"),
    "export-onnx": ("cli.export_onnx", "export a checkpoint's network stages as ONNX graphs (manifest + load-time "
                    "probe)"),
    "bench-node": ("bench.node", "per-frame time the node spends outside the network (conversion, alignment, "
                   "cloud, publishing)"),
    "eval-alignment": ("cli.eval_alignment", "metric alignment accuracy and speed on real ground truth"),
    "make-demo-bag": ("cli.demo_bag", "write a short rosbag2 built from the bundled Middlebury frame"),
    "replay": ("cli.replay", "replay a rosbag2 through the node and record its outputs"),
    "fleet": ("cli.fleet", "many bags (folders, globs, s3://) through the node's frame path on Ray: per-bag output "
              "bags, Parquet tables and a run summary"),
    "finetune": ("cli.finetune", "fine-tune a checkpoint on rosbags with their LiDAR as supervision (E2E-FT recipe)"),
    "fleet-compare": ("cli.fleet_compare", "compare two `fleet` runs (checkpoints) over the same bags: held-out "
                      "LiDAR AbsRel per bag and overall, with a bootstrap interval"),
    "fleet-demo": ("cli.fleet_demo", "demo bags -> tiny checkpoint fine-tuned on some -> fleet runs of base and "
                   "fine-tuned over the others -> the compare report"),
    "demo": ("cli.demo", "the main job: demo bag -> node replay -> summary and previews"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="depth-ft-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for verb, (module_name, help_text) in VERBS.items():
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        verb_parser.set_defaults(_module=module_name)
        # Arguments are added lazily only for the verb being run (see main), so --help on one verb
        # imports only that verb's module.
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    verb = next((a for a in argv if not a.startswith("-")), None)
    if verb in VERBS:
        module = importlib.import_module(f"depth_ft_ros.{VERBS[verb][0]}")
        sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        module.add_arguments(sub_action.choices[verb])
    args = parser.parse_args(argv)
    module = importlib.import_module(f"depth_ft_ros.{args._module}")
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
