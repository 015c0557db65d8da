import time, sys, math, torch
from rfgraph.models import load_model
from rfgraph.passes import analyze
from rfgraph.probing import measure, validate_analysis
orig_grads = measure.Prober._grads
stats = []
def grads(self, out, x, seeds, budget):
    t = time.time(); r = orig_grads(self, out, x, seeds, budget); stats.append((len(seeds), self.batched_ok, round(time.time()-t, 2))); return r
measure.Prober._grads = grads
orig_measure = measure.Prober.measure
def meas(self, *a, **k):
    r = orig_measure(self, *a, **k)
    sh = self.runner.node_shapes
    stats.append(("largest", max((math.prod(v) for v in sh.values() if isinstance(v, tuple) and all(isinstance(d, int) for d in v)), default=0)))
    return r
measure.Prober.measure = meas
for spec, shape in [("smp:Unet:resnet34", (1,3,256,256)), ("smp:FPN:resnet34", (1,3,256,256))] + [(s, None) for s in sys.argv[1:]]:
    m = load_model(spec)
    if shape is None:
        from rfgraph.zoo.task import default_input_shape
        shape = tuple(default_input_shape(spec, m))
    a = analyze(m, shape)
    stats.clear(); t = time.time()
    rep = validate_analysis(a, budget=600)
    print(spec, f"total {time.time()-t:.2f}s", [r.status for r in rep], stats, flush=True)
