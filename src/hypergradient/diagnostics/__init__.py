"""Layer 3, diagnostics: agreement with exact reverse mode (``compare``: every estimator on one problem),
spread under randomness (hypervariance, sign fluctuation), memory meters and plots of learned schedules and run histories. Imports core and estimators (never drivers or above)."""

from .comparison import Comparison, compare
from .comparison_report import why_not_exact
from .memory import HeapMeter, SavedTensorMeter, fresh_process_peak_rss, measure_rss_peak, peak_heap_bytes, saved_bytes
from .plots import plot_history, plot_schedules
from .similarity import as_vector, cosine, cosine_to_rmd
from .spread import SOURCES, jitter, spread, under_randomness

__all__ = ["cosine", "cosine_to_rmd", "as_vector", "spread", "under_randomness", "jitter", "SOURCES",
           "SavedTensorMeter", "saved_bytes", "HeapMeter", "peak_heap_bytes", "fresh_process_peak_rss",
           "measure_rss_peak", "plot_schedules", "plot_history", "compare", "Comparison", "why_not_exact"]
