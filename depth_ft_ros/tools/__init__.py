"""CLI verbs of `depth-ft-ros`: each module has add_arguments(parser) and run(args) -> int."""
