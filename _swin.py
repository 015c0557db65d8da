import time, sys
from rfgraph.zoo.families import resolve_models
from rfgraph.zoo.task import run_task
for spec in sys.argv[1:]:
    for task in resolve_models(spec):
        t = time.time()
        for row in run_task(task, validate=True):
            print(task.spec, row.get("node"), row.get("probe"), row.get("probe_rf"), row.get("probe_note", "")[:300], flush=True)
        print("time", time.time() - t, flush=True)
