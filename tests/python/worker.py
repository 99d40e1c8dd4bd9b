"""A stand-in for one worker process of a web app (gunicorn -w N): starts the sync of a file and reports its role.

Prints `leader PID` or `follower PID` once started, then `took over` if it later runs the sync itself."""

import os
import sys
import time

import lite2pg

sync = lite2pg.Sync(sys.argv[1], sys.argv[2]).start()
print("leader" if sync.leader else "follower", os.getpid(), flush=True)
was_leader = sync.leader
while True:
    time.sleep(0.05)
    if sync.leader and not was_leader:
        print("took over", flush=True)
        was_leader = True
