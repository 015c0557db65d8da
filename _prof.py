import time, torch
from rfgraph.models import load_model
from rfgraph.passes import analyze
from rfgraph.probing import measure, validate_analysis
orig_grads = measure.Prober._grads
def grads(self, out, x, seeds, budget):
    t = time.time(); r = orig_grads(self, out, x, seeds, budget); print(f"grads {len(seeds)} {time.time()-t:.2f}s batched_ok={self.batched_ok}", flush=True); return r
measure.Prober._grads = grads
m = load_model("torchaudio:ConvTasNet")
a = analyze(m, (1,1,16000))
t = time.time()
rep = validate_analysis(a, ["view", "view_1"])
print(rep, time.time()-t)
