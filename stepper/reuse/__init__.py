"""Results reused: a cache with stale-while-revalidate, single flight, and idempotency keys.

:mod:`stepper.reuse.submitting` is the producer's half (answer before enqueueing), :mod:`stepper.reuse.serving`
the worker's (answer before computing); :mod:`stepper.reuse.cache` is the store both use."""
