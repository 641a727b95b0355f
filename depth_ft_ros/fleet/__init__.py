"""Many bags through the node's frame path: `depth-ft-ros fleet` (the library under depth_ft_ros/cli/fleet.py).

sources (which bags, their identity), store (per-bag outputs written atomically, with a manifest), framepath
(bag messages -> the node's frame path -> output messages), bagjob (one bag: stream, process, write), table
(the per-frame Parquet rows), engine (bags over a Ray actor pool, or in this process), run (the whole run, its
progress and summary); evaluate (held-out LiDAR and ground-truth columns), tables + report + plots
(summary.md), compare (two runs over the same bags), demo (`fleet-demo`). Ray is an optional extra
(`pip install .[fleet]`): nothing else in the package imports it.
"""
