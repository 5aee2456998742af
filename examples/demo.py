"""``make demo``: a local cluster (1 JobManager + 2 TaskManagers on loopback) runs the fraud-detection job
(examples/fraud_detection.py) at parallelism 2 -- 1-minute event-time windows per customer and a velocity rule
raising alerts -- prints windows and alerts, checks them against a plain-Python reference, and is torn down."""

import os
import subprocess
import sys

from client.local_cluster import LocalCluster

here = os.path.dirname(os.path.abspath(__file__))

with LocalCluster(taskmanagers=2, slots=2, quiet=True) as cluster:
    print(f"local cluster: JobManager at {cluster.address}, pids {cluster.pids}", flush=True)
    rc = subprocess.call([sys.executable, "-m", "client", "run", "--jobmanager", cluster.address, "-p", "2",
                          os.path.join(here, "fraud_detection.py")])
print("cluster stopped")
sys.exit(rc)
