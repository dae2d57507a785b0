"""Entry point for spark-submit and Databricks: the same arguments as `webscale-rl run`.

spark-submit jobs/run_pipeline.py --input data/ --warehouse /mnt/wh
"""

import sys

from webscale_rl.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
