"""``make demo``: a local cluster (1 JobManager + 2 TaskManagers on loopback) runs examples/transactions.py
at parallelism 2, prints its results, and is torn down."""

import os
import subprocess
import sys

from client.local_cluster import LocalCluster

here = os.path.dirname(os.path.abspath(__file__))

with LocalCluster(taskmanagers=2, slots=2, quiet=True) as cluster:
    print(f"local cluster: JobManager at {cluster.address}, pids {cluster.pids}", flush=True)
    rc = subprocess.call([sys.executable, "-m", "client", "run", "--jobmanager", cluster.address, "-p", "2",
                          os.path.join(here, "transactions.py")])
print("cluster stopped")
sys.exit(rc)
