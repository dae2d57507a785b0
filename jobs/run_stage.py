"""Entry point for one stage (spark-submit, Databricks spark_python_task): the stage's name, then
the same arguments as `webscale-rl run`. The stage takes the work the earlier stage's table holds
and it has not processed yet, so stage tasks can run as separate jobs in order.

    spark-submit jobs/run_stage.py filter --warehouse /mnt/wh
"""

import sys

from webscale_rl.cli import main

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: run_stage.py STAGE [webscale-rl run arguments]")
    stage, rest = sys.argv[1], sys.argv[2:]
    sys.exit(main(["run", "--from", stage, "--until", stage, *rest]))
