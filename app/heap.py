"""The app server's garbage collector: Streamlit's collect after each script run walks only what the run made."""
from __future__ import annotations

import gc
import itertools






# Streamlit ends every script run (and fragment run) with gc.collect(2), which walks every object the collector
# tracks: ~460k after the imports (torch, plotly, streamlit, captum, shapiq), ~580k with a model loaded, 0.3 s on
# the 2-core machine, more than the Explore page's own rerun. Objects alive when a run starts are nearly all
# long-lived (modules, cached models and data, sessions), so `settle_heap` takes them out of the collector's
# generations (gc.freeze) and the collect walks only what the run made. Every HEAP_RESCAN_RUNS runs it puts
# them back instead (gc.unfreeze), so that run's collect also finds any that have become unreachable cycles
# since (an evicted cache entry, a closed session): what one frozen stretch can hold back is bounded.
HEAP_RESCAN_RUNS = 50


_script_runs = itertools.count()


def settle_heap() -> None:
    """Called as a script run starts: freeze the objects alive now, or every HEAP_RESCAN_RUNS-th run unfreeze
    everything so that this run's collect walks the whole heap once."""
    if next(_script_runs) % HEAP_RESCAN_RUNS == HEAP_RESCAN_RUNS - 1:
        gc.unfreeze()
    else:
        gc.freeze()
