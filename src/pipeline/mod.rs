//! Pipeline wiring: threads, batching, back-pressure, the tensor pool, statistics.
