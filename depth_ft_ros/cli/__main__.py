"""`python -m depth_ft_ros.cli VERB ...`: the same as the `depth-ft-ros` executable."""

import sys

from depth_ft_ros.cli import main

sys.exit(main())
